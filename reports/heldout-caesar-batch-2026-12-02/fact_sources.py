"""Where the answers to the interviews' fact questions can be found.

    python reports/heldout-caesar-batch-2026-12-02/fact_sources.py

For each shipped interview: how many of its fact questions (tag `life`, with `mentions_any`)
have an expected answer in the character's profile or card (what retrieval memory holds)
and in any of its files (the training dialogues too).
"""

from __future__ import annotations

import re
from pathlib import Path

from neeko_app.evaluation.script import load_script


def answered(facts: list[tuple[str, ...]], text: str) -> int:
    """How many of `facts` (each a tuple of answer patterns) `text` answers."""
    return sum(any(re.search(p, text) for p in patterns) for patterns in facts)


def main() -> None:
    for path in sorted(Path("neeko_app/evaluation/scripts").glob("*-interview.yaml")):
        script = load_script(path)
        folder = Path("characters") / script.characters[0]
        memory = " ".join((folder / name).read_text().lower()
                          for name in ("profile.md", "character.json"))
        everything = memory + (folder / "dialogues.jsonl").read_text().lower()
        facts = [turn.expect.mentions_any for exchange in script.exchanges
                 for turn in exchange.turns[:1]
                 if "life" in exchange.tags and turn.expect and turn.expect.mentions_any]
        print(f"{script.characters[0]}: {len(facts)} fact questions; answer in profile or "
              f"card {answered(facts, memory)}, in any of its files "
              f"{answered(facts, everything)}")


if __name__ == "__main__":
    main()

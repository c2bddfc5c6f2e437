"""Merge the written wordings of a character into `characters/<slug>/paraphrases.jsonl`.

    python reports/drill-facts-2026-12-06/merge_paraphrases.py newton PART.jsonl ...

Every exchange whose question shares a 4-word run with a question of the character's
held-out quiz is dropped (the rule `tests/test_facts.py` applies to all training files:
the writers did not read the quiz, and this keeps it held out); ids are renumbered
`<slug>-p0001`, ...; the file is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neeko_app.characters.facts import PARAPHRASES_FILE, QUIZ_FILE, load_quiz
from neeko_app.evaluation.overlap import words
from neeko_app.storage import atomic_write_text

CHARACTERS = Path(__file__).resolve().parents[2] / "characters"


def runs(text: str, size: int = 4) -> set[tuple[str, ...]]:
    """The runs of `size` consecutive words of `text`."""
    tokens = words(text)
    return {tuple(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def merge(slug: str, parts: list[Path]) -> tuple[int, int]:
    """Write the kept exchanges of `parts`; returns (kept, dropped)."""
    quiz = set().union(*(runs(q.question) for q in load_quiz(CHARACTERS / slug / QUIZ_FILE)))
    records = [json.loads(line) for part in parts
               for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [r for r in records
            if not any(runs(t["text"]) & quiz for t in r["turns"] if t["role"] == "user")]
    lines = [json.dumps({**record, "id": f"{slug}-p{number:04d}"}, ensure_ascii=False)
             for number, record in enumerate(kept, start=1)]
    atomic_write_text(CHARACTERS / slug / PARAPHRASES_FILE, "\n".join(lines) + "\n")
    return len(kept), len(records) - len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("parts", type=Path, nargs="+")
    args = parser.parse_args()
    kept, dropped = merge(args.character, args.parts)
    print(f"{args.character}: {kept} exchanges kept, {dropped} dropped (quiz overlap)")


if __name__ == "__main__":
    main()

"""Caesar's role identification with his replies cut to their first 40 words.

    python reports/heldout-caesar-batch-2026-12-02/first_words.py

The batch-8 block's sampled replies ran to the 160-token cap (124 words on average); this
asks how much of its score came from that length.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from neeko_app.characters.registry import discover_characters
from neeko_app.evaluation.heldout import CharacterVectors
from neeko_app.evaluation.role_identification import identify_each

HERE = Path(__file__).parent
RUNS = {"batch 8, sampled": "../heldout-measures-2026-12-02/sampled-seed0.json",
        "batch 2, sampled": "sampled-seed0.json",
        "batch 8, greedy 64": "../heldout-measures-2026-12-02/greedy-64.json",
        "batch 2, greedy 64": "greedy-64.json"}


def main() -> None:
    library = discover_characters(Path("characters")).characters
    slugs = sorted(library)
    vectors = CharacterVectors.of([library[slug] for slug in slugs])
    caesar = slugs.index("caesar")

    def accuracy(replies: list[str]) -> str:
        found = identify_each(replies, [vectors.profiles, vectors.training_lines])
        return " / ".join(f"{sum(k == caesar for k in row) / len(row):.2f}" for row in found)

    for label, file in RUNS.items():
        answers = json.loads((HERE / file).read_text())["answers"]
        replies = [a["reply"] for a in answers
                   if a["character"] == "caesar" and a["system"] == "blocks"]
        words = statistics.mean(len(r.split()) for r in replies)
        cut = [" ".join(r.split()[:40]) for r in replies]
        print(f"{label}: {words:.0f} words; profile / training replies: whole "
              f"{accuracy(replies)}, first 40 words {accuracy(cut)}")


if __name__ == "__main__":
    main()

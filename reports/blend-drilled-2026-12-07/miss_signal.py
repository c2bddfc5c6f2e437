"""Can the app tell that memory missed the fact, from how close its best note is?

    python reports/blend-drilled-2026-12-07/miss_signal.py --out miss-signal.json

For every quiz question of every character: the MiniLM cosine of the question and the
first note memory returns, (a) as the app retrieves (a hit when the asked fact's note is
among the notes), and (b) with the asked fact's note withheld (`blocks+other-notes`, always
a miss). Prints the area under the ROC curve of that cosine for hits against misses: 0.5
is no signal, 1.0 a perfect one. No model runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.evaluation import OTHER_NOTES
from neeko_app.evaluation.quiz import asked_notes
from neeko_app.evaluation.systems import system_context
from neeko_app.evaluation.text_metrics import relevance
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.storage import atomic_write_json


def roc_area(positives: list[float], negatives: list[float]) -> float:
    """The chance that a random positive scores above a random negative (ties count half)."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    characters = discover_characters(Settings.from_env().characters_dir).characters
    quizzed = [c for c in characters.values() if (c.folder / "quiz.jsonl").is_file()]
    rows = []
    with scratch_knowledge(quizzed) as memory:
        for character in quizzed:
            for question, note in asked_notes(character):
                found = system_context("blocks+memory", character, question.question, memory)
                others = system_context(OTHER_NOTES, character, question.question, memory,
                                        withheld=note)
                rows.append({"character": character.slug, "question": question.question,
                             "hit": note in [chunk.text for chunk in found.knowledge],
                             "first": found.knowledge[0].text,
                             "first_other": others.knowledge[0].text})
    questions = [row["question"] for row in rows]
    for key in ("first", "first_other"):
        for row, score in zip(rows, relevance(questions, [row[key] for row in rows]),
                              strict=True):
            row[f"{key}_cosine"] = score
    hits = [r["first_cosine"] for r in rows if r["hit"]]
    misses = [r["first_cosine"] for r in rows if not r["hit"]]
    withheld = [r["first_other_cosine"] for r in rows]
    result = {"questions": len(rows), "retrieval_hits": len(hits),
              "auc_app_hits_vs_app_misses": roc_area(hits, misses),
              "auc_app_hits_vs_withheld": roc_area(hits, withheld)}
    print(json.dumps(result))
    atomic_write_json(args.out, {**result, "rows": rows})


if __name__ == "__main__":
    main()

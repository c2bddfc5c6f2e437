"""Thirty quiz replies read by a person, beside what the in-role measure said of them.

    python reports/in-role-reading-2026-12-05/reading.py [ANSWERS LABELS OUT]

Draws 30 replies (seed 7) from the blocks+memory answers of a quiz report (default:
reports/lexical-retrieval-2026-12-05/quiz-lexical.json, greedy, the shipped blocks), joins
each with its reading in a labels file (default: labels.jsonl here; by question id), and
prints per reply the measure's
verdict and the reading (in role? any false or invented claim?), then the rates, written to
OUT (default: reading.json here). The same question ids are drawn from any report of the
full quiz, so two decodings' replies can be read side by side.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from neeko_app.evaluation.in_role import in_role
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
ANSWERS = HERE.parent / "lexical-retrieval-2026-12-05" / "quiz-lexical.json"
SAMPLE, SEED = 30, 7


def measured_in_role(answer: dict) -> bool:
    """The issue's in-role test, from the fields the quiz stored."""
    return in_role(answer["character"], answer["identified_as"], answer["first_person"],
                   answer["copied_card_words"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", nargs="?", type=Path, default=ANSWERS)
    parser.add_argument("labels", nargs="?", type=Path, default=HERE / "labels.jsonl")
    parser.add_argument("out", nargs="?", type=Path, default=HERE / "reading.json")
    args = parser.parse_args()
    answers = [a for a in json.loads(args.answers.read_text())["answers"]
               if a["system"].startswith("blocks+memory")]
    random.seed(SEED)
    sample = random.sample(answers, SAMPLE)
    labels = {row["question_id"]: row for row in map(json.loads,
                                                      args.labels.open())}
    rows = []
    for answer in sample:
        label = labels[answer["question_id"]]
        rows.append({**{k: answer[k] for k in ("question_id", "question", "reply", "correct",
                                                "identified_as", "first_person")},
                     "measured_in_role": measured_in_role(answer),
                     "read_in_role": label["in_role"],
                     "false_claim": label["false_claim"],
                     "right_and_nothing_false": answer["correct"] and not label["false_claim"],
                     "why": label["why"]})
        print(f"{answer['question_id']}: measure {'in' if rows[-1]['measured_in_role'] else 'OUT'}"
              f" (identified as {answer['identified_as']}), read "
              f"{'in' if label['in_role'] else 'OUT'}; a false claim: "
              f"{label['false_claim']} ({label['why']})")
    rates = {key: sum(row[key] for row in rows) / len(rows)
             for key in ("correct", "measured_in_role", "read_in_role", "false_claim",
                         "right_and_nothing_false")}
    print(rates)
    atomic_write_json(args.out, {"source": args.answers.name, "seed": SEED, "rates": rates,
                                 "replies": rows})


if __name__ == "__main__":
    main()

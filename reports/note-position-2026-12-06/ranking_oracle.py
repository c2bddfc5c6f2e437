"""How much would a perfect ranking of the notes give? Quiz answers grouped by where
today's retrieval ranks the question's own fact note, beside the same questions asked
with that note placed first, second or third (`position_probe.py`'s file).

    python reports/note-position-2026-12-06/ranking_oracle.py QUIZ.json PROBE.json

QUIZ.json: the app's greedy one-sentence quiz (blocks + memory), e.g.
`reports/note-contrast-2026-12-06/quiz-contrast-0.5.json`; PROBE.json: `position_probe.py`
with positions 1 2 3 for the same blocks.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.memory.scratch import scratch_knowledge

DEPTH = 8


def gold_ranks() -> dict[str, int]:
    """Quiz question id -> rank of its fact note in today's retrieval (0: not in the best 8)."""
    characters = discover_characters(Settings().characters_dir).characters
    ranks = {}
    with scratch_knowledge(list(characters.values())) as memory:
        for slug, character in sorted(characters.items()):
            facts = {fact.id: fact for fact in load_facts(character.folder / FACTS_FILE)}
            for question in load_quiz(character.folder / QUIZ_FILE, list(facts.values())):
                gold = facts[question.fact].fact.strip()
                notes = [chunk.text.strip() for chunk in
                         memory.search_knowledge(slug, question.question, DEPTH)]
                ranks[question.id] = notes.index(gold) + 1 if gold in notes else 0
    return ranks


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("quiz")
    parser.add_argument("probe")
    args = parser.parse_args()
    app = {a["question_id"]: a["correct"] for a in read_json(args.quiz)["answers"]}
    probe = {position: {a["question_id"]: a["correct"] for a in report["answers"]}
             for position, report in read_json(args.probe).items()}
    groups = defaultdict(list)
    for question, rank in gold_ranks().items():
        groups[rank if rank in (1, 2, 3) else "lower or none"].append(question)
    print("| gold note ranked | questions | app | " +
          " | ".join(f"placed {p}" for p in probe) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in probe) + " |")
    best = 0
    for rank, questions in sorted(groups.items(), key=lambda item: str(item[0])):
        right = {p: sum(probe[p][q] for q in questions) for p in probe}
        best += right.get("1", 0)
        print(f"| {rank} | {len(questions)} | {sum(app[q] for q in questions) / len(questions):.2f}"
              " | " + " | ".join(f"{right[p] / len(questions):.2f}" for p in probe) + " |")
    total = sum(len(questions) for questions in groups.values())
    print(f"\napp {sum(app.values()) / len(app):.3f}; every gold note placed first "
          f"{best / total:.3f}")


if __name__ == "__main__":
    main()

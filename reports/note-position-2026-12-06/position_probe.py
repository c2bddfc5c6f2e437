"""Does a block read the note that answers the question, or the note that comes first?

    python reports/note-position-2026-12-06/position_probe.py [SLUG ...] --out FILE

The greedy quiz, blocks + memory, one-sentence replies as the app gives them, but with the
three notes chosen here: the quiz question's own fact note at position 1, 2 or 3, and the
two best retrieved notes that are not it around it. A block that reads what fits the
question scores alike at every position. Position 0 is the app's own retrieval (the plain
quiz). `NEEKO_CHARACTERS_DIR` picks the blocks.
"""

from __future__ import annotations

import argparse
import json

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.config import Settings
from neeko_app.evaluation import systems
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.memory import KnowledgeChunk
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"
APP_NOTES = systems.character_knowledge
NOTES = 3


def gold_notes(runtime, slugs) -> dict[tuple[str, str], str]:
    """(slug, quiz question) -> the text of the fact note that answers it."""
    gold = {}
    for slug in slugs:
        folder = runtime.character(slug).folder
        facts = {fact.id: fact for fact in load_facts(folder / FACTS_FILE)}
        for question in load_quiz(folder / QUIZ_FILE, list(facts.values())):
            gold[slug, question.question] = facts[question.fact].fact
    return gold


def placed(found: list[KnowledgeChunk], gold: str, position: int) -> list[KnowledgeChunk]:
    """The gold note at `position` (1-based) among the best other notes of `found`."""
    others = [chunk for chunk in found if chunk.text.strip() != gold.strip()][:NOTES - 1]
    return others[:position - 1] + [KnowledgeChunk(gold, "fact")] + others[position - 1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slugs", nargs="*")
    parser.add_argument("--positions", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env())
    slugs = args.slugs or sorted(runtime.characters)
    gold = gold_notes(runtime, slugs)
    results = {}
    for position in args.positions:
        def chosen_notes(memory, slug, message, k, position=position):
            if not position:
                return APP_NOTES(memory, slug, message, k)
            found = memory.search_knowledge(slug, message, NOTES + 1)
            return placed(found, gold[slug, message], position)

        systems.character_knowledge = chosen_notes
        label = f"gold{position}"
        report = quiz_with_bars(runtime, slugs, [SYSTEM], heldout_decoding(False, None, 0),
                                label)
        results[position] = report.to_dict()
        print(json.dumps({"position": position, **report.to_dict()["accuracy"]}), flush=True)
        atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()

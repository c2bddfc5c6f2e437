"""Is each quiz question's fact among the k notes memory retrieves for it? (the embedder only)

    python reports/knowledge-2026-12-04/retrieval_hits.py [SLUG ...] > retrieval-hits.txt
"""

from __future__ import annotations

import sys

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.memory.scratch import scratch_knowledge

KS = (1, 2, 3, 4, 5, 8)


def main() -> None:
    characters = discover_characters(Settings().characters_dir).characters
    chosen = [characters[slug] for slug in (sys.argv[1:] or sorted(characters))]
    totals, asked = dict.fromkeys(KS, 0), 0
    with scratch_knowledge(chosen) as memory:
        for character in chosen:
            facts = {fact.id: fact for fact in load_facts(character.folder / FACTS_FILE)}
            quiz = load_quiz(character.folder / QUIZ_FILE, list(facts.values()))
            hits = dict.fromkeys(KS, 0)
            for question in quiz:
                notes = [chunk.text for chunk in
                         memory.search_knowledge(character.slug, question.question, k=max(KS))]
                gold = facts[question.fact].fact.strip()
                for k in KS:
                    hits[k] += any(gold in note or note.strip() in gold for note in notes[:k])
            asked += len(quiz)
            for k in KS:
                totals[k] += hits[k]
            print(character.slug, len(quiz), {k: round(v / len(quiz), 2) for k, v in hits.items()})
    print("all", asked, {k: round(v / asked, 2) for k, v in totals.items()})


if __name__ == "__main__":
    main()

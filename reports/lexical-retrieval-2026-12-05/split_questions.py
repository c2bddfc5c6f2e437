"""Choose the weight of shared rare words in knowledge retrieval without the quiz.

    python reports/lexical-retrieval-2026-12-05/split_questions.py 0 0.25 0.5 1 2 \
        > reports/lexical-retrieval-2026-12-05/split-questions.txt

Every fact note keeps half of the questions of its knowledge exchanges (the even-numbered
ones) in a scratch store; the other half ask for it. For each weight (`MemoryStore.
lexical_weight`), the share of those questions whose note comes first, and among the first
3 (what the app retrieves). Then the held-out quiz questions against the full store, as
`retrieval_hits.py` counts them.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace

import chromadb

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.memory.client import chroma_settings
from neeko_app.memory.knowledge import character_chunks
from neeko_app.memory.store import MemoryStore


def hits(store: MemoryStore, slug: str, asked: list[tuple[str, str]]) -> tuple[int, int]:
    """(first, among 3) for questions `asked` as (question, the note's text)."""
    first = among = 0
    for question, note in asked:
        found = [chunk.text for chunk in store.search_knowledge(slug, question, 3)]
        first += found[:1] == [note]
        among += note in found
    return first, among


def main() -> None:
    weights = [float(w) for w in sys.argv[1:]] or [0.0]
    characters = discover_characters(Settings().characters_dir).characters
    client = chromadb.EphemeralClient(settings=chroma_settings())
    halves = MemoryStore(client, knowledge_collection=f"split-{uuid.uuid4().hex}",
                         conversation_collection=f"split-c-{uuid.uuid4().hex}")
    full = MemoryStore(client, knowledge_collection=f"full-{uuid.uuid4().hex}",
                       conversation_collection=f"full-c-{uuid.uuid4().hex}")
    split, quiz = {}, {}
    for slug, character in sorted(characters.items()):
        chunks = character_chunks(character)
        full.index_character(slug, chunks)
        halves.index_character(slug, [replace(c, questions=c.questions[::2]) for c in chunks])
        split[slug] = [(q, c.text) for c in chunks for q in c.questions[1::2]]
        if (character.folder / QUIZ_FILE).is_file():
            sheet = load_facts(character.folder / FACTS_FILE)
            facts = {f.id: f.fact.strip() for f in sheet}
            notes = {c.text.strip() for c in chunks}
            quiz[slug] = [(q.question, facts[q.fact]) for q in
                          load_quiz(character.folder / QUIZ_FILE, sheet) if facts[q.fact] in notes]
    for weight in weights:
        halves.lexical_weight = full.lexical_weight = weight
        for name, store, sets in (("held-back questions", halves, split),
                                  ("quiz questions", full, quiz)):
            counted = [hits(store, slug, asked) for slug, asked in sets.items()]
            total = sum(len(asked) for asked in sets.values())
            print(f"weight {weight:g}, {name} ({total}): first "
                  f"{sum(f for f, _ in counted) / total:.3f}, among 3 "
                  f"{sum(a for _, a in counted) / total:.3f}; per character first "
                  + " ".join(f"{slug} {f / len(sets[slug]):.2f}"
                             for slug, (f, _) in zip(sets, counted, strict=True)), flush=True)


if __name__ == "__main__":
    main()

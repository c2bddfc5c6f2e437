"""What the knowledge encoder adds to each message: one knowledge search (three notes) for
40 of Caesar's quiz questions, with MiniLM alone and with the encoder choosing the first.

    python reports/knowledge-embedder-2026-12-06/search_time.py > search-time.txt
"""

from __future__ import annotations

import time

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.memory.scratch import scratch_knowledge


def main() -> None:
    caesar = discover_characters(Settings().characters_dir).characters["caesar"]
    sheet = load_facts(caesar.folder / FACTS_FILE)
    questions = [q.question for q in load_quiz(caesar.folder / QUIZ_FILE, sheet)][:40]
    for encoder in ("plain", "auto"):
        with scratch_knowledge([caesar], Settings(knowledge_encoder=encoder)) as store:
            store.search_knowledge("caesar", "warm up", 3)
            started = time.perf_counter()
            for question in questions:
                store.search_knowledge("caesar", question, 3)
            each = (time.perf_counter() - started) / len(questions)
        print(f"NEEKO_KNOWLEDGE_ENCODER={encoder}: {each * 1000:.1f} ms a search")


if __name__ == "__main__":
    main()

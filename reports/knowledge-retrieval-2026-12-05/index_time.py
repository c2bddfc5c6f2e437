"""How long memory takes to index the shipped characters' knowledge: once into a fresh
store, then again (a restart), in a temporary folder.

    python reports/knowledge-retrieval-2026-12-05/index_time.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.embedding import sentence_encoder
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import character_chunks, index_characters


def main() -> None:
    sentence_encoder()  # loaded before the clock starts
    characters = list(discover_characters(Settings().characters_dir).characters.values())
    entries = sum(1 + len(chunk.questions) for character in characters
                  for chunk in character_chunks(character))
    with tempfile.TemporaryDirectory() as folder:
        store = MemoryStore.open(Path(folder))
        started = time.perf_counter()
        notes = index_characters(store, characters)
        first = time.perf_counter() - started
        started = time.perf_counter()
        index_characters(store, characters)
        again = time.perf_counter() - started
    print(f"{len(characters)} characters, {notes} notes, {entries} entries with their "
          f"questions: first index {first:.1f} s, again {again:.1f} s")


if __name__ == "__main__":
    main()

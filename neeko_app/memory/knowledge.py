"""A character's knowledge for the memory: profile paragraphs, example lines, lorebook."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from neeko_app.characters.card import Character, CharacterError
from neeko_app.characters.lorebook import load_lorebook
from neeko_app.memory.chunks import KnowledgeChunk, profile_chunks
from neeko_app.memory.store import MemoryStore

log = logging.getLogger(__name__)


def character_chunks(character: Character) -> list[KnowledgeChunk]:
    """Profile (profile.md, else the card), example lines and lorebook entries as chunks.

    A malformed lorebook is logged and left out; the rest is still indexed.
    """
    try:
        lore = [entry.content for entry in load_lorebook(character)]
    except CharacterError as err:
        log.warning("lorebook of %s not indexed: %s", character.slug, err)
        lore = []
    return profile_chunks(character.profile_text(), character.example_lines, lore=lore)


def index_characters(store: MemoryStore, characters: Iterable[Character]) -> int:
    """(Re-)index the knowledge of every character; how many chunks are stored in all."""
    return sum(store.index_character(c.slug, character_chunks(c)) for c in characters)

"""A character's knowledge for the memory: its fact sheet (else profile paragraphs and
example lines), and its lorebook."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from neeko_app.characters.card import Character, CharacterError
from neeko_app.characters.facts import FactSheetError, fact_questions, known_facts
from neeko_app.characters.lorebook import load_lorebook
from neeko_app.memory.chunks import KnowledgeChunk, profile_chunks
from neeko_app.memory.store import MemoryStore

log = logging.getLogger(__name__)


def character_chunks(character: Character) -> list[KnowledgeChunk]:
    """What memory retrieves for `character`: with a fact sheet, its known facts as
    one-sentence notes (a small model uses two or three short notes far better than long
    profile paragraphs), each with the questions that ask for it in the knowledge
    exchanges; without one, the profile (profile.md, else the card) and the example lines.
    Lorebook entries come after either.

    A malformed fact sheet or lorebook is logged and left out; the rest is still indexed.
    """
    try:
        lore = [entry.content for entry in load_lorebook(character)]
    except CharacterError as err:
        log.warning("lorebook of %s not indexed: %s", character.slug, err)
        lore = []
    try:
        facts = known_facts(character.folder) if character.folder else []
    except FactSheetError as err:
        log.warning("fact sheet of %s not indexed, the profile is used: %s", character.slug, err)
        facts = []
    if facts:
        asked = _fact_questions(character)
        return [KnowledgeChunk(fact.fact, "fact", tuple(asked.get(fact.id, ())))
                for fact in facts] + profile_chunks("", lore=lore)
    return profile_chunks(character.profile_text(), character.example_lines, lore=lore)


def _fact_questions(character: Character) -> dict[str, list[str]]:
    """The questions of the character's knowledge exchanges, per fact id ({} when its
    knowledge file is malformed: that is logged, and the facts are found by their text)."""
    try:
        return fact_questions(character.folder)
    except FactSheetError as err:
        log.warning("questions of %s's knowledge exchanges not indexed: %s", character.slug, err)
        return {}


def index_characters(store: MemoryStore, characters: Iterable[Character]) -> int:
    """(Re-)index the knowledge of every character; how many chunks are stored in all."""
    return sum(store.index_character(c.slug, character_chunks(c)) for c in characters)

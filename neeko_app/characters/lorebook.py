"""A character's lorebook (`characters/<slug>/lorebook.json`): entries imported from a card.

Kept next to the card so that memory can index the entries and an exported card carries
them again. A list of `{"keys": [...], "content": "...", "name": "..."}` objects.
"""

from __future__ import annotations

import json
from pathlib import Path

from neeko_app.characters.card import Character, CharacterError
from neeko_app.characters.tavern import LoreEntry
from neeko_app.storage import atomic_write_json

LOREBOOK_FILE = "lorebook.json"


def save_lorebook(folder: Path, entries: list[LoreEntry]) -> None:
    """Write `entries` into `folder/lorebook.json` (nothing is written for no entries)."""
    if entries:
        atomic_write_json(folder / LOREBOOK_FILE, [
            {"keys": list(entry.keys), "content": entry.content, "name": entry.name}
            for entry in entries])


def load_lorebook(character: Character) -> list[LoreEntry]:
    """The character's lorebook entries ([] when it has none); CharacterError if malformed."""
    path = character.folder / LOREBOOK_FILE if character.folder else None
    if path is None or not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [LoreEntry(tuple(str(k) for k in item.get("keys", [])), str(item["content"]),
                          str(item.get("name", ""))) for item in raw]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CharacterError(f"{path} is not a valid lorebook: {err}") from None

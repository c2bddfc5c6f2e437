"""A character's card (`characters/<slug>/character.json`) and its folder."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

SLUG_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,39}")
# device names Windows will not create as folders (characters may be copied to Windows)
RESERVED_SLUGS = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                            *(f"lpt{i}" for i in range(1, 10))})
REQUIRED_FIELDS = ("name", "slug", "description", "personality", "scenario", "greeting")
TEXT_FIELDS = (*REQUIRED_FIELDS, "speaking_style", "era", "knowledge_limits", "source", "licence")
MAX_NAME_CHARS = 100
# Bounds checked before anything is tokenized or embedded: each text field of a card (each
# example line and tag too), character.json itself, and profile.md (chunked and embedded
# into memory when the character is added).
MAX_FIELD_CHARS = 20_000
MAX_CARD_FILE_BYTES = 2 * 2**20
MAX_PROFILE_BYTES = 256 * 1024
# Hangul fillers are letters (category Lo) that show as blank space
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
DIALOGUES_FILE = "dialogues.jsonl"  # training conversations, in a character's folder
HELDOUT_FILE = "heldout.jsonl"  # held-out conversations (evaluation, best epoch)


class CharacterError(ValueError):
    """A character folder or card is missing, malformed or unsafe."""


@dataclass(frozen=True)
class Character:
    """What the app knows about one character."""

    name: str
    slug: str
    description: str
    personality: str
    scenario: str
    greeting: str
    speaking_style: str = ""
    example_lines: tuple[str, ...] = ()
    era: str = ""
    knowledge_limits: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""
    licence: str = ""
    folder: Path | None = field(default=None, compare=False)

    @property
    def block_path(self) -> Path | None:
        return self.folder / "block.safetensors" if self.folder else None

    @property
    def role_path(self) -> Path | None:
        return self.folder / "role.safetensors" if self.folder else None

    def profile_text(self) -> str:
        """The text the role embedding is computed from."""
        profile = self.folder / "profile.md" if self.folder else None
        if profile and profile.is_file():
            return profile.read_text(encoding="utf-8")
        return "\n".join([self.name, self.description, self.personality, self.speaking_style,
                          self.scenario])


def validate_slug(slug: str) -> str:
    """`slug` if it is a safe folder name (lowercase letters, digits, '-'), else CharacterError."""
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        raise CharacterError(
            f"invalid character id {slug!r}: use 1-40 lowercase letters, digits or '-', "
            "starting with a letter"
        )
    if slug in RESERVED_SLUGS:
        raise CharacterError(f"invalid character id {slug!r}: a reserved device name on "
                             "Windows; choose another id")
    return slug


def validate_name(name: str) -> str:
    """`name` if it has a visible letter or digit (Unicode category L or N) and no control
    character, else CharacterError: a name of invisible signs only cannot be told apart."""
    if any(unicodedata.category(sign) == "Cc" for sign in name):
        raise CharacterError(f"the name {name!r} contains a control character; use letters, "
                             "digits, spaces and punctuation")
    if not any(unicodedata.category(sign)[0] in "LN" and sign not in INVISIBLE_LETTERS
               for sign in name):
        raise CharacterError(f"the name {name!r} has no visible letter or digit; a name must "
                             "contain at least one")
    return name


def character_from_dict(data: dict, folder: Path | None = None) -> Character:
    """Build a Character from card fields, with a clear error for what is missing or wrong."""
    if not isinstance(data, dict):
        raise CharacterError("a character card must be a JSON object")
    missing = [f for f in REQUIRED_FIELDS if not str(data.get(f) or "").strip()]
    if missing:
        raise CharacterError(f"character card lacks required fields: {', '.join(missing)}")
    text_fields = {f: str(data.get(f) or "").strip() for f in TEXT_FIELDS}
    if len(text_fields["name"]) > MAX_NAME_CHARS:
        raise CharacterError(f"name is too long ({len(text_fields['name'])} characters; "
                             f"at most {MAX_NAME_CHARS})")
    validate_slug(text_fields["slug"])
    validate_name(text_fields["name"])
    lists = {}
    for name in ("example_lines", "tags"):
        value = data.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CharacterError(f"{name} must be a list of strings")
        lists[name] = tuple(value)
    for label, text in [*text_fields.items(),
                        *((f"{name}[{i}]", v) for name, values in lists.items()
                          for i, v in enumerate(values))]:
        if len(text) > MAX_FIELD_CHARS:
            raise CharacterError(f"{label} is too long ({len(text)} characters; at most "
                                 f"{MAX_FIELD_CHARS})")
    return Character(**text_fields, **lists, folder=folder)


def load_character(folder: str | Path) -> Character:
    """Load `folder/character.json`; CharacterError explains what is wrong (files over their
    size limits are refused unread)."""
    folder = Path(folder)
    card = folder / "character.json"
    _check_size(card, MAX_CARD_FILE_BYTES)
    _check_size(folder / "profile.md", MAX_PROFILE_BYTES)
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise CharacterError(f"{folder} is not a character folder (no character.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CharacterError(f"{card} is not valid UTF-8 JSON: {err}") from None
    character = character_from_dict(data, folder)
    if character.slug != folder.name:
        raise CharacterError(f"{card}: slug {character.slug!r} differs from folder {folder.name!r}")
    return character


def _check_size(path: Path, limit: int) -> None:
    """CharacterError if the file `path` is larger than `limit` bytes (none is fine)."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if path.is_file() and size > limit:
        raise CharacterError(f"{path} is too large ({size} bytes; at most {limit})")

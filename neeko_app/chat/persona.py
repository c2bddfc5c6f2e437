"""The user's persona: the name and short description characters know the user by.

Saved as `persona.json` in the user's data folder. It fills the `{{user}}` macros of cards
and greetings, and a persona with a description (or a name of its own) adds one line about
the user to the character's header.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from neeko_app.storage import atomic_write_json

log = logging.getLogger(__name__)

PERSONA_FILE = "persona.json"
DEFAULT_NAME = "User"  # what `{{user}}` stands for until the user names themselves
MAX_NAME_CHARS = 60
MAX_DESCRIPTION_CHARS = 500
USER_MACRO = re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE)
CHAR_MACRO = re.compile(r"\{\{\s*char\s*\}\}|<bot>", re.IGNORECASE)


class PersonaError(ValueError):
    """A persona's name or description is not acceptable (the message says why)."""


@dataclass(frozen=True)
class Persona:
    """Who the user is in the chats."""

    name: str = DEFAULT_NAME
    description: str = ""

    def __post_init__(self) -> None:
        name, description = " ".join(str(self.name).split()), str(self.description).strip()
        if not name or not any(unicodedata.category(c)[0] in "LN" for c in name):
            raise PersonaError("your name needs at least one letter or digit")
        if len(name) > MAX_NAME_CHARS:
            raise PersonaError(f"your name is too long ({len(name)} characters; at most "
                               f"{MAX_NAME_CHARS})")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise PersonaError(f"the description is too long ({len(description)} characters; "
                               f"at most {MAX_DESCRIPTION_CHARS})")
        if any(unicodedata.category(c) == "Cc" and c != "\n" for c in name + description):
            raise PersonaError("the persona contains a control character")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "description", description)

    def prompt_note(self) -> str:
        """The line the character's header gets about the user ("" for the default persona,
        so an unset persona leaves the header the blocks were trained with)."""
        if self.description:
            return f"You are talking with {self.name}: {self.description}"
        return "" if self.name == DEFAULT_NAME else f"You are talking with {self.name}."

    def fill(self, text: str, character_name: str) -> str:
        """`text` with `{{user}}`/`<USER>` replaced by the user's name and `{{char}}`/`<BOT>`
        by the character's."""
        text = USER_MACRO.sub(lambda _: self.name, text)
        return CHAR_MACRO.sub(lambda _: character_name, text)


def load_persona(data_dir: Path) -> Persona:
    """The persona saved in `data_dir` (the default one when none is saved, or when the file
    is unreadable: a broken file must not keep the app from starting)."""
    path = data_dir / PERSONA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Persona(str(data["name"]), str(data.get("description") or ""))
    except FileNotFoundError:
        return Persona()
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("%s is unreadable (%s); using the default persona", path, err)
        return Persona()


def save_persona(data_dir: Path, persona: Persona) -> None:
    """Write `persona` to `data_dir/persona.json` atomically."""
    atomic_write_json(data_dir / PERSONA_FILE, asdict(persona))

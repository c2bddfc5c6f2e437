"""The user's data folder apart from the app's own files: which characters the user added
(and may delete, into a trash folder), and moving data older versions wrote into the app's
folder (added characters beside the shipped ones, `memory/`)."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from neeko_app.characters.card import Character, CharacterError
from neeko_app.config import PROJECT_ROOT, Settings, default_data_dir

SHIPPED_LIST = "shipped.txt"  # in the shipped characters folder: the ids that come with the app
OLD_MEMORY_DIR = PROJECT_ROOT / "memory"  # where versions before 2026-12-05 kept memory
OLD_MEMORY_KEEP = {"README.md"}
TRASH_DIR = "trash"  # in the data folder: deleted characters' folders


def shipped_ids(characters_dir: Path) -> list[str]:
    """The character ids listed in `characters_dir/shipped.txt` (empty when there is none)."""
    path = characters_dir / SHIPPED_LIST
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def user_added(character: Character, settings: Settings) -> bool:
    """Whether `character` is one the user added (in the user's characters folder, and not
    listed as shipped when that folder is also the shipped one)."""
    folder = character.folder
    return (folder is not None
            and folder.parent.resolve() == settings.user_characters_dir.resolve()
            and character.slug not in shipped_ids(settings.characters_dir))


def trash_character(character: Character, settings: Settings) -> Path:
    """Move a user-added character's folder into the data folder's trash with one atomic
    rename (a name already taken there gets a number: `mira-2`); returns its new place.
    CharacterError, with nothing moved, for a shipped character or a failed move."""
    if not user_added(character, settings) or character.folder is None:
        raise CharacterError(f"{character.name} comes with the app and cannot be deleted; "
                             "only characters you added can be")
    trash = settings.data_dir / TRASH_DIR
    trash.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        target = trash / (character.slug if number == 1 else f"{character.slug}-{number}")
        number += 1
        if target.exists():
            continue
        try:
            os.rename(character.folder, target)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY):  # taken meanwhile: next name
                continue
            raise CharacterError(f"could not move {character.folder} to the trash "
                                 f"({err.strerror}); nothing was deleted") from None
        return target


def _report_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def move_old_user_data(settings: Settings,
                       report: Callable[[str], None] = _report_to_stderr) -> list[Path]:
    """Move characters a user added into the shipped folder, and the old `memory/` folder's
    store and sessions, into the data folder; one report line per move. Returns the new
    places.

    Runs only when the data folder is the default one (a test or a user who points
    elsewhere keeps both places as they are), and never overwrites: something whose new
    place is taken stays where it is, with a line saying so.
    """
    if settings.data_dir != default_data_dir():
        return []
    moves: list[tuple[Path, Path]] = []
    shipped = set(shipped_ids(settings.characters_dir))
    if shipped:
        moves += [(folder, settings.user_characters_dir / folder.name)
                  for folder in sorted(settings.characters_dir.iterdir())
                  if folder.is_dir() and not folder.name.startswith(".")
                  and folder.name not in shipped and (folder / "character.json").is_file()]
    if OLD_MEMORY_DIR.is_dir():
        for entry in sorted(OLD_MEMORY_DIR.iterdir()):
            if entry.name in OLD_MEMORY_KEEP:
                continue
            target = settings.sessions_dir if entry.name == "sessions" else (
                settings.memory_dir / entry.name)
            moves.append((entry, target))
    moved = []
    for source, target in moves:
        if target.exists():
            report(f"neeko: kept {source} where it is: {target} already exists")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
        report(f"neeko: moved your data from {source} to {target}")
        moved.append(target)
    return moved

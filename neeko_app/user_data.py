"""The user's data folder apart from the app's own files, and moving data older versions
wrote into the app's folder (added characters beside the shipped ones, `memory/`)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from neeko_app.config import PROJECT_ROOT, Settings, default_data_dir

SHIPPED_LIST = "shipped.txt"  # in the shipped characters folder: the ids that come with the app
OLD_MEMORY_DIR = PROJECT_ROOT / "memory"  # where versions before 2026-12-05 kept memory
OLD_MEMORY_KEEP = {"README.md"}


def shipped_ids(characters_dir: Path) -> list[str]:
    """The character ids listed in `characters_dir/shipped.txt` (empty when there is none)."""
    path = characters_dir / SHIPPED_LIST
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


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

"""The characters folder: list, validate and load every character, skipping broken ones.

One broken character never stops the others from loading; each problem is reported by
folder name with a message a user can act on.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from neeko_app.characters.card import (
    DIALOGUES_FILE,
    HELDOUT_FILE,
    Character,
    CharacterError,
    load_character,
)
from neeko_app.characters.facts import (
    FACTS_FILE,
    KNOWLEDGE_FILE,
    PARAPHRASES_FILE,
    QUIZ_FILE,
    FactSheetError,
    fact_questions,
    load_facts,
    load_quiz,
)
from neeko_app.config import Settings
from neeko_app.moelora.persistence import AdapterFormatError, read_block_metadata
from neeko_app.training.data import DialogueError, load_dialogues

MIN_TRAINING_CONVERSATIONS = 200
MIN_HELDOUT_CONVERSATIONS = 40


@dataclass
class Registry:
    """Valid characters by slug, and why each skipped folder was skipped."""

    characters: dict[str, Character] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def discover_characters(*directories: Path) -> Registry:
    """Load every `<directory>/<slug>/character.json` of each directory in turn (the shipped
    characters, then the user's).

    Hidden folders (an install in progress) are ignored. Two cards with the same id, or the
    same name ignoring case, are a conflict: the one listed first wins.
    """
    registry = Registry()
    owner_of_name: dict[str, str] = {}
    for directory in directories:
        if not directory.is_dir():
            continue
        for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
            if folder.name.startswith("."):
                continue
            try:
                character = load_character(folder)
            except CharacterError as err:
                registry.problems.setdefault(folder.name, str(err))
                continue
            name_key = character.name.casefold().strip()
            owner = (character.slug if character.slug in registry.characters
                     else owner_of_name.get(name_key))
            if owner is not None:
                registry.problems.setdefault(folder.name, (
                    f"duplicate character: {character.name!r} ({folder}) clashes with "
                    f"{owner!r}, which is already defined"))
                continue
            owner_of_name[name_key] = character.slug
            registry.characters[character.slug] = character
    return registry


def find_character(characters: dict[str, Character], slug: str) -> Character:
    """`characters[slug]`, or CharacterError naming the characters there are."""
    if slug not in characters:
        known = ", ".join(sorted(characters)) or "none"
        raise CharacterError(f"unknown character {slug!r}; available: {known}")
    return characters[slug]


def named(characters: Iterable[Character], name: str) -> Character | None:
    """The character among `characters` called `name` (ignoring case), if any."""
    key = name.casefold().strip()
    return next((c for c in characters if c.name.casefold().strip() == key), None)


def _check_knowledge(folder: Path) -> list[str]:
    """Problems of the optional fact sheet, quiz, knowledge and recall files."""
    from neeko_app.training.knowledge_data import RECALL_FILE, load_recall

    issues: list[str] = []
    facts = None
    if (folder / FACTS_FILE).exists():
        try:
            facts = load_facts(folder / FACTS_FILE)
        except FactSheetError as err:
            issues.append(str(err))
    if (folder / QUIZ_FILE).exists():
        try:
            load_quiz(folder / QUIZ_FILE, facts)
        except FactSheetError as err:
            issues.append(str(err))
    for name, load in ((KNOWLEDGE_FILE, _load_knowledge), (PARAPHRASES_FILE, load_dialogues),
                       (RECALL_FILE, load_recall)):
        if (folder / name).exists():
            try:
                load(folder / name)
            except (DialogueError, FactSheetError) as err:
                issues.append(str(err))
    return issues


def _load_knowledge(path: Path) -> None:
    """Read knowledge.jsonl as training exchanges, then as the questions of each fact."""
    load_dialogues(path)
    fact_questions(path.parent)


def check_character(character: Character, strict: bool = False) -> list[str]:
    """Everything wrong with a character's data files (empty list: all good).

    `strict` also asks for the amounts shipped characters need (200 training and 40
    held-out conversations).
    """
    issues: list[str] = []
    folder = character.folder
    if folder is None:
        return ["the character has no folder"]
    minimums = {DIALOGUES_FILE: MIN_TRAINING_CONVERSATIONS,
                HELDOUT_FILE: MIN_HELDOUT_CONVERSATIONS}
    for name, minimum in minimums.items():
        path = folder / name
        if not path.exists():
            if strict:
                issues.append(f"{name} is missing")
            continue
        try:
            count = len(load_dialogues(path))
        except DialogueError as err:
            issues.append(str(err))
            continue
        if strict and count < minimum:
            issues.append(f"{name} has {count} conversations; at least {minimum} are needed")
    issues += _check_knowledge(folder)
    if character.block_path.exists():
        try:
            read_block_metadata(character.block_path)
        except AdapterFormatError as err:
            issues.append(f"block.safetensors is unreadable: {err}")
    return issues


def run_characters_command(settings: Settings, args: argparse.Namespace) -> int:
    """`neeko characters`: list every character and its state (with --check, its problems
    too); 1 when --check finds a problem."""
    registry = discover_characters(*settings.character_dirs)
    failed = bool(registry.problems)
    for slug, character in registry.characters.items():
        state = "trained block" if character.block_path.is_file() else "fusion (no block)"
        print(f"{slug:20} {state:18} {character.name}: {character.description}")
        for issue in check_character(character, strict=True) if args.check else []:
            print(f"{'':20} PROBLEM            {issue}")
            failed = True
    for slug, problem in registry.problems.items():
        print(f"{slug:20} BROKEN             {problem}")
    if not registry.characters and not registry.problems:
        print("no characters in " + " or ".join(map(str, settings.character_dirs)))
    return 1 if args.check and failed else 0

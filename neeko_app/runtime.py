"""Everything a chat needs, loaded once: base model, blocks of trained characters, characters."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from neeko_app.characters.card import Character
from neeko_app.characters.registry import discover_characters, find_character
from neeko_app.config import Settings
from neeko_app.embedding import role_embedding
from neeko_app.model import BaseModel, load_base_model
from neeko_app.moelora import Gate, MoeLoraConfig, NeekoModel
from neeko_app.moelora.persistence import AdapterFormatError, load_block, read_block_metadata
from neeko_app.storage import load_tensors

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The loaded model with one block per trained character, and every valid character."""

    settings: Settings
    base: BaseModel
    model: NeekoModel
    characters: dict[str, Character]
    problems: dict[str, str] = field(default_factory=dict)
    _refreshing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def character(self, slug: str) -> Character:
        return find_character(self.characters, slug)

    def refresh(self) -> list[str]:
        """Take in characters added to the characters folder since loading (by another app
        replica sharing the folder): their blocks are attached. Returns the new slugs."""
        with self._refreshing:
            registry = discover_characters(*self.settings.character_dirs)
            new = {slug: c for slug, c in registry.characters.items()
                   if slug not in self.characters}
            self._take_in(new)
            return list(new)

    def attach(self, character: Character) -> None:
        """Take in `character`, new or retrained by another runtime: its block is loaded
        from disk unless this model holds it already."""
        with self._refreshing:
            self.problems.pop(character.slug, None)
            self._take_in({character.slug: character})

    def _take_in(self, characters: dict[str, Character]) -> None:
        """Add `characters`, attaching the blocks this model does not hold yet."""
        problems = _attach_blocks(self.model, characters)
        _log_problems(problems)
        self.characters.update(characters)
        self.problems.update(problems)

    def playing_mode(self, character: Character) -> str:
        """How the model plays `character`, in words: own block, fusion, or profile only."""
        if character.slug in self.model.block_names:
            return "own block"
        return "fusion of trained blocks" if self.model.num_blocks else "profile only (no blocks)"

    def gate_for(self, character: Character, temperature: float = 0.1,
                 top_k: int | None = 2) -> Gate | None:
        """One-hot on the character's own block; fusion of trained blocks if it has none."""
        if character.slug in self.model.block_names:
            return self.model.gate_for([character.slug])
        if self.model.num_blocks == 0:
            return None
        return self.model.fusion_gate_for(character_role(character), temperature, top_k)


def character_role(character: Character) -> torch.Tensor:
    """The stored role embedding, or one computed from the profile."""
    if character.role_path and character.role_path.is_file():
        return load_tensors(character.role_path)["role"]
    return role_embedding(character.profile_text())


def block_config(characters: dict[str, Character]) -> MoeLoraConfig:
    """The LoRA config the shipped blocks were trained with (default when none is trained)."""
    for character in characters.values():
        if character.block_path and character.block_path.is_file():
            try:
                meta = read_block_metadata(character.block_path)
                return MoeLoraConfig.from_dict(json.loads(meta["config"]))
            except (AdapterFormatError, KeyError, ValueError):
                continue  # reported when the block itself fails to load
    return MoeLoraConfig()


def load_runtime(settings: Settings, report: Callable[[str], None] = print,
                 serving: bool = True) -> Runtime:
    """Load the base model and attach the block of every character that has one. `serving`
    False: for training or export, in the dtype that keeps the blocks' precision
    (`model.loader.resolve_dtype`), and never through merged blocks."""
    registry = discover_characters(*settings.character_dirs)
    characters, problems = registry.characters, registry.problems
    base = load_base_model(settings.base_model, settings.cache_dir, settings.device,
                           settings.dtype, report, serving)
    model = NeekoModel(base.model, block_config(characters)).to(base.device)
    model.merge_single_blocks(serving and settings.merges_single_blocks(base.device.type))
    problems.update(_attach_blocks(model, characters))
    _log_problems(problems)
    return Runtime(settings, base, model.eval(), characters, problems)


def _attach_blocks(model: NeekoModel, characters: dict[str, Character]) -> dict[str, str]:
    """Load the block of every character that has one (and is not loaded yet, as after an
    add-character in this process); the problems, by slug."""
    problems = {}
    for slug, character in characters.items():
        if slug in model.block_names or not (character.block_path
                                             and character.block_path.is_file()):
            continue
        try:
            load_block(model, character.block_path, name=slug)
        except AdapterFormatError as err:
            problems[slug] = f"block not loaded ({err}); the character uses fusion instead"
    return problems


def _log_problems(problems: dict[str, str]) -> None:
    for slug, problem in problems.items():
        log.warning("character %s: %s", slug, problem)

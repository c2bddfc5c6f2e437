"""What `neeko train` and `neeko add-character` do (also called by the web app's wizard).

UI-agnostic: progress goes to a callback, cancellation comes from a callback, and the
character folders change only at the very end, by atomic writes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from neeko_app.characters.card import Character, CharacterError, load_character
from neeko_app.config import Settings
from neeko_app.embedding import role_embedding
from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.storage import atomic_save_tensors
from neeko_app.training.data import DialogueError, character_examples, load_dialogues
from neeko_app.training.trainer import Progress, TrainingConfig, run_training

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class TrainingJob:
    """Options shared by pre-training and expansion."""

    config: TrainingConfig = TrainingConfig()
    on_progress: ProgressCallback | None = None
    should_stop: Callable[[], bool] | None = None


def save_role(character: Character, role: torch.Tensor) -> None:
    """Store the role embedding (the block's key) next to the character."""
    atomic_save_tensors(character.role_path, {"role": role})


def _examples_for(characters: Sequence[Character], tokenizer, max_tokens: int):
    examples = []
    for character in characters:
        try:
            conversations = load_dialogues(character.folder / "dialogues.jsonl")
        except DialogueError as err:
            raise CharacterError(f"{character.slug}: {err}") from None
        examples += character_examples(character, conversations, tokenizer, max_tokens)
    return examples


def pretrain(settings: Settings, slugs: Sequence[str], job: TrainingJob = TrainingJob(),
             lora: MoeLoraConfig | None = None) -> list[float]:
    """Agent pre-training: fresh blocks for `slugs`, trained together, then saved per character."""
    lora = lora or MoeLoraConfig()
    characters = [load_character(settings.characters_dir / slug) for slug in slugs]
    base = load_base_model(settings.base_model, settings.cache_dir, settings.device,
                           settings.dtype)
    model = NeekoModel(base.model, lora).to(base.device)
    roles = [role_embedding(c.profile_text()) for c in characters]
    model.add_blocks([c.slug for c in characters], torch.stack(roles), seed=job.config.seed)
    examples = _examples_for(characters, base.tokenizer, job.config.max_tokens)
    checkpoint = settings.cache_dir / "checkpoints" / ("pretrain-" + "-".join(sorted(slugs)))
    losses = run_training(model, examples, list(slugs), job.config, base.tokenizer.pad_token_id,
                          checkpoint, job.on_progress, job.should_stop)
    for character, role in zip(characters, roles, strict=True):
        save_role(character, role)
        save_block(model, character.slug, character.block_path, base.model_id)
    return losses


def install_character(settings: Settings, source: Path) -> tuple[Character, bool]:
    """Copy a character folder into the characters directory (refusing to overwrite one).

    Returns the installed character and whether this call copied it (False when `source`
    already is its folder in the characters directory).
    """
    character = load_character(source)
    target = settings.characters_dir / character.slug
    if target.resolve() == source.resolve():
        return character, False
    if target.exists():
        raise CharacterError(f"a character named {character.slug!r} already exists")
    staging = settings.characters_dir / f".{character.slug}.installing"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("block.safetensors"))
    staging.rename(target)
    return load_character(target), True


def add_character(
    settings: Settings,
    source: Path,
    mode: Literal["fusion", "expansion"],
    job: TrainingJob = TrainingJob(),
    runtime: Runtime | None = None,
) -> Character:
    """Add the character in `source`: fusion (role embedding only) or expansion (own block).

    Expansion trains a new block alone; every existing block stays bit-identical. A given
    `runtime` can chat with the character as soon as this returns. If it fails or is
    cancelled, a character installed by this call is removed again and the model is left
    with the blocks it had.
    """
    if mode not in ("fusion", "expansion"):
        raise ValueError("mode must be 'fusion' or 'expansion'")
    character, installed_here = install_character(settings, Path(source))
    try:
        role = role_embedding(character.profile_text())
        if mode == "expansion":
            _expand(settings, character, role, job, runtime or load_runtime(settings))
        save_role(character, role)
    except BaseException:
        if installed_here:
            shutil.rmtree(character.folder, ignore_errors=True)
        raise
    if runtime is not None:
        runtime.characters[character.slug] = character
    return character


def _expand(settings: Settings, character: Character, role: torch.Tensor, job: TrainingJob,
            runtime: Runtime) -> None:
    """Append a block for `character`, train it alone, save it (dropped again on failure)."""
    model, tokenizer = runtime.model, runtime.base.tokenizer
    examples = _examples_for([character], tokenizer, job.config.max_tokens)
    first_new = model.num_blocks
    if character.slug not in model.block_names:
        model.add_blocks([character.slug], torch.stack([role]), seed=job.config.seed)
    checkpoint = settings.cache_dir / "checkpoints" / f"expand-{character.slug}"
    try:
        run_training(model, examples, [character.slug], job.config, tokenizer.pad_token_id,
                     checkpoint, job.on_progress, job.should_stop)
        save_block(model, character.slug, character.block_path, runtime.base.model_id)
    except BaseException:
        model.truncate_blocks(first_new)
        raise

"""What `neeko train` and `neeko add-character` do (also called by the web app's wizard).

UI-agnostic: progress goes to a callback, cancellation comes from a callback, and the
character folders change only at the very end, by atomic writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from neeko_app.characters.card import (
    DIALOGUES_FILE,
    HELDOUT_FILE,
    Character,
    CharacterError,
    load_character,
    validate_slug,
)
from neeko_app.characters.registry import discover_characters, find_character, named
from neeko_app.config import Settings
from neeko_app.embedding import role_embedding
from neeko_app.model import load_base_model
from neeko_app.model.loader import resolve_dtype
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.storage import atomic_save_tensors
from neeko_app.training.data import (
    DialogueError,
    Example,
    character_examples,
    load_dialogues,
)
from neeko_app.training.grounding import grounded_examples
from neeko_app.training.knowledge_data import knowledge_examples
from neeko_app.training.trainer import (
    Progress,
    TrainingConfig,
    discard_checkpoint,
    run_training,
)

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


def examples_for(characters: Sequence[Character], tokenizer, max_tokens: int,
                 file: str = DIALOGUES_FILE, knowledge_k: int = 0) -> list[Example]:
    """The tokenized dialogues in `file` of `characters`, each routed to its own block;
    with `knowledge_k`, each grounded in that many retrieved knowledge chunks."""
    examples = []
    for character in characters:
        try:
            conversations = load_dialogues(character.folder / file)
            examples += (grounded_examples(character, conversations, tokenizer, max_tokens,
                                           knowledge_k) if knowledge_k else
                         character_examples(character, conversations, tokenizer, max_tokens))
        except DialogueError as err:
            raise CharacterError(f"{character.slug}: {err}") from None
    return examples


def heldout_examples_for(characters: Sequence[Character], tokenizer, max_tokens: int,
                         knowledge_k: int = 0) -> list[Example]:
    """The held-out dialogues of those `characters` that have a held-out set (a character
    made in the wizard may not): their loss is reported after every epoch."""
    with_heldout = [c for c in characters if (c.folder / HELDOUT_FILE).is_file()]
    return examples_for(with_heldout, tokenizer, max_tokens, HELDOUT_FILE, knowledge_k)


def job_examples(characters: Sequence[Character], tokenizer,
                 config: TrainingConfig) -> tuple[list[Example], list[Example]]:
    """The training and held-out examples a run with `config` trains and measures on: the
    dialogues, plus the knowledge and recall exchanges of the characters that have them."""
    examples = examples_for(characters, tokenizer, config.max_tokens,
                            knowledge_k=config.knowledge_k)
    for character in characters:
        try:
            examples += knowledge_examples(character, tokenizer, config.max_tokens)
        except DialogueError as err:
            raise CharacterError(f"{character.slug}: {err}") from None
    return (examples,
            heldout_examples_for(characters, tokenizer, config.max_tokens, config.knowledge_k))


def pretrain(settings: Settings, slugs: Sequence[str], job: TrainingJob = TrainingJob(),
             lora: MoeLoraConfig | None = None) -> list[float]:
    """Agent pre-training: fresh blocks for `slugs`, trained together, then saved per character."""
    lora = lora or MoeLoraConfig()
    characters = known_characters(settings, slugs)
    base = load_base_model(settings.base_model, settings.cache_dir, settings.device,
                           settings.dtype)
    model = NeekoModel(base.model, lora).to(base.device)
    roles = [role_embedding(c.profile_text()) for c in characters]
    model.add_blocks([c.slug for c in characters], torch.stack(roles), seed=job.config.seed)
    examples, heldout = job_examples(characters, base.tokenizer, job.config)
    checkpoint = settings.cache_dir / "checkpoints" / ("pretrain-" + "-".join(sorted(slugs)))
    losses = run_training(model, examples, list(slugs), job.config, base.tokenizer.pad_token_id,
                          checkpoint, job.on_progress, job.should_stop, heldout)
    for character, role in zip(characters, roles, strict=True):
        save_role(character, role)
        save_block(model, character.slug, character.block_path, base.model_id)
    discard_checkpoint(checkpoint)
    return losses


def known_characters(settings: Settings, slugs: Sequence[str]) -> list[Character]:
    """The characters `slugs` name, shipped or the user's; CharacterError for an unknown one."""
    characters = discover_characters(*settings.character_dirs).characters
    return [find_character(characters, validate_slug(slug)) for slug in slugs]


STAGING_DIR = ".staging"  # under the user's characters directory; hidden from the registry
_ADDING: set[tuple[Path, str]] = set()  # (characters dir, id or name) being added right now
_ADDING_LOCK = threading.Lock()


def stage_character(settings: Settings, source: Path) -> Character:
    """Copy a character folder to `<user characters>/.staging/<slug>` (any earlier copy
    there, left by an interrupted run, is replaced), refusing an id or a name (in any case)
    that is already taken."""
    character = load_character(source)
    existing = discover_characters(*settings.character_dirs).characters
    if (settings.user_characters_dir / character.slug).exists() or character.slug in existing:
        raise CharacterError(f"a character with the id {character.slug!r} already exists")
    same = named(existing.values(), character.name)
    if same is not None:
        raise CharacterError(f"a character named {same.name!r} already exists ({same.slug}); "
                             "give this one another name")
    staged = settings.user_characters_dir / STAGING_DIR / character.slug
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(source, staged,
                    ignore=shutil.ignore_patterns("block.safetensors", "role.safetensors"))
    return load_character(staged)


@contextmanager
def _claim(settings: Settings, character: Character) -> Iterator[None]:
    """Hold `character`'s id and name while it is added: a second add of either at the same
    time is refused with a CharacterError. The name is held within this process (threads,
    wizard users); the id also across processes on this machine, by an flock on a file in
    the cache (a killed holder releases it; the characters folder gets no lock files)."""
    root = settings.user_characters_dir.resolve()
    keys = {(root, character.slug), (root, "name:" + character.name.casefold())}
    busy = CharacterError(f"a character with the id {character.slug!r} or the name "
                          f"{character.name!r} is being added right now")
    with _ADDING_LOCK:
        if keys & _ADDING:
            raise busy
        _ADDING.update(keys)
    try:
        library = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        lock_dir = settings.cache_dir / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with (lock_dir / f"add-{library}-{character.slug}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy from None
            yield
    finally:
        with _ADDING_LOCK:
            _ADDING.difference_update(keys)


def add_character(
    settings: Settings,
    source: Path,
    mode: Literal["fusion", "expansion"],
    job: TrainingJob = TrainingJob(),
    runtime: Runtime | None = None,
) -> Character:
    """Add the character in `source`: fusion (role embedding only) or expansion (own block).

    Expansion trains a new block alone; every existing block stays bit-identical. A given
    `runtime` can chat with the character as soon as this returns.

    The character is assembled in a staging folder and moved into the characters directory
    by one rename at the very end: if this fails, is cancelled or the process is killed,
    the characters directory is as it was, and a new call resumes training from its
    checkpoint. A `source` already inside a characters directory (shipped or the user's)
    is trained in place.
    """
    if mode not in ("fusion", "expansion"):
        raise ValueError("mode must be 'fusion' or 'expansion'")
    source = Path(source)
    with _claim(settings, load_character(source)):
        return _add_claimed(settings, source, mode, job, runtime)


def _add_claimed(settings: Settings, source: Path, mode: Literal["fusion", "expansion"],
                 job: TrainingJob, runtime: Runtime | None) -> Character:
    """`add_character` while holding the character's id and name."""
    in_place = source.resolve().parent in {d.resolve() for d in settings.character_dirs}
    home = source.parent if in_place else settings.user_characters_dir
    character = load_character(source) if in_place else stage_character(settings, source)
    trainer = _training_runtime(settings, runtime) if mode == "expansion" else None
    blocks_before = trainer.model.num_blocks if trainer is not None else 0
    try:
        role = role_embedding(character.profile_text())
        if trainer is not None:
            _expand(settings, character, role, job, trainer)
        save_role(character, role)
        if not in_place:
            character.folder.rename(home / character.slug)
    except BaseException:
        if trainer is not None and trainer.model.num_blocks > blocks_before:
            trainer.model.truncate_blocks(blocks_before)
        if not in_place:
            shutil.rmtree(character.folder, ignore_errors=True)
        raise
    if mode == "expansion":
        discard_checkpoint(_expansion_checkpoint(settings, character.slug))
    character = load_character(home / character.slug)
    if runtime is not None:
        runtime.attach(character)
    return character


def _training_runtime(settings: Settings, runtime: Runtime | None) -> Runtime:
    """Where a new block trains: the chat's own runtime when it holds the training dtype
    (its model then plays the character at once), else a runtime loaded for training. In a
    chat model in bf16 the block would train through a bf16 forward pass, not the float32
    recipe of every shipped block, and be stored rounded to bf16."""
    if runtime is not None and runtime.base.dtype == resolve_dtype(settings.dtype,
                                                                   runtime.base.device):
        return runtime
    return load_runtime(settings, serving=False)


def _expansion_checkpoint(settings: Settings, slug: str) -> Path:
    return settings.cache_dir / "checkpoints" / f"expand-{slug}"


def _expand(settings: Settings, character: Character, role: torch.Tensor, job: TrainingJob,
            runtime: Runtime) -> None:
    """Append a block for `character` (unless it has one), train it alone and save it."""
    model, tokenizer = runtime.model, runtime.base.tokenizer
    examples, heldout = job_examples([character], tokenizer, job.config)
    if character.slug not in model.block_names:
        model.add_blocks([character.slug], torch.stack([role]), seed=job.config.seed)
    run_training(model, examples, [character.slug], job.config, tokenizer.pad_token_id,
                 _expansion_checkpoint(settings, character.slug), job.on_progress,
                 job.should_stop, heldout)
    save_block(model, character.slug, character.block_path, runtime.base.model_id)

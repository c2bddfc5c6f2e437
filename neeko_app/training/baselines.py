"""The LoRA-mix baseline (Neeko paper): one block trained on every character's dialogues
mixed, with the same header, data, epochs and batch size as agent pre-training, so both
get the same budget. It lives outside the characters folder; the evaluation loads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from neeko_app.config import Settings
from neeko_app.evaluation.systems import MIX_BLOCK
from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.moelora.persistence import load_block, save_block
from neeko_app.training.trainer import discard_checkpoint, run_training
from neeko_app.training.workflows import TrainingJob, job_examples, known_characters


def mix_block_path(settings: Settings) -> Path:
    """Where `neeko train --mix` saves the baseline's block."""
    return settings.cache_dir / "baselines" / f"{MIX_BLOCK}.safetensors"


def train_lora_mix(settings: Settings, slugs: Sequence[str], job: TrainingJob | None = None,
                   lora: MoeLoraConfig | None = None) -> list[float]:
    """Train the LoRA-mix block on the dialogues of `slugs` (resumable like any run)."""
    job = job or TrainingJob()
    characters = known_characters(settings, slugs)
    base = load_base_model(settings.base_model, settings.cache_dir, settings.device,
                           settings.dtype)
    model = NeekoModel(base.model, lora or MoeLoraConfig()).to(base.device)
    # a zero key: similarity 0 to every role, so fusion gates never pick this block
    model.add_blocks([MIX_BLOCK], torch.zeros(1, model.keys.shape[1]), seed=job.config.seed)
    examples, heldout = ([replace(e, block=MIX_BLOCK) for e in part]
                         for part in job_examples(characters, base.tokenizer, job.config))
    checkpoint = settings.cache_dir / "checkpoints" / ("lora-mix-" + "-".join(sorted(slugs)))
    losses = run_training(model, examples, [MIX_BLOCK], job.config,
                          base.tokenizer.pad_token_id, checkpoint, job.on_progress,
                          job.should_stop, heldout)
    save_block(model, MIX_BLOCK, mix_block_path(settings), base.model_id)
    discard_checkpoint(checkpoint)
    return losses


def load_lora_mix(model: NeekoModel, settings: Settings) -> None:
    """Append the trained LoRA-mix block to `model` (for the evaluation's lora-mix system)."""
    path = mix_block_path(settings)
    if not path.is_file():
        raise ValueError(f"no LoRA-mix baseline at {path}: train it with `neeko train "
                         "CHARACTER ... --mix`")
    if MIX_BLOCK not in model.block_names:
        load_block(model, path, name=MIX_BLOCK)

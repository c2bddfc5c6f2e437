"""A training run: epochs of mixed batches, progress reports, atomic checkpoints, resume."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from neeko_app.moelora import NeekoModel
from neeko_app.storage import atomic_save_tensors, load_tensors
from neeko_app.training.data import Example, batches_from, batches_per_epoch, collate
from neeko_app.training.loop import BlockTrainer, block_training, labelled_token_losses

CHECKPOINT_FILE = "checkpoint.safetensors"  # weights, optimiser and step in one atomic file


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of a run (all part of the checkpoint's identity)."""

    epochs: int = 2
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    seed: int = 0
    max_tokens: int = 384
    checkpoint_every: int = 20


@dataclass(frozen=True)
class Progress:
    """Where a run is: for progress bars (CLI, Gradio) and logs."""

    step: int
    total: int
    epoch: int
    loss: float
    seconds: float
    heldout_loss: float | None = None  # at the end of each epoch, when held-out dialogues exist

    @property
    def eta_seconds(self) -> float:
        return self.seconds / max(self.step, 1) * (self.total - self.step)


class TrainingCancelled(RuntimeError):
    """The run was cancelled; every block is as it was before it started."""


def run_fingerprint(model: NeekoModel, examples: Sequence[Example], trainable: Sequence[str],
                    config: TrainingConfig) -> str:
    """Identity of a run: a checkpoint is only resumed by the very same run."""
    digest = hashlib.sha256()
    digest.update(json.dumps([asdict(config), model.config.to_dict(), list(trainable),
                              model.lora_names]).encode())
    for example in examples:
        digest.update(example.block.encode())
        digest.update(json.dumps(example.input_ids).encode())
    return digest.hexdigest()


def run_training(
    model: NeekoModel,
    examples: Sequence[Example],
    trainable: Sequence[str],
    config: TrainingConfig,
    pad_id: int,
    checkpoint_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    heldout: Sequence[Example] = (),
) -> list[float]:
    """Train `trainable` blocks on `examples`; resumes from `checkpoint_dir` when it holds
    a checkpoint of the same run. Returns the losses of the steps run in this call.

    With `heldout` examples, every epoch's last progress report carries their loss under
    the blocks trained so far, so overfitting shows while the run goes on; it changes
    nothing that is trained.

    Cancelled (`should_stop`) or interrupted runs leave every block unchanged; the last
    checkpoint stays on disk for a resume. A finished run checkpoints its last step too: the
    caller removes the checkpoint (`discard_checkpoint`) once it has saved what it trained,
    so a crash while saving is resumed without training again.
    """
    per_epoch = batches_per_epoch(len(examples), config.batch_size)
    total = config.epochs * per_epoch
    fingerprint = run_fingerprint(model, examples, trainable, config)
    losses: list[float] = []
    started = time.monotonic()
    with block_training(model, trainable, config.lr, config.weight_decay) as trainer:
        step = _resume(trainer, checkpoint_dir, fingerprint)
        while step < total:
            epoch, done_in_epoch = divmod(step, per_epoch)
            for batch in batches_from(examples, config.batch_size, pad_id, config.seed, epoch,
                                      skip=done_in_epoch):
                if should_stop and should_stop():
                    raise TrainingCancelled("training cancelled; nothing was changed")
                losses.append(trainer.step(batch))
                step += 1
                if on_progress:
                    at_epoch_end = bool(heldout) and step % per_epoch == 0
                    on_progress(Progress(
                        step, total, epoch + 1, losses[-1], time.monotonic() - started,
                        mean_reply_loss(model, heldout, pad_id) if at_epoch_end else None))
                if checkpoint_dir and (step % config.checkpoint_every == 0 or step == total):
                    _save_checkpoint(trainer, checkpoint_dir, fingerprint, step)
    return losses


@torch.no_grad()
def mean_reply_loss(model: NeekoModel, examples: Sequence[Example], pad_id: int,
                    batch_size: int = 8, on_batch: Callable[[], None] | None = None) -> float:
    """Token-weighted mean loss on the characters' words of `examples`, each through its
    own block (the trained copies while a run is in progress), with dropout off;
    `on_batch` is called after each batch."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for first in range(0, len(examples), batch_size):
            batch = collate(examples[first:first + batch_size], pad_id)
            losses, _ = labelled_token_losses(model, batch, model.gate_for(batch.blocks))
            total, count = total + losses.sum().item(), count + losses.numel()
            if on_batch:
                on_batch()
    finally:
        model.train(was_training)
    return total / max(count, 1)


def discard_checkpoint(checkpoint_dir: Path) -> None:
    """Remove a run's checkpoint (after its result is safely saved)."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _save_checkpoint(trainer: BlockTrainer, directory: Path, fingerprint: str, step: int) -> None:
    atomic_save_tensors(directory / CHECKPOINT_FILE, trainer.state_tensors(),
                        {"fingerprint": fingerprint, "step": str(step)})


def _resume(trainer: BlockTrainer, directory: Path | None, fingerprint: str) -> int:
    """Load a matching checkpoint; the number of steps already done (0 if none)."""
    path = directory / CHECKPOINT_FILE if directory else None
    if path is None or not path.is_file():
        return 0
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("fingerprint") != fingerprint:
            return 0
        trainer.load_state_tensors(load_tensors(path))
        return int(metadata["step"])
    except Exception:  # an unreadable checkpoint is ignored: the run starts over
        return 0

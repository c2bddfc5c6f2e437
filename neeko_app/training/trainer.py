"""A training run: epochs of mixed batches, progress reports, atomic checkpoints, resume."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors import safe_open

from neeko_app.moelora import NeekoModel
from neeko_app.storage import atomic_save_tensors, load_tensors
from neeko_app.training.best_epoch import BestEpochs
from neeko_app.training.data import (
    Example,
    batches_from,
    batches_per_epoch,
    collate,
    pack_examples,
)
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
    keep_best_epoch: bool = False  # with held-out examples: each block keeps its best epoch
    # knowledge chunks retrieved into each conversation's header, as the chat app adds them
    # (0: the short header alone)
    knowledge_k: int = 0
    # conversations of a block packed into rows of this many tokens (0: one a row, padded)
    pack_tokens: int = 0
    bf16: bool = False  # forward under bfloat16 autocast (weights and optimiser stay fp32)


# A block trained alone (expansion, the wizard) takes batches of 2. In agent pre-training
# every block is updated at every step of the mixed run: six characters, batch 8, 2 epochs
# give each block 322 optimiser updates. Alone at batch 8 the same data give 54, too few for
# Caesar's block to learn where a turn ends: it gave the end of turn a probability of 0.002
# at the true end of his held-out replies (the six pre-trained blocks 0.17-0.58) and ran
# every chat reply to the length cap. At batch 2 (216 updates) it gives 0.78.
EXPANSION_TRAINING = TrainingConfig(batch_size=2)


@dataclass(frozen=True)
class DrillConfig:
    """`neeko drill-facts`: a fast phase then a slow one on the same exchanges (report
    blocks-alone-2026-12-06: on Newton's quiz facts, 4 epochs at 2e-3 brought his held-out
    quiz without memory from 0.16 to 0.53, two more at 5e-4 to 0.80; batch 4 under bf16
    autocast, as measured)."""

    facts_epochs: int = 4
    facts_lr: float = 2e-3
    settle_epochs: int = 2
    settle_lr: float = 5e-4
    batch_size: int = 4
    answer_words: int = 10  # replies cut after the sentence that reaches this many words
    bf16: bool = True
    seed: int = 0

    def phases(self) -> dict[str, TrainingConfig]:
        """The trainer's settings of each phase, by name, in order."""
        facts = TrainingConfig(epochs=self.facts_epochs, batch_size=self.batch_size,
                               lr=self.facts_lr, bf16=self.bf16, seed=self.seed)
        settle = replace(facts, epochs=self.settle_epochs, lr=self.settle_lr,
                         seed=self.seed + 1)
        return {name: config for name, config in (("facts", facts), ("settle", settle))
                if config.epochs}


@dataclass(frozen=True)
class Progress:
    """Where a run is: for progress bars (CLI, Gradio) and logs."""

    step: int
    total: int
    epoch: int
    loss: float
    seconds: float
    # at the end of each epoch, when held-out dialogues exist: their loss over all blocks,
    # per block, and per block the epoch with the lowest loss so far (kept when
    # `keep_best_epoch`)
    heldout_loss: float | None = None
    heldout_by_block: Mapping[str, float] | None = None
    best_epochs: Mapping[str, int] | None = None

    @property
    def eta_seconds(self) -> float:
        return self.seconds / max(self.step, 1) * (self.total - self.step)


class TrainingCancelled(RuntimeError):
    """The run was cancelled; every block is as it was before it started."""


def run_fingerprint(model: NeekoModel, examples: Sequence[Example], trainable: Sequence[str],
                    config: TrainingConfig, heldout: Sequence[Example] = ()) -> str:
    """Identity of a run: a checkpoint is only resumed by the very same run (the held-out
    examples included: they choose the epochs that are kept)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([asdict(config), model.config.to_dict(), list(trainable),
                              model.lora_names]).encode())
    for part, rows in (("train", examples), ("heldout", heldout)):
        digest.update(part.encode())
        for example in rows:
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
    the blocks trained so far, so overfitting shows while the run goes on; with
    `config.keep_best_epoch` each block then ends with the weights of the epoch where its
    own held-out loss was lowest (without it, measuring changes nothing that is trained).

    Cancelled (`should_stop`) or interrupted runs leave every block unchanged; the last
    checkpoint stays on disk for a resume. A finished run checkpoints its last step too: the
    caller removes the checkpoint (`discard_checkpoint`) once it has saved what it trained,
    so a crash while saving is resumed without training again.
    """
    if config.pack_tokens:
        examples = pack_examples(examples, config.pack_tokens, config.seed)
    per_epoch = batches_per_epoch(len(examples), config.batch_size)
    total = config.epochs * per_epoch
    fingerprint = run_fingerprint(model, examples, trainable, config, heldout)
    measure = bool(heldout) and (on_progress is not None or config.keep_best_epoch)
    losses: list[float] = []
    started = time.monotonic()
    with block_training(model, trainable, config.lr, config.weight_decay,
                        config.bf16) as trainer:
        best = BestEpochs(model, keep_weights=config.keep_best_epoch)
        step = _resume(trainer, best, checkpoint_dir, fingerprint)
        while step < total:
            epoch, done_in_epoch = divmod(step, per_epoch)
            for batch in batches_from(examples, config.batch_size, pad_id, config.seed, epoch,
                                      skip=done_in_epoch):
                if should_stop and should_stop():
                    raise TrainingCancelled("training cancelled; nothing was changed")
                losses.append(trainer.step(batch))
                step += 1
                report = Progress(step, total, epoch + 1, losses[-1],
                                  time.monotonic() - started)
                if measure and step % per_epoch == 0:
                    report = _measure_heldout(model, heldout, pad_id, best, report)
                if on_progress:
                    on_progress(report)
                if checkpoint_dir and (step % config.checkpoint_every == 0 or step == total):
                    _save_checkpoint(trainer, best, checkpoint_dir, fingerprint, step)
        if config.keep_best_epoch:
            best.restore(config.epochs)
    return losses


def _measure_heldout(model: NeekoModel, heldout: Sequence[Example], pad_id: int,
                     best: BestEpochs, report: Progress) -> Progress:
    """`report` with the held-out losses after its epoch; `best` records them."""
    totals = reply_loss_totals(model, heldout, pad_id)
    by_block = {block: loss / max(count, 1) for block, (loss, count) in totals.items()}
    best.update(report.epoch, by_block)
    return replace(report, heldout_loss=_token_mean(totals), heldout_by_block=by_block,
                   best_epochs=dict(best.epochs))


@torch.no_grad()
def reply_loss_totals(model: NeekoModel, examples: Sequence[Example], pad_id: int,
                      batch_size: int = 8, on_batch: Callable[[], None] | None = None
                      ) -> dict[str, tuple[float, int]]:
    """Per block: the summed loss over the characters' words of its `examples` and how
    many words (tokens) that is, each example through its own block (the trained copies
    while a run is in progress), with dropout off; `on_batch` is called after each batch."""
    was_training = model.training
    model.eval()
    totals: dict[str, tuple[float, int]] = {}
    try:
        for first in range(0, len(examples), batch_size):
            batch = collate(examples[first:first + batch_size], pad_id)
            losses, rows = labelled_token_losses(model, batch, model.gate_for(batch.blocks))
            for row, block in enumerate(batch.blocks):
                mine = losses[rows == row]
                loss, count = totals.get(block, (0.0, 0))
                totals[block] = (loss + mine.sum().item(), count + mine.numel())
            if on_batch:
                on_batch()
    finally:
        model.train(was_training)
    return totals


def mean_reply_loss(model: NeekoModel, examples: Sequence[Example], pad_id: int,
                    batch_size: int = 8, on_batch: Callable[[], None] | None = None) -> float:
    """Token-weighted mean loss on the characters' words of `examples` (see
    `reply_loss_totals`)."""
    return _token_mean(reply_loss_totals(model, examples, pad_id, batch_size, on_batch))


def _token_mean(totals: Mapping[str, tuple[float, int]]) -> float:
    """The loss per token over all blocks of `reply_loss_totals`."""
    return (sum(loss for loss, _ in totals.values())
            / max(1, sum(count for _, count in totals.values())))


def discard_checkpoint(checkpoint_dir: Path) -> None:
    """Remove a run's checkpoint (after its result is safely saved)."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _save_checkpoint(trainer: BlockTrainer, best: BestEpochs, directory: Path,
                     fingerprint: str, step: int) -> None:
    atomic_save_tensors(directory / CHECKPOINT_FILE, {**trainer.state_tensors(),
                                                      **best.tensors()},
                        {"fingerprint": fingerprint, "step": str(step),
                         "best": best.metadata()})


def _resume(trainer: BlockTrainer, best: BestEpochs, directory: Path | None,
            fingerprint: str) -> int:
    """Load a matching checkpoint (weights, optimiser, best epochs so far); the number of
    steps already done (0 if none)."""
    path = directory / CHECKPOINT_FILE if directory else None
    if path is None or not path.is_file():
        return 0
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("fingerprint") != fingerprint:
            return 0
        tensors = load_tensors(path)
        best.load(tensors, metadata.get("best"))
        trainer.load_state_tensors(tensors)
        return int(metadata["step"])
    except Exception:  # an unreadable checkpoint is ignored: the run starts over
        best.clear()
        return 0

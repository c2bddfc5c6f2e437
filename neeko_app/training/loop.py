"""The training primitive: optimise only the named blocks, each row routed to its own block."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from neeko_app.moelora import NeekoModel


@dataclass
class TrainingBatch:
    """Token ids with labels (-100 where no loss) and the block each row trains."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    blocks: list[str]


@dataclass
class StepReport:
    step: int
    loss: float


def train_blocks(
    model: NeekoModel,
    batches: Iterable[TrainingBatch],
    trainable: Sequence[str],
    lr: float = 2e-4,
    weight_decay: float = 0.0,
    on_step: Callable[[StepReport], None] | None = None,
) -> list[float]:
    """Train the blocks named in `trainable` on `batches`; every other weight stays bit-identical.

    Each row's gate is one-hot on its own block. Rows may only name trainable blocks (a
    frozen block in a batch would be a silent no-op, so it is refused). Weights are
    committed when the loop ends normally and discarded if it is interrupted.
    """
    allowed = set(trainable)
    losses: list[float] = []
    was_training = model.training
    model.train()
    try:
        with model.training_blocks(list(trainable)) as params:
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
            for step, batch in enumerate(batches, start=1):
                frozen = sorted(set(batch.blocks) - allowed)
                if frozen:
                    raise ValueError(f"batch rows use blocks that are not being trained: {frozen}")
                device = model.keys.device
                output = model(
                    batch.input_ids.to(device),
                    gate=model.gate_for(batch.blocks),
                    attention_mask=batch.attention_mask.to(device),
                    labels=batch.labels.to(device),
                )
                optimizer.zero_grad(set_to_none=True)
                output.loss.backward()
                optimizer.step()
                losses.append(output.loss.item())
                if on_step:
                    on_step(StepReport(step, losses[-1]))
    finally:
        model.train(was_training)
    return losses

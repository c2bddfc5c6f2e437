"""Character separation: each character's held-out dialogues scored under every block."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from neeko_app.moelora import NeekoModel
from neeko_app.training.data import Example
from neeko_app.training.trainer import mean_reply_loss


def perplexity_matrix(
    model: NeekoModel,
    examples: dict[str, Sequence[Example]],
    blocks: Sequence[str],
    pad_id: int,
    batch_size: int = 8,
    on_batch: Callable[[], None] | None = None,
) -> torch.Tensor:
    """`matrix[i, j]`: perplexity of character i's replies (its held-out set) under block j.

    Token-weighted over the whole set; a well separated model has the lowest value of
    each row on the diagonal when `blocks` lists the same characters in the same order.
    """
    matrix = torch.zeros(len(examples), len(blocks))
    for i, character_examples in enumerate(examples.values()):
        for j, block in enumerate(blocks):
            routed = [replace(e, block=block) for e in character_examples]
            loss = mean_reply_loss(model, routed, pad_id, batch_size, on_batch)
            matrix[i, j] = torch.tensor(loss).exp()
    return matrix


def diagonal_is_row_minimum(matrix: torch.Tensor) -> list[bool]:
    """For each row, whether its own block (the diagonal) gives the lowest perplexity."""
    return [bool(matrix[i, i] <= matrix[i].min()) for i in range(matrix.shape[0])]

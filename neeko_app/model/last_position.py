"""Logits for the last prompt position only, without the CPU's slow path.

transformers reads `logits_to_keep=1` as the slice `hidden[:, -1:, :]`, a strided view of
the prompt's hidden states. On the CPU, a bfloat16 matmul of such a view with the output
head (262k x 640 on the embedded model) falls back to a batched product that first copies
the whole head once per row: 5.6 s for a batch of 8 against 0.02 s on a compact tensor.
Given index positions instead, transformers gathers a fresh, compact tensor.
"""

from __future__ import annotations

import torch


def last_position(input_ids: torch.Tensor) -> torch.Tensor:
    """`logits_to_keep` for a prefill of `input_ids` [rows, width]: the last position, as
    an index tensor (logits come back as [rows, 1, vocab], as with `logits_to_keep=1`)."""
    return torch.tensor([input_ids.shape[-1] - 1], device=input_ids.device)

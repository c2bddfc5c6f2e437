"""Eager decode steps whose shapes follow the batch: the fallback of `StaticDecoder`.

The key/value cache grows by one position a step, and a row that finishes leaves the batch
(its cache rows are dropped), so each step computes only what is still needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neeko_app.model.kv_cache import returned_cache, with_cache
from neeko_app.moelora import Gate, NeekoModel

GateRow = tuple[tuple[int, ...], tuple[float, ...]]  # (block indices, weights); () = base


def batch_gate(model: NeekoModel, rows: Sequence[GateRow]) -> Gate | None:
    """The gate of a batch from its rows'; None (no LoRA work at all) when the model has no
    blocks or every row plays the bare base."""
    if not model.num_blocks or not any(indices for indices, _ in rows):
        return None
    return Gate.from_rows(rows)


class DynamicDecoder:
    """Prefill and decode steps of one batch, eager, with a growing cache."""

    def __init__(self, model: NeekoModel) -> None:
        self.model = model

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                gate_rows: Sequence[GateRow]) -> torch.Tensor:
        """Start a batch (prompts left-padded, [rows, width]); last logits [rows, vocab]."""
        self.rows = list(range(input_ids.shape[0]))
        self.gate_rows = list(gate_rows)
        self.gate = batch_gate(self.model, self.gate_rows)
        self.mask, self.positions = mask, positions[:, -1:]
        output = self.model(input_ids, gate=self.gate,
                            attention_mask=mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1)
        self.cache = returned_cache(output)
        return output.logits[:, -1, :]

    @torch.no_grad()
    def step(self, active: Sequence[int], tokens: Sequence[int]) -> torch.Tensor:
        """The next token of the rows `active` (indices into the batch, in order, a subset
        of the last step's); their logits [len(active), vocab]."""
        device = self.mask.device
        if list(active) != self.rows:
            keep = [self.rows.index(row) for row in active]
            index = torch.tensor(keep, device=device)
            self.cache.batch_select_indices(index)
            self.mask, self.positions = self.mask[index], self.positions[index]
            self.gate_rows = [self.gate_rows[k] for k in keep]
            self.gate = batch_gate(self.model, self.gate_rows)
            self.rows = list(active)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(active), 1)], dim=1)
        self.positions = self.positions + 1
        output = self.model(torch.tensor(list(tokens), device=device)[:, None],
                            gate=self.gate, attention_mask=self.mask, position_ids=self.positions,
                            use_cache=True, logits_to_keep=1, **with_cache(self.cache))
        self.cache = returned_cache(output)
        return output.logits[:, -1, :]

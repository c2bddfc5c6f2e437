"""Eager decode steps whose shapes follow the batch: the fallback of `StaticDecoder`.

The key/value cache grows by one position a step, and a row that finishes leaves the batch
(its cache rows are dropped), so each step computes only what is still needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neeko_app.model.kv_cache import returned_cache, with_cache
from neeko_app.model.output_head import OutputHead
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

    def __init__(self, model: NeekoModel, head: OutputHead | None = None) -> None:
        self.model = model
        self.head = head or OutputHead(model.base_model)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                gate_rows: Sequence[GateRow], vocabulary: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Start a batch (prompts left-padded, [rows, width]); last logits [rows, vocab].
        Tokens outside `vocabulary` (None: all) get -inf logits at every step."""
        self.rows = list(range(input_ids.shape[0]))
        self.gate_rows = list(gate_rows)
        self.gate = batch_gate(self.model, self.gate_rows)
        self.mask, self.positions = mask, positions[:, -1:]
        self.vocabulary = vocabulary
        return self._logits(self.model.hidden_states(
            input_ids, gate=self.gate, attention_mask=mask, position_ids=positions,
            use_cache=True))

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
        return self._logits(self.model.hidden_states(
            torch.tensor(list(tokens), device=device)[:, None], gate=self.gate,
            attention_mask=self.mask, position_ids=self.positions, use_cache=True,
            **with_cache(self.cache)))

    def _logits(self, output) -> torch.Tensor:
        """Keep the forward pass's cache; the logits of its last position."""
        self.cache = returned_cache(output)
        return self.head(output.last_hidden_state[:, -1], self.vocabulary)

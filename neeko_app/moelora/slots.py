"""The gate of a fixed-shape decoding batch, in tensors allocated once.

A compiled decode step cannot read the gate from the call's context (`context.py`): each
read would break the graph. `GateSlots` holds the gate of `slots` batch rows, up to `width`
blocks a row, as a flat index vector and per-rank weights; `fill` rewrites them in place,
so the compiled step sees the same tensors every time and only their values change. Rows
without a gate (empty slots, the bare base) have weight 0.
"""

from __future__ import annotations

import torch

from neeko_app.moelora.gate import Gate


class GateSlots:
    """Preallocated gate tensors for `slots` rows of at most `width` blocks of rank `rank`."""

    def __init__(self, slots: int, width: int, rank: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        if slots < 1 or width < 1:
            raise ValueError(f"gate slots need slots >= 1 and width >= 1, got {slots}, {width}")
        self.slots, self.width, self.rank = slots, width, rank
        self.indices = torch.zeros(slots * width, dtype=torch.long, device=device)
        self.rank_weights = torch.zeros(slots, 1, width * rank, dtype=dtype, device=device)
        self._gate = Gate(torch.zeros(slots, width, dtype=torch.long), torch.zeros(slots, width))

    def fill(self, gate: Gate | None) -> None:
        """Make the first rows play `gate` (None: the bare base); the other slots get weight 0."""
        indices = torch.zeros(self.slots, self.width, dtype=torch.long)
        weights = torch.zeros(self.slots, self.width)
        if gate is not None:
            rows, width = gate.indices.shape
            if rows > self.slots or width > self.width:
                raise ValueError(f"a gate of {rows} rows x {width} blocks does not fit "
                                 f"{self.slots} slots x {self.width}")
            indices[:rows, :width] = gate.indices
            weights[:rows, :width] = gate.weights
        self.indices.copy_(indices.reshape(-1))
        self.rank_weights.copy_(weights.repeat_interleave(self.rank, dim=1).unsqueeze(1))
        self._gate = Gate(indices, weights)

    @property
    def gate(self) -> Gate:
        """The same gate as an ordinary `Gate` (for eager calls)."""
        return self._gate

"""The dynamic-LoRA linear layer: one frozen base linear plus k per-character blocks.

Storage (block i is a contiguous slice, so gathering one block is one index):
    lora_A  [k, r, in]   block i's A (the issue's A of shape [k*r, in], viewed per block)
    lora_BT [k, r, out]  block i's B, transposed (B of shape [out, k*r] is lora_BT.flatten(0, 1).T)

Both are buffers: the optimiser can never touch them. Training a block copies it into a
Parameter (`train_blocks`), and `commit_training` writes it back; every other block keeps
the very same bits.

With `merges_single_block` on (serving), a batch whose rows all play one block runs
through `base.weight + scaling * B A` for that block, made once and kept (`MergedBlock`):
one matmul instead of three, at the cost of one more copy of the weight. A batch of
several characters, a fusion gate or training use the blocks as above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neeko_app.moelora.context import current_gate
from neeko_app.moelora.gate import Gate
from neeko_app.moelora.slots import GateSlots


class MoeLoraLinear(nn.Module):
    """`base(x) + scaling * sum_k w_k * B_k A_k x`, the blocks and weights chosen per batch row."""

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError("LoRA rank must be >= 1")
        self.base_layer = base_layer
        self.rank = rank
        self.scaling = alpha / rank
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = base_layer.weight
        self.register_buffer("lora_A", weight.new_zeros(0, rank, self.in_features))
        self.register_buffer("lora_BT", weight.new_zeros(0, rank, self.out_features))
        self.trainable_A = nn.ParameterDict()
        self.trainable_BT = nn.ParameterDict()
        self.slots: GateSlots | None = None  # the gate of a compiled decode step (`bind_slots`)
        self.merges_single_block = False  # see the module docstring
        self._merged: MergedBlock | None = None

    @property
    def num_blocks(self) -> int:
        return self.lora_A.shape[0]

    # ---- blocks -------------------------------------------------------------------------

    def add_blocks(self, count: int, generator: torch.Generator | None = None) -> None:
        """Append `count` fresh blocks: A Kaiming-uniform, B zero (so they start as a no-op)."""
        new_a = torch.empty(count, self.rank, self.in_features,
                            device=generator.device if generator is not None else "cpu")
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform_ with a=sqrt(5)
        new_a.uniform_(-bound, bound, generator=generator)
        new_a = new_a.to(self.lora_A)
        new_bt = self.lora_BT.new_zeros(count, self.rank, self.out_features)
        self.lora_A = torch.cat([self.lora_A, new_a])
        self.lora_BT = torch.cat([self.lora_BT, new_bt])

    def set_blocks(self, lora_a: torch.Tensor, lora_bt: torch.Tensor) -> None:
        """Replace all blocks (used when loading)."""
        expected_a = (lora_a.shape[0], self.rank, self.in_features)
        expected_bt = (lora_a.shape[0], self.rank, self.out_features)
        if tuple(lora_a.shape) != expected_a or tuple(lora_bt.shape) != expected_bt:
            raise ValueError(
                f"block shapes {tuple(lora_a.shape)}/{tuple(lora_bt.shape)} do not fit this "
                f"layer (expected {expected_a}/{expected_bt})"
            )
        self.lora_A = lora_a.to(self.lora_A)
        self.lora_BT = lora_bt.to(self.lora_BT)

    def train_blocks(self, blocks: list[int]) -> list[nn.Parameter]:
        """Make copies of `blocks` trainable Parameters; rows routed to them use the copies."""
        params = []
        for block in blocks:
            key = str(block)
            self.trainable_A[key] = nn.Parameter(self.lora_A[block].clone().float())
            self.trainable_BT[key] = nn.Parameter(self.lora_BT[block].clone().float())
            params += [self.trainable_A[key], self.trainable_BT[key]]
        return params

    def commit_training(self) -> None:
        """Write the trained copies back into their blocks and drop the copies."""
        with torch.no_grad():
            for key, param in self.trainable_A.items():
                self.lora_A[int(key)] = param.to(self.lora_A.dtype)
            for key, param in self.trainable_BT.items():
                self.lora_BT[int(key)] = param.to(self.lora_BT.dtype)
        self.discard_training()

    def discard_training(self) -> None:
        """Drop the trained copies; the stored blocks are as they were before training."""
        self.trainable_A = nn.ParameterDict()
        self.trainable_BT = nn.ParameterDict()

    def set_merging(self, enabled: bool) -> None:
        """Turn serving a single block through a merged weight on or off (dropping the kept
        copy, and the memory it holds)."""
        self.merges_single_block = enabled
        self._merged = None

    # ---- forward ------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # a compiled decode step: the gate is in its slots
            result = self.base_layer(x)
            if self.slots is None or self.num_blocks == 0:
                return result
            return self._through_blocks(result, x, self.slots.indices, self.slots.rank_weights)
        gate = current_gate()
        if gate is None or self.num_blocks == 0:
            return self.base_layer(x)
        gate = gate.for_batch(x.shape[0])
        if self._can_merge(gate):
            return F.linear(x, self._merged_weight(gate.uniform_block), self.base_layer.bias)
        result = self.base_layer(x)
        x_lora = self.dropout(x).to(self._compute_dtype())
        if gate.path == "dense":
            return self._add_block_range(result, x_lora, gate, (0, self.num_blocks))
        if not self.trainable_A:
            if gate.uniform_block is not None:
                return self._add_one_block(result, x_lora, gate.uniform_block)
            tokens_per_row = x.numel() // (x.shape[0] * self.in_features)
            if _span_is_cheaper(gate, tokens_per_row):
                return self._add_block_range(result, x_lora, gate, gate.block_span)
        return self._add_gathered_blocks(result, x_lora, gate)

    def _can_merge(self, gate: Gate) -> bool:
        """Serve this call through a merged weight: one stored block for every row, and no
        training going on."""
        return (self.merges_single_block and not self.training and not self.trainable_A
                and gate.path == "sparse" and gate.uniform_block is not None)

    def _merged_weight(self, block: int) -> torch.Tensor:
        """`base.weight + scaling * B A` of `block`, one multiply-add in the weight's dtype,
        kept until another block is asked for or the blocks or the weight change
        (reassigned or written in place). The kept copy is replaced, never written, so a
        concurrent call that still holds the old one computes with it unharmed."""
        weight = self.base_layer.weight
        stamp = (block, self.lora_A._version, self.lora_BT._version, weight.device, weight.dtype)
        sources = (self.lora_A, self.lora_BT, weight)
        kept = self._merged
        if kept is not None and kept.stamp == stamp and all(
                mine is theirs for mine, theirs in zip(kept.sources, sources, strict=True)):
            return kept.weight
        merged = torch.addmm(weight, self.lora_BT[block].T.to(weight.dtype),
                             self.lora_A[block].to(weight.dtype), alpha=self.scaling)
        self._merged = MergedBlock(stamp, sources, merged)
        return merged

    def _compute_dtype(self) -> torch.dtype:
        return torch.float32 if len(self.trainable_A) else self.lora_A.dtype

    def _add_one_block(self, result: torch.Tensor, x: torch.Tensor, block: int) -> torch.Tensor:
        """Every row plays one stored block (inference): two plain matmuls on views of it."""
        hidden = F.linear(x, self.lora_A[block]).reshape(-1, self.rank)  # [n, r]
        return _add_scaled(result, hidden, self.lora_BT[block], self.scaling)

    def _add_block_range(self, result: torch.Tensor, x: torch.Tensor, gate: Gate,
                         blocks: tuple[int, int]) -> torch.Tensor:
        """Every row through every block of the range `blocks` (first, end), weighted per
        row (zero for the blocks a row does not play). Over all blocks this is the dense
        reference, the paper's way; over the narrow range a decoding batch uses it reads
        each block once, with no copy."""
        a = self._block_range(self.lora_A, self.trainable_A, blocks)  # [range*r, in]
        bt = self._block_range(self.lora_BT, self.trainable_BT, blocks)  # [range*r, out]
        hidden = F.linear(x, a) * gate.range_weights(blocks, self.rank, x.device, x.dtype)
        return _add_scaled(result, hidden.reshape(-1, a.shape[0]), bt, self.scaling)

    def _block_range(self, stored: torch.Tensor, trainable: nn.ParameterDict,
                     blocks: tuple[int, int]) -> torch.Tensor:
        """Blocks first..end-1 as one [range*r, d] matrix: a view of the store, or with the
        trained copies swapped in while training."""
        first, end = blocks
        if not trainable:
            return stored[first:end].flatten(0, 1)
        dtype = self._compute_dtype()
        return torch.cat([trainable[str(i)] if str(i) in trainable else stored[i].to(dtype)
                          for i in range(first, end)])

    def _gather(self, stored: torch.Tensor, trainable: nn.ParameterDict, idx: torch.Tensor,
                batch: int) -> torch.Tensor:
        """Blocks `idx` [b * K] of `stored` as [b, K*r, d], trained copies swapped in."""
        chosen = stored.index_select(0, idx).to(self._compute_dtype())  # [b*K, r, d]
        for key, param in trainable.items():
            chosen = torch.where((idx == int(key))[:, None, None], param, chosen)
        return chosen.reshape(batch, -1, chosen.shape[-1])

    def _add_gathered_blocks(self, result: torch.Tensor, x: torch.Tensor,
                             gate: Gate) -> torch.Tensor:
        """Fused path: per row, only the chosen blocks' rows of A and columns of B."""
        weights = None if gate.unit_weights else gate.rank_weights(self.rank, x.device, x.dtype)
        return self._through_blocks(result, x, gate.flat_indices(x.device), weights)

    def _through_blocks(self, result: torch.Tensor, x: torch.Tensor, idx: torch.Tensor,
                        rank_weights: torch.Tensor | None) -> torch.Tensor:
        """`result` plus each row through its blocks `idx` [b * K], weighted by
        `rank_weights` [b, 1, K*r] (None: all 1): a gather and two batched matmuls, the
        same operations whatever the gate holds."""
        batch = x.shape[0]
        a = self._gather(self.lora_A, self.trainable_A, idx, batch)  # [b, K*r, in]
        bt = self._gather(self.lora_BT, self.trainable_BT, idx, batch)  # [b, K*r, out]
        hidden = torch.bmm(x.reshape(batch, -1, self.in_features), a.transpose(1, 2))
        if rank_weights is not None:
            hidden = hidden * rank_weights
        return _add_scaled(result, hidden, bt, self.scaling)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}, blocks={self.num_blocks}"


@dataclass(frozen=True)
class MergedBlock:
    """A block merged into the base weight, and what it was made from (`stamp`: the block,
    the stores' versions, the weight's device and dtype; `sources`: the tensors themselves)."""

    stamp: tuple
    sources: tuple[torch.Tensor, ...]
    weight: torch.Tensor


def _span_is_cheaper(gate: Gate, tokens_per_row: int) -> bool:
    """Decoding (one token per row), reading the batch's block range once moves less memory
    than gathering each row's blocks into a copy, unless the range is much wider than the
    batch; with several tokens per row the gather's copy pays for itself."""
    first, end = gate.block_span
    return tokens_per_row == 1 and end - first <= 2 * gate.indices.numel()


def _add_scaled(result: torch.Tensor, hidden: torch.Tensor, b: torch.Tensor,
                scaling: float) -> torch.Tensor:
    """`result + scaling * hidden @ b`, in one fused multiply-add where the dtypes agree.

    `hidden` is [n, r] with `b` [r, out], or batched: [b, t, K*r] with `b` [b, K*r, out]."""
    if hidden.dtype != result.dtype:
        return result + (scaling * (hidden @ b)).to(result.dtype).reshape(result.shape)
    fused = torch.addmm if hidden.dim() == 2 else torch.baddbmm
    flat = result.reshape(*hidden.shape[:-1], b.shape[-1])
    return fused(flat, hidden, b, alpha=scaling).reshape(result.shape)

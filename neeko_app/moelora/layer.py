"""The dynamic-LoRA linear layer: one frozen base linear plus k per-character blocks.

Storage (block i is a contiguous slice, so gathering one block is one index):
    lora_A  [k, r, in]   block i's A (the issue's A of shape [k*r, in], viewed per block)
    lora_BT [k, r, out]  block i's B, transposed (B of shape [out, k*r] is lora_BT.flatten(0, 1).T)

Both are buffers: the optimiser can never touch them. Training a block copies it into a
Parameter (`train_blocks`), and `commit_training` writes it back; every other block keeps
the very same bits.

With `merges_single_block` on (serving), a batch whose rows all play one block runs
through `base.weight + scaling * B A` for that block, made once and kept (`KeptWeight`):
one matmul instead of three, at the cost of one more copy of the weight (on a CPU laid out
for oneDNN's kernels, `model.prepacked`). A batch of
several characters, a fusion gate or training use the blocks as above.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neeko_app.model.prepacked import PrepackedWeight
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
        self.prepacks_weights = True  # serve through weights laid out for oneDNN (CPU)
        self._merged: KeptWeight | None = None
        self._packed_base: KeptWeight | None = None

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

    def set_merging(self, enabled: bool, prepacked: bool = True) -> None:
        """Turn serving a single block through a merged weight on or off (dropping the kept
        copies, and the memory they hold); `prepacked`: while serving (merging on), multiply
        by copies of the merged and the base weight laid out for oneDNN where the CPU's
        kernels take them (`model.prepacked`), else by plain tensors."""
        self.merges_single_block = enabled
        self.prepacks_weights = prepacked
        self._merged = self._packed_base = None

    # ---- forward ------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # a compiled decode step: the gate is in its slots
            result = self.base_layer(x)
            if self.slots is None or self.num_blocks == 0:
                return result
            return self._through_blocks(result, x, self.slots.indices, self.slots.rank_weights)
        gate = current_gate()
        if gate is None or self.num_blocks == 0:
            return self._base_product(x)
        gate = gate.for_batch(x.shape[0])
        if self._can_merge(gate):
            return self._merged_weight(gate.uniform_block)(x, self.base_layer.bias)
        result = self._base_product(x)
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

    def _merged_weight(self, block: int) -> PrepackedWeight:
        """`base.weight + scaling * B A` of `block`, one multiply-add in the weight's dtype
        (prepacked as `set_merging` says), kept until another block is asked for or the
        blocks or the weight change (reassigned or written in place)."""
        weight = self.base_layer.weight

        def merge() -> PrepackedWeight:
            with torch.no_grad():
                merged = torch.addmm(weight, self.lora_BT[block].T.to(weight.dtype),
                                     self.lora_A[block].to(weight.dtype), alpha=self.scaling)
            return PrepackedWeight(merged, packed=self.prepacks_weights)
        stamp = (block, self.lora_A._version, self.lora_BT._version, *self._weight_stamp())
        self._merged = _kept(self._merged, stamp, (self.lora_A, self.lora_BT, weight), merge)
        return self._merged.weight

    def _base_product(self, x: torch.Tensor) -> torch.Tensor:
        """The base linear's output: while serving with prepacked weights, through a
        prepacked copy of its weight (made on first use, remade when the weight changes)."""
        if not (self.merges_single_block and self.prepacks_weights) or self.training \
                or x.requires_grad:
            return self.base_layer(x)
        weight = self.base_layer.weight
        self._packed_base = _kept(self._packed_base, self._weight_stamp(), (weight,),
                                  lambda: PrepackedWeight(weight.detach()))
        return self._packed_base.weight(x, self.base_layer.bias)

    def _weight_stamp(self) -> tuple:
        """What a copy of the base weight depends on besides its identity: its writes, its
        device and dtype (`module.to` swaps a parameter's data in place)."""
        weight = self.base_layer.weight
        return weight._version, weight.device, weight.dtype

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
class KeptWeight:
    """A weight made for serving (a merged block, a prepacked base weight), and what it was
    made from: `sources`, the tensors themselves, and `stamp`, what else it depends on (a
    block index, the sources' versions, device and dtype)."""

    stamp: tuple
    sources: tuple[torch.Tensor, ...]
    weight: PrepackedWeight


def _kept(kept: KeptWeight | None, stamp: tuple, sources: tuple[torch.Tensor, ...],
          make: Callable[[], PrepackedWeight]) -> KeptWeight:
    """`kept` while it was made from the very `sources` with the same `stamp`; else a new
    one from `make`. A kept weight is replaced, never written, so a concurrent call that
    still holds the old one computes with it unharmed."""
    if kept is not None and kept.stamp == stamp and all(
            mine is theirs for mine, theirs in zip(kept.sources, sources, strict=True)):
        return kept
    return KeptWeight(stamp, sources, make())


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

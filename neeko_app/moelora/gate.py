"""Gates: which LoRA blocks each batch row uses, and with what weight.

A `Gate` is data that travels with a forward call (see `context.py`); nothing about it is
stored on the model, so concurrent calls with different characters cannot see each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

GatePath = Literal["sparse", "dense"]


@dataclass(frozen=True)
class Gate:
    """Row j of a batch adds `sum_k weights[j, k] * block[indices[j, k]]` to the base output.

    `path="sparse"` gathers only the chosen blocks (the fused path used for inference and
    training); `path="dense"` computes every block and weighs them, as the Neeko paper's
    code does. Both give the same numbers; the dense one is kept as a reference.
    """

    indices: torch.Tensor  # [batch, K] int64
    weights: torch.Tensor  # [batch, K] float
    path: GatePath = "sparse"
    # what every layer of one forward call derives from the gate, worked out once per call
    _derived: dict[Any, Any] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def __post_init__(self) -> None:
        if self.indices.dim() != 2 or self.indices.shape != self.weights.shape:
            raise ValueError(
                f"gate indices {tuple(self.indices.shape)} and weights "
                f"{tuple(self.weights.shape)} must both be [batch, K]"
            )

    @classmethod
    def one_hot(cls, blocks: Sequence[int], path: GatePath = "sparse") -> Gate:
        """Row j uses block `blocks[j]` alone (a known character). -1 means the bare base."""
        ids = torch.tensor(list(blocks), dtype=torch.long).unsqueeze(1)
        weights = (ids >= 0).float()
        return cls(ids.clamp(min=0), weights, path)

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[Sequence[int], Sequence[float]]]) -> Gate:
        """Stack per-row (indices, weights); shorter rows are padded with zero-weight entries."""
        width = max(1, max(len(ids) for ids, _ in rows))
        indices = torch.zeros(len(rows), width, dtype=torch.long)
        weights = torch.zeros(len(rows), width)
        for j, (ids, ws) in enumerate(rows):
            indices[j, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
            weights[j, : len(ws)] = torch.tensor(list(ws), dtype=torch.float)
        return cls(indices, weights)

    @property
    def batch_size(self) -> int:
        return self.indices.shape[0]

    def _memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """`make()`, computed on the first call for `key` and kept with the gate."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    @property
    def uniform_block(self) -> int | None:
        """The block every row uses alone with weight 1 (a batch of one character), else None."""
        def find() -> int | None:
            if self.indices.shape[1] != 1 or not self.unit_weights:
                return None
            first = self.indices[0, 0]
            return int(first) if bool((self.indices == first).all()) else None
        return self._memo("uniform", find)

    @property
    def unit_weights(self) -> bool:
        """True when every entry has weight 1 (one-hot rows, no bare-base row)."""
        return self._memo("unit", lambda: bool((self.weights == 1).all()))

    def flat_indices(self, device: torch.device) -> torch.Tensor:
        """The indices as one [batch * K] vector on `device` (copied there once per gate)."""
        return self._memo(("idx", device), lambda: self.indices.reshape(-1).to(device))

    @property
    def block_span(self) -> tuple[int, int]:
        """(first, last + 1) of the blocks this gate uses: a contiguous range covering them."""
        return self._memo("span", lambda: (int(self.indices.min()), int(self.indices.max()) + 1))

    def range_weights(self, blocks: tuple[int, int], rank: int, device: torch.device,
                      dtype: torch.dtype) -> torch.Tensor:
        """Per row, the weight of every block first..end-1 of `blocks`, repeated over its
        `rank` rows: [batch, 1, range * rank] (zero for the blocks a row does not use)."""
        def make() -> torch.Tensor:
            first, end = blocks
            dense = self.dense_weights(end)[:, first:]
            return dense.to(device, dtype).repeat_interleave(rank, dim=1).unsqueeze(1)
        return self._memo(("range_w", blocks, rank, device, dtype), make)

    def rank_weights(self, rank: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The weights repeated over each block's `rank` rows: [batch, 1, K * rank]."""
        return self._memo(("w", rank, device, dtype), lambda: self.weights.to(device, dtype)
                          .repeat_interleave(rank, dim=1).unsqueeze(1))

    def with_path(self, path: GatePath) -> Gate:
        return Gate(self.indices, self.weights, path)

    def dense_weights(self, num_blocks: int) -> torch.Tensor:
        """The gate as a [batch, num_blocks] weight matrix."""
        dense = torch.zeros(self.batch_size, num_blocks, dtype=self.weights.dtype)
        return dense.scatter_add_(1, self.indices.cpu(), self.weights.cpu())

    def for_batch(self, batch_size: int) -> Gate:
        """Match a batch that generate() expanded (num_return_sequences, beams): repeat rows."""
        if batch_size == self.batch_size:
            return self
        if batch_size % self.batch_size:
            raise ValueError(
                f"gate has {self.batch_size} rows but the batch has {batch_size}; "
                "give one gate row per input row"
            )
        repeat = batch_size // self.batch_size
        return self._memo(("batch", batch_size), lambda: Gate(
            self.indices.repeat_interleave(repeat, 0),
            self.weights.repeat_interleave(repeat, 0),
            self.path,
        ))


def fusion_weights(
    role_embeddings: torch.Tensor, keys: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Softmax over cosine similarities between role embeddings [b, d] and block keys [k, d]."""
    if keys.shape[0] == 0:
        raise ValueError("fusion needs at least one trained block to mix")
    if temperature <= 0:
        raise ValueError("fusion temperature must be > 0")
    sims = F.normalize(role_embeddings.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T
    return torch.softmax(sims / temperature, dim=-1)


def fusion_gate(
    role_embeddings: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 0.1,
    top_k: int | None = None,
) -> Gate:
    """Gate for characters without a block of their own: mix existing blocks by similarity.

    With `top_k`, keep the k most similar blocks and renormalise their weights.
    """
    probs = fusion_weights(role_embeddings, keys, temperature)
    if top_k is None or top_k >= probs.shape[1]:
        order = torch.arange(probs.shape[1]).expand_as(probs)
        return Gate(order.contiguous(), probs)
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    weights, indices = probs.topk(top_k, dim=-1)
    return Gate(indices, weights / weights.sum(-1, keepdim=True))

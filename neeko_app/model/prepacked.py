"""Linear products with weights laid out once for oneDNN's CPU kernels.

A decode step multiplies one or two rows by each weight matrix, so it reads every weight
from memory and does little else. With the weight in PyTorch's usual layout, the 2-core
CPU read the embedded model's output head at 12 GB/s and its 640 x 2048 layers at about
9 GB/s against 32 GB/s for a plain sum of the same bytes. oneDNN's matmul on a weight
reordered into its blocked layout (what inductor's weight freezing does) took half the time
at one or two rows and 0.7 of it at sixteen; in bfloat16 it gives the same bits.

`PrepackedWeight` holds such a copy of a weight that will not change (a character's block
merged into a layer, a narrowed output head) and computes `x @ weight.T + bias` with it.
Where oneDNN cannot take the weight (another device, an unsupported dtype) it keeps the
plain weight and calls `F.linear`.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from neeko_app.model.loader import cpu_multiplies_bfloat16

log = logging.getLogger(__name__)

PACKABLE_DTYPES = (torch.bfloat16, torch.float32)
PACKING_ROWS = 2  # oneDNN picks the layout for this many rows (a session and its contrast row)


def can_prepack(weight: torch.Tensor) -> bool:
    """Whether oneDNN can take `weight`: a CPU tensor in float32, or in bfloat16 on a CPU
    that multiplies it natively."""
    return (weight.device.type == "cpu" and weight.dtype in PACKABLE_DTYPES
            and torch.backends.mkldnn.is_available()
            and (weight.dtype != torch.bfloat16 or cpu_multiplies_bfloat16()))


class PrepackedWeight:
    """`weight` [out, in] ready for `self(x, bias)` = `F.linear(x, weight, bias)`; the
    caller must not need `weight` itself afterwards (a packed copy replaces it)."""

    def __init__(self, weight: torch.Tensor, packed: bool = True) -> None:
        """`packed` False: keep the plain weight (the reference path, and for tests)."""
        self.shape, self.dtype = weight.shape, weight.dtype
        self.packed = packed and can_prepack(weight)
        self._weight = weight
        if self.packed:
            try:
                self._weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(),
                                                                       PACKING_ROWS)
            except RuntimeError as err:  # an oneDNN build without this dtype's kernels
                log.info("oneDNN cannot pack a %s weight (%s); using F.linear", weight.dtype, err)
                self.packed = False

    @property
    def nbytes(self) -> int:
        """The weight's size in memory (the packed copy is the same size)."""
        return self.shape.numel() * self.dtype.itemsize

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if not self.packed:
            return F.linear(x, self._weight, bias)
        if x.dtype != self.dtype or x.requires_grad:  # not the serving call it was made for
            return F.linear(x, self._weight.to_dense(), bias)
        return torch.ops.mkldnn._linear_pointwise(x, self._weight, bias, "none", [], "")

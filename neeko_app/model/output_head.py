"""A causal language model's output head, computed only for the tokens a batch may produce.

On a CPU the head is the largest single product of a decode step: Gemma's 262k x 640
matrix is 62 % of the embedded model's weights, read whole for every token. The script
guard already forbids every token holding a letter of a writing system the conversation
does not use (a third of the vocabulary for an English chat), so their logits need not be
computed at all: the head keeps a compact copy of the rows a batch may produce and
multiplies with that. The logits of the other tokens come back as -inf, exactly what the
guard would have made of them. The compact copy is laid out for oneDNN's CPU kernels
(`prepacked`), which multiply by it in about 0.7 of the time a plain tensor takes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from transformers import PreTrainedModel

from neeko_app.model.prepacked import PrepackedWeight

NARROW_AT_MOST = 0.9  # narrow the head when a batch may produce at most this share of it
KEPT_HEADS = 2  # compact copies kept (one per mix of writing systems in use)


class OutputHead:
    """`head(hidden, allowed)`: logits [rows, vocab] of the last hidden states [rows, d],
    with -inf for every token `allowed` leaves out (None: all allowed)."""

    def __init__(self, model: PreTrainedModel, narrow_at_most: float = NARROW_AT_MOST,
                 prepacked: bool = True) -> None:
        """`narrow_at_most`: narrow the head when a batch may produce at most this share of
        the vocabulary (0: never, the whole head every step); `prepacked`: lay the narrowed
        copies out for oneDNN where the CPU's kernels take them."""
        head = model.get_output_embeddings()
        self.narrow_at_most = narrow_at_most
        self.prepacked = prepacked
        self.weight: torch.Tensor = head.weight
        self._whole = PrepackedWeight(head.weight, packed=False)  # no second copy of it all
        self.bias: torch.Tensor | None = getattr(head, "bias", None)
        self.softcap: float | None = getattr(model.config, "final_logit_softcapping", None)
        self._narrow: OrderedDict[bytes, tuple[torch.Tensor, PrepackedWeight,
                                               torch.Tensor | None]] = OrderedDict()

    @property
    def vocab(self) -> int:
        return self.weight.shape[0]

    def __call__(self, hidden: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        hidden = hidden.contiguous()  # a strided view sends the CPU's matmul down a slow path
        if allowed is None:
            return self._logits(hidden, self._whole, self.bias)
        allowed = self._fitted(allowed)
        if allowed.sum() > self.narrow_at_most * self.vocab:
            return self._logits(hidden, self._whole, self.bias).masked_fill(~allowed, -torch.inf)
        ids, weight, bias = self._narrowed(allowed)
        logits = hidden.new_full((hidden.shape[0], self.vocab), -torch.inf)
        return logits.index_copy_(1, ids, self._logits(hidden, weight, bias))

    def _logits(self, hidden: torch.Tensor, weight: PrepackedWeight,
                bias: torch.Tensor | None) -> torch.Tensor:
        logits = weight(hidden, bias)
        if self.softcap is not None:  # Gemma 2's cap, before the ban: tanh(-inf) is not -inf
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _fitted(self, allowed: torch.Tensor) -> torch.Tensor:
        """`allowed` (over a tokenizer's vocabulary) over the head's rows: rows past the
        tokenizer (a head padded for speed) stay allowed, as the script guard leaves them."""
        allowed = allowed[:self.vocab].to(self.weight.device)
        if allowed.numel() < self.vocab:
            allowed = torch.cat([allowed, allowed.new_ones(self.vocab - allowed.numel())])
        return allowed

    def _narrowed(self, allowed: torch.Tensor) -> tuple[torch.Tensor, PrepackedWeight,
                                                         torch.Tensor | None]:
        """The allowed rows' ids and their compact copy of the head (and of its bias),
        built once per mix and kept for the next batches."""
        key = allowed.cpu().numpy().tobytes()
        if key in self._narrow:
            self._narrow.move_to_end(key)
        else:
            ids = allowed.nonzero().squeeze(1)
            bias = None if self.bias is None else self.bias[ids]
            self._narrow[key] = (ids, PrepackedWeight(self.weight[ids], self.prepacked), bias)
            while len(self._narrow) > KEPT_HEADS:
                self._narrow.popitem(last=False)
        return self._narrow[key]

"""A cooler temperature for the reply's first sentence, where the answer goes.

The characters are trained to answer in their first sentence and add colour after it. The
chat app samples at temperature 0.7 for variety, and on the fact quiz that costs answers
that greedy decoding gets right. `OpeningTemperature` samples the first sentence at a lower
temperature and the rest at the usual one.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import LogitsProcessor

from neeko_app.chat.sentences import sentence_ends


class OpeningTemperature(LogitsProcessor):
    """Divide the logits by `opening` until the reply's first sentence has ended, by `rest`
    after (the reply is what follows `prompt_length`)."""

    def __init__(self, opening: float, rest: float, prompt_length: int, tokenizer) -> None:
        if opening <= 0 or rest <= 0:
            raise ValueError("temperatures must be > 0")
        self.opening, self.rest = opening, rest
        self.prompt_length = prompt_length
        self.tokenizer = tokenizer
        self._opened: list[bool] | None = None  # per row: the first sentence has ended

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._opened is None:
            self._opened = [False] * input_ids.shape[0]
        for row, opened in enumerate(self._opened):
            if not opened:
                reply = self.tokenizer.decode(input_ids[row, self.prompt_length:],
                                              skip_special_tokens=True)
                self._opened[row] = bool(sentence_ends(reply))
        divisors = torch.tensor([self.rest if opened else self.opening
                                 for opened in self._opened], dtype=scores.dtype)
        return scores / divisors[:, None]

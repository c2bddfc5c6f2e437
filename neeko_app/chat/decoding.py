"""One request's side of a batched decoding loop: choose its tokens, turn them into text.

Each row keeps its own sequence, sampling rules and random generator, so what a request
generates does not depend on which other requests share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neeko_app.chat.generation import DecodingSettings

REPLACEMENT = "\ufffd"  # what a partial UTF-8 character decodes to until its last byte comes
FIRST_CANDIDATES = 64  # tokens looked at first for the nucleus; widened (x4) when too few


def nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-p nucleus of a [vocab] distribution: the most likely tokens, best first, up to
    and including the one whose cumulative probability reaches `top_p` (the tokens
    transformers' TopPLogitsWarper keeps), and their probabilities.

    The candidates come from `topk`, widened until they hold the nucleus: with a 262k
    vocabulary that is a few milliseconds less per token and row than sorting it all."""
    if top_p >= 1.0:
        return torch.arange(probs.numel()), probs
    count = min(FIRST_CANDIDATES, probs.numel())
    while True:
        top, ids = probs.topk(count)
        mass = top.cumsum(0)
        if mass[-1] >= top_p or count == probs.numel():
            break
        count = min(4 * count, probs.numel())
    keep = max(1, int((mass - top < top_p).sum()))  # mass before a kept token is < top_p
    return ids[:keep], top[:keep]


class RowDecoder:
    """Token choice and incremental text for one request of a batch."""

    def __init__(self, tokenizer, prompt_ids: Sequence[int], settings: DecodingSettings,
                 stop_ids: Sequence[int], quotable: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self.stop_ids = frozenset(stop_ids)
        self.sequence = torch.tensor([list(prompt_ids)], dtype=torch.long)
        self.generated: list[int] = []
        self.processors = settings.logits_processors(prompt_ids, tokenizer, quotable)
        self.generator = (torch.Generator().manual_seed(settings.seed)
                          if settings.seed is not None else None)
        self.emitted = ""
        self.finish_reason: str | None = None

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from this row's last-position logits [vocab]; records it."""
        scores = self.processors(self.sequence, logits.float().cpu().unsqueeze(0))[0]
        if self.settings.temperature > 0:
            ids, probs = nucleus(torch.softmax(scores, dim=-1), self.settings.top_p)
            token = int(ids[torch.multinomial(probs, 1, generator=self.generator)])
        else:
            token = int(scores.argmax())
        if token in self.stop_ids:
            self.finish_reason = "stop"
            return token
        self.sequence = torch.cat([self.sequence, torch.tensor([[token]])], dim=1)
        self.generated.append(token)
        if len(self.generated) >= self.settings.max_new_tokens:
            self.finish_reason = "length"
        return token

    def new_text(self) -> str:
        """Text not yet handed out; a trailing partial character waits for its next bytes
        unless the row has finished."""
        text = self.tokenizer.decode(self.generated, skip_special_tokens=True)
        if not text.startswith(self.emitted):
            return ""  # an earlier piece decoded differently in context: keep what was sent
        if text.endswith(REPLACEMENT) and self.finish_reason is None:
            return ""
        piece = text[len(self.emitted):]
        self.emitted = text
        return piece

"""One request's side of a batched decoding loop: choose its tokens, turn them into text.

Each row keeps its own sequence, sampling rules and random generator, so what a request
generates does not depend on which other requests share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neeko_app.chat.generation import DecodingSettings

REPLACEMENT = "\ufffd"  # what a partial UTF-8 character decodes to until its last byte comes


class RowDecoder:
    """Token choice and incremental text for one request of a batch."""

    def __init__(self, tokenizer, prompt_ids: Sequence[int], settings: DecodingSettings,
                 stop_ids: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self.stop_ids = frozenset(stop_ids)
        self.sequence = torch.tensor([list(prompt_ids)], dtype=torch.long)
        self.generated: list[int] = []
        self.processors = settings.logits_processors()
        self.generator = (torch.Generator().manual_seed(settings.seed)
                          if settings.seed is not None else None)
        self.emitted = ""
        self.finish_reason: str | None = None

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from this row's last-position logits [vocab]; records it."""
        scores = self.processors(self.sequence, logits.float().cpu().unsqueeze(0))
        if self.settings.temperature > 0:
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs[0], 1, generator=self.generator))
        else:
            token = int(scores[0].argmax())
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

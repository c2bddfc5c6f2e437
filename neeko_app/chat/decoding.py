"""One request's side of a batched decoding loop: choose its tokens, turn them into text.

Each row keeps its own sequence, sampling rules and random generator, so what a request
generates does not depend on which other requests share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.sentences import cut_after_sentences
from neeko_app.chat.writing_systems import ForeignScriptBan

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


def stop_position(text: str, stop_strings: Sequence[str]) -> int | None:
    """Where the first stop string in `text` begins (None: there is none)."""
    found = [at for stop in stop_strings if (at := text.find(stop)) >= 0]
    return min(found, default=None)


def held_back(text: str, stop_strings: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string: they
    wait until the next tokens tell whether the stop string comes."""
    longest = 0
    for stop in stop_strings:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class RowDecoder:
    """Token choice and incremental text for one request of a batch; the text ends before
    the first of the settings' stop strings, or after its `max_sentences` sentences, either
    of which ends the row ("stop")."""

    def __init__(self, tokenizer, prompt_ids: Sequence[int], settings: DecodingSettings,
                 stop_ids: Sequence[int], quotable: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self.stop_ids = frozenset(stop_ids)
        self.sequence = torch.tensor([list(prompt_ids)], dtype=torch.long)
        self.generated: list[int] = []
        self.processors = settings.logits_processors(prompt_ids, tokenizer, quotable)
        # what the script guard forbids for the whole reply (None: no guard): the batch's
        # output head need not compute these tokens
        self.banned_tokens = next((p.foreign for p in self.processors
                                   if isinstance(p, ForeignScriptBan)), None)
        self.generator = (torch.Generator().manual_seed(settings.seed)
                          if settings.seed is not None else None)
        self.text = ""  # the reply so far, up to a stop string
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
        self.text = self.tokenizer.decode(self.generated, skip_special_tokens=True)
        cuts = [stop_position(self.text, self.settings.stop_strings)]
        if self.settings.max_sentences:
            cuts.append(cut_after_sentences(self.text, self.settings.max_sentences))
        cut = min((at for at in cuts if at is not None), default=None)
        if cut is not None:
            self.text, self.finish_reason = self.text[:cut], "stop"
        elif len(self.generated) >= self.settings.max_new_tokens:
            self.finish_reason = "length"
        return token

    def new_text(self) -> str:
        """Text not yet handed out. Until the row finishes, a trailing partial character
        waits for its next bytes, a tail that may begin a stop string waits to see whether
        it does, and under a sentence limit, trailing whitespace waits for the next word."""
        text = self.text
        if self.finish_reason is None:
            if text.endswith(REPLACEMENT):
                return ""
            text = text[:len(text) - held_back(text, self.settings.stop_strings)]
            if self.settings.max_sentences:
                text = text.rstrip()
        if not text.startswith(self.emitted):
            return ""  # an earlier piece decoded differently in context: keep what was sent
        piece = text[len(self.emitted):]
        self.emitted = text
        return piece

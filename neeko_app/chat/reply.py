"""`Reply`: one character's reply in progress, read as a stream of text pieces."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

from neeko_app.chat.context import AssembledPrompt, RetrievedContext
from neeko_app.chat.scheduler import TokenStream
from neeko_app.chat.sentences import STOP

log = logging.getLogger(__name__)

SENTENCE_END = re.compile(rf"{STOP}(?=\s|$)")  # in a finished text
KEEP_AT_LEAST = 0.4  # share of a cut-off reply that trimming to a sentence end must keep


def end_cleanly(text: str) -> str:
    """A reply cut off by the length cap, ended at its last full sentence, or marked with
    an ellipsis when that would drop most of it."""
    text = text.rstrip()
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    if ends and ends[-1] == len(text):
        return text
    if ends and ends[-1] >= KEEP_AT_LEAST * len(text):
        return text[:ends[-1]]
    return f"{text}…" if text else text


def kept_text(text: str, finish_reason: str | None) -> str:
    """The text a conversation keeps of a reply: ended at a full sentence when the length
    cap cut it off, else as generated."""
    return end_cleanly(text) if finish_reason == "length" else text


class Reply:
    """Iterate for the text as it is generated; then `text`, `finish_reason` and the token
    counts describe it, and `context` tells what memory contributed to the prompt.

    When reading ends (all read, or the reader stopped early: the generation is then
    cancelled), the `on_done` hooks run once, in order; they see `cancelled`. `stop()` ends
    the generation from elsewhere (the user's Stop button): reading then ends normally, with
    finish reason "stopped", and the text so far is the reply.
    """

    def __init__(self, character: str, prompt: AssembledPrompt, prompt_tokens: int,
                 stream: TokenStream, lead: str = "") -> None:
        self.character = character
        self.lead = lead  # the text a continued reply goes on from ("" for a new reply)
        self.prompt = prompt
        self.prompt_tokens = prompt_tokens
        self.on_done: list[Callable[[Reply], None]] = []
        self._stream = stream
        self._started = False
        self._stopped_early = False
        self._stop_asked = False

    @property
    def context(self) -> RetrievedContext:
        return self.prompt.context

    @property
    def text(self) -> str:
        """The text generated, exactly as streamed."""
        return self._stream.text

    @property
    def finished_text(self) -> str:
        """The text kept in the conversation: ended at a full sentence when the length cap
        cut it off."""
        return kept_text(self.text, self.finish_reason)

    @property
    def finish_reason(self) -> str | None:
        if self._stopped_early:
            return "cancelled"
        reason = self._stream.finish_reason
        return "stopped" if reason == "cancelled" and self._stop_asked else reason

    @property
    def completion_tokens(self) -> int:
        return self._stream.completion_tokens

    @property
    def cancelled(self) -> bool:
        return self.finish_reason == "cancelled"

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a reply can be read only once; use .text afterwards")
        self._started = True
        try:
            yield from self._stream
        except GeneratorExit:
            self._stopped_early = True
            self._stream.cancel()
            self._run_hooks()
            raise
        self._run_hooks()

    def stop(self) -> None:
        """End the generation at the next step; the text generated so far is kept."""
        self._stop_asked = True
        self._stream.cancel()

    def result(self) -> str:
        """Read the whole reply (if not read yet) and return its text."""
        if not self._started:
            for _ in self:
                pass
        return self.text

    def _run_hooks(self) -> None:
        for hook in self.on_done:
            try:
                hook(self)
            except Exception:  # a failed side effect must not lose the reply already shown
                log.exception("after-reply step failed for %s", self.character)

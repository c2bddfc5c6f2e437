"""`Reply`: one character's reply in progress, read as a stream of text pieces."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from neeko_app.chat.context import AssembledPrompt, RetrievedContext
from neeko_app.chat.scheduler import TokenStream

log = logging.getLogger(__name__)


class Reply:
    """Iterate for the text as it is generated; then `text`, `finish_reason` and the token
    counts describe it, and `context` tells what memory contributed to the prompt.

    When reading ends (all read, or the reader stopped early: the generation is then
    cancelled), the `on_done` hooks run once, in order; they see `cancelled`.
    """

    def __init__(self, character: str, prompt: AssembledPrompt, prompt_tokens: int,
                 stream: TokenStream) -> None:
        self.character = character
        self.prompt = prompt
        self.prompt_tokens = prompt_tokens
        self.on_done: list[Callable[[Reply], None]] = []
        self._stream = stream
        self._started = False
        self._stopped_early = False

    @property
    def context(self) -> RetrievedContext:
        return self.prompt.context

    @property
    def text(self) -> str:
        return self._stream.text

    @property
    def finish_reason(self) -> str | None:
        return "cancelled" if self._stopped_early else self._stream.finish_reason

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

"""The HTTP server `neeko api` runs on: uvicorn (h11) with timeouts for idle and slow clients.

- A connection must send a complete request head within HEAD_TIMEOUT_S of opening, and of
  the end of its previous response; otherwise it is closed. (Uvicorn itself times out only
  a keep-alive connection that sends nothing at all: every byte restarts its timer, and a
  connection that never sends a request is never closed.)
- An idle keep-alive connection is closed after KEEP_ALIVE_S (uvicorn's timer).
- A request head may be at most MAX_HEAD_BYTES (h11's limit; more is answered 400).
- At most MAX_CONNECTIONS connections and requests at once: beyond, a request gets 503 at once
  instead of waiting.
- The body's size and pace are the job of `serving.limits.RequestLimits`.
"""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

HEAD_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 512


class HeadTimeoutProtocol(H11Protocol):
    """h11 that closes a connection which has not sent a request head in HEAD_TIMEOUT_S."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_next_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_next_head()

    def _await_next_head(self) -> None:
        """Close the connection unless a request starts in HEAD_TIMEOUT_S (not armed while
        a pipelined request is already under way: its end arms it)."""
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(HEAD_TIMEOUT_S, self._close_if_no_request, self.cycle)

    def _close_if_no_request(self, last: RequestResponseCycle | None) -> None:
        if self.cycle is last and not self.transport.is_closing():
            self.transport.close()


def server_config(app: ASGIApp, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """Uvicorn's settings for serving `app` on `host:port` with the limits above."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level,
                          http=HeadTimeoutProtocol, timeout_keep_alive=KEEP_ALIVE_S,
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                          limit_concurrency=MAX_CONNECTIONS)

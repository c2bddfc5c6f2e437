"""Request limits, enforced while a body is read: ASGI middleware in front of either app.

A request may send at most `max_bytes` of body. The bytes are counted as the app reads them,
so a chunked body (no Content-Length) is held to the same limit as a declared one; a declared
length over the limit is refused before anything is read. The body must also keep coming:
the app's reads may wait BODY_GRACE_S in all, plus a second for every MIN_BODY_RATE bytes
received, so a client trickling a byte a second is cut off after about BODY_GRACE_S. Past
either limit the client gets 413 or 408 with `Connection: close`: the server closes the
connection and never reads the rest. Any response sent while the body is still unread
closes the connection too, so a refusal by the app itself (Gradio's upload size check)
does not read the rest either.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neeko_app.serving.errors import error_response

log = logging.getLogger(__name__)

BODY_GRACE_S = 10.0
MIN_BODY_RATE = 8 * 1024  # bytes a second, after the grace time
_DISCONNECT: Message = {"type": "http.disconnect"}
_CLOSE = (b"connection", b"close")


class RequestLimits:
    """Holds every HTTP request to `max_bytes` of body, arriving at a minimum rate."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(scope, receive, send, self.max_bytes)
        if body.declared > self.max_bytes:
            await body.refuse_too_large()
            return
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.refused:
                raise
            # the app failed on the disconnect it was handed; the client has its answer


class _Body:
    """One request's body as the app reads it: counted, timed, cut off past the limits."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        self.declared = int(length) if length.isdigit() else 0
        self.max_bytes = max_bytes
        self.complete = not (self.declared or b"transfer-encoding" in headers)
        self.received = 0
        self.waited = 0.0  # seconds the app's reads have waited for the client
        self.refused = self.started = False
        self._scope, self._receive, self._send = scope, receive, send

    async def receive(self) -> Message:
        """The next body message, or a disconnect once the request has been refused."""
        if self.refused:
            return _DISCONNECT
        if self.complete:
            return await self._receive()
        allowed = BODY_GRACE_S + self.received / MIN_BODY_RATE - self.waited
        began = time.monotonic()
        try:
            message = await asyncio.wait_for(self._receive(), max(allowed, 0.0))
        except asyncio.TimeoutError:
            return await self.refuse(
                408, f"the request body came too slowly: after the first {BODY_GRACE_S:.0f} s "
                     f"at least {MIN_BODY_RATE} bytes a second are expected", "request_timeout")
        finally:
            self.waited += time.monotonic() - began
        if message["type"] != "http.request":  # the client went away
            self.complete = True
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.max_bytes:
            return await self.refuse_too_large()
        self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        """Pass the app's response on (closing the connection after it when the body is
        unread); nothing once the request has been refused."""
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if not self.complete:
                message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
        await self._send(message)

    async def refuse_too_large(self) -> Message:
        return await self.refuse(413, f"the request body is larger than {self.max_bytes} "
                                      "bytes, the most accepted", "request_too_large")

    async def refuse(self, status: int, message: str, code: str) -> Message:
        """Answer `status` (unless a response is under way) and close the connection; what
        the app reads from now on is a disconnect."""
        log.info("refused %s %s: %s", self._scope["method"], self._scope["path"], message)
        if not self.started:
            response = error_response(status, message, code)
            response.headers.append("connection", "close")
            await response(self._scope, self._receive, self._send)
            self.started = True
        self.refused = True
        return _DISCONNECT

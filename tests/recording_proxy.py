"""A recording HTTP proxy for interop tests: it sits between a client under test and our API,
passes every request and response through unchanged (streams stay streams), and keeps both
bodies, so a test can tell what the client sent and what the API answered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# set per hop, never forwarded (RFC 9110 section 7.6.1), plus what the proxy recomputes
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length", "host"}


@dataclass
class Exchange:
    """One request that went through, and the response the API gave to it."""

    method: str
    path: str
    request_body: bytes
    status: int = 0
    response_body: bytes = b""

    def request_json(self) -> dict:
        return json.loads(self.request_body)

    def streamed_text(self) -> str:
        """The reply text of a streamed chat completion: its `delta.content` pieces joined."""
        pieces = []
        for line in self.response_body.decode().splitlines():
            data = line.removeprefix("data: ").strip()
            if line.startswith("data: ") and data != "[DONE]":
                for choice in json.loads(data).get("choices", []):
                    pieces.append(choice.get("delta", {}).get("content") or "")
        return "".join(pieces)


@contextmanager
def recording_proxy(target: str, port: int) -> Iterator[list[Exchange]]:
    """Forward 127.0.0.1:`port` to `target` (e.g. http://127.0.0.1:8000); yields the list the
    exchanges are appended to, as they finish."""
    exchanges: list[Exchange] = []
    client = httpx.Client(base_url=target, timeout=httpx.Timeout(30, read=600))

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the response ends when the connection closes

        def _forward(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            exchange = Exchange(self.command, self.path, self.rfile.read(size))
            headers = {k: v.strip() for k, v in self.headers.items()  # h11 refuses "Bearer "
                       if k.lower() not in HOP_HEADERS}
            with client.stream(self.command, self.path, headers=headers,
                               content=exchange.request_body) as response:
                exchange.status = response.status_code
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in HOP_HEADERS | {"content-encoding"}:
                        self.send_header(name, value)
                self.end_headers()
                for piece in response.iter_bytes():
                    exchange.response_body += piece
                    self.wfile.write(piece)
                    self.wfile.flush()
            exchanges.append(exchange)

        do_GET = do_POST = _forward

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: the test reads the exchanges instead

    server = ThreadingHTTPServer(("127.0.0.1", port), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield exchanges
    finally:
        server.shutdown()
        server.server_close()
        client.close()

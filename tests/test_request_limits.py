"""Hostile clients at the HTTP level: every request body is capped while it is read (chunked or
not) and answered 413 without reading the rest, a body that trickles is cut off (408), a
connection that sends no request is closed, and the servers keep answering meanwhile.

The first tests run the middleware and the server settings in this process on a small app;
the others run `neeko api` and `neeko serve` on the tiny model as processes of their own and
read the server's resident memory from /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from neeko_app.bench.process_memory import rss_mb
from neeko_app.config import Settings
from neeko_app.serving import limits, server
from neeko_app.serving.limits import RequestLimits
from tests.conftest import write_card
from tests.test_api import serving
from tests.test_memory import free_port, stop
from tests.test_serve_cli import start_server, wait_for_page

LIMIT = 2**20
HOSTILE_BYTES = 30 * 10**6
MAX_GROWTH_MB = 20


# --- talking HTTP/1.1 by hand ---------------------------------------------------------------


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def head(path: str, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_chunked(sock: socket.socket, path: str, total: int, content_type: str,
                 opening: bytes = b"", piece: int = 2**16) -> int:
    """POST `opening` and then zeros, `total` bytes in all, chunked; how many bytes went out
    before the server closed the connection."""
    sock.sendall(head(path, Content_Type=content_type, Transfer_Encoding="chunked"))
    sent = 0
    with contextlib.suppress(OSError):  # a refusing server closes the connection
        while sent < total:
            size = min(piece, total - sent)
            data = (b"" if sent else opening)[:size]
            data += bytes(size - len(data))
            sock.sendall(b"%x\r\n%s\r\n" % (size, data))
            sent += size
        sock.sendall(b"0\r\n\r\n")
    return sent


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the response on `sock`, read up to its end or the
    connection's."""
    data = b""
    with contextlib.suppress(OSError):
        while not _complete(data):
            received = sock.recv(65536)
            if not received:
                break
            data += received
    status_line, _, rest = data.partition(b"\r\n")
    lines, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode().lower().split(": ", 1) for line in lines.split(b"\r\n") if line)
    return int(status_line.split()[1]), headers, body


def _complete(data: bytes) -> bool:
    """Whether `data` holds a whole response (by its Content-Length, or chunked)."""
    top, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in top.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return body.endswith(b"0\r\n\r\n")


def closed(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` (which sent nothing more) within `within_s`."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# --- the setting ----------------------------------------------------------------------------


def test_the_limit_is_one_setting_with_a_default_an_env_variable_and_a_flag(monkeypatch):
    assert Settings().max_request_bytes == 10 * 2**20
    monkeypatch.setenv("NEEKO_MAX_REQUEST_BYTES", "5000")
    assert Settings.from_env().max_request_bytes == 5000
    assert Settings.from_env(max_request_bytes=7000).max_request_bytes == 7000
    monkeypatch.setenv("NEEKO_MAX_REQUEST_BYTES", "5 MB")
    with pytest.raises(ValueError, match=r"max_request_bytes \(NEEKO_MAX_REQUEST_BYTES\) must "
                                         "be a whole number of at least 1, got '5 MB'"):
        Settings.from_env()


# --- the middleware and the server settings, in this process ---------------------------------


@pytest.fixture
def echo() -> Iterator[tuple[int, list[int]]]:
    """An app that reads each body and says how long it was, behind RequestLimits(LIMIT), on
    the API's server settings; (port, bytes each request's endpoint was given)."""
    read: list[int] = []
    app = FastAPI()
    app.add_middleware(RequestLimits, max_bytes=LIMIT)

    @app.post("/echo")
    async def echo_body(request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            read.append(size)
        return {"bytes": size}

    @app.post("/early")
    async def early() -> PlainTextResponse:  # refuses without reading, as Gradio may
        return PlainTextResponse("no", status_code=413)

    with serving(app) as port:
        yield port, read


def test_a_chunked_body_over_the_limit_is_refused_without_reading_the_rest(echo):
    port, read = echo
    with connect(port) as sock:
        sent = send_chunked(sock, "/echo", HOSTILE_BYTES, "application/octet-stream")
        status, headers, body = read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and str(LIMIT) in error["message"]
    assert max(read) <= LIMIT  # the app never got more than the limit
    assert sent < HOSTILE_BYTES / 2  # the rest was not read: the sender was cut off


def test_a_declared_length_over_the_limit_is_refused_before_any_is_sent(echo):
    port, read = echo
    with connect(port) as sock:
        sock.sendall(head("/echo", Content_Length=str(HOSTILE_BYTES)))
        status, headers, _ = read_response(sock)
    assert status == 413 and headers["connection"] == "close" and read == []


def test_bodies_within_the_limit_pass_on_a_kept_connection(echo):
    port, _ = echo
    with connect(port) as sock:
        for size in (LIMIT, 10):
            send_chunked(sock, "/echo", size, "application/octet-stream")
            status, headers, body = read_response(sock)
            assert status == 200 and json.loads(body) == {"bytes": size}
            assert "connection" not in headers


def test_a_body_that_trickles_is_cut_off(echo, monkeypatch):
    monkeypatch.setattr(limits, "BODY_GRACE_S", 1.0)
    port, _ = echo
    with connect(port) as sock:
        sock.sendall(head("/echo", Content_Length="100"))
        started = time.monotonic()
        with contextlib.suppress(OSError):  # until the server hangs up (after 1 s), or 3 s
            while time.monotonic() - started < 3:
                sock.sendall(b"x")
                time.sleep(0.2)
        status, headers, body = read_response(sock)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_an_answer_given_before_the_body_is_read_closes_the_connection(echo):
    port, _ = echo
    with connect(port) as sock:
        send_chunked(sock, "/early", HOSTILE_BYTES, "application/octet-stream")
        status, headers, _ = read_response(sock)
    assert status == 413 and headers["connection"] == "close"


def test_connections_without_a_whole_request_head_are_closed(echo, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT_S", 0.5)
    port, _ = echo
    with connect(port) as silent, connect(port) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\n")  # and nothing more: a head never finished
        assert closed(silent, within_s=5) and closed(slow, within_s=5)


# --- the real servers, as processes ----------------------------------------------------------


@contextlib.contextmanager
def peak_growth_mb(pid: int) -> Iterator[list[float]]:
    """Watch the resident memory of `pid` while the block runs; the list ends up holding its
    peak growth in MB."""
    before = rss_mb(pid)
    samples = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            samples.append(rss_mb(pid))
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    growth: list[float] = []
    try:
        yield growth
    finally:
        done.set()
        watcher.join()
        samples.append(rss_mb(pid))
        growth.append(max(samples) - before)


@pytest.fixture(scope="module")
def characters(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("characters")
    write_card(folder, "tester", "Test Person")
    return folder


@contextlib.contextmanager
def neeko_server(command: str, characters: Path, root: Path, page: str
                 ) -> Iterator[tuple[int, int]]:
    """`neeko COMMAND` (api or serve) on the tiny model without memory; (port, pid)."""
    port = free_port()
    env = os.environ | {"NEEKO_CACHE_DIR": str(root / "cache")}
    log = root / f"{command}.log"
    process = start_server(command, [
        "--base-model", "tiny", "--device", "cpu", "--no-memory", "--port", str(port),
        "--characters-dir", str(characters), "--data-dir", str(root / "data")], env, log)
    try:
        wait_for_page(process, f"http://127.0.0.1:{port}{page}", timeout_s=240, log=log)
        yield port, process.pid
    finally:
        stop(process, timeout_s=30)


@pytest.fixture(scope="module")
def api(characters, tmp_path_factory) -> Iterator[tuple[int, int]]:
    with neeko_server("api", characters, tmp_path_factory.mktemp("api"), "/health") as running:
        yield running


@pytest.fixture(scope="module")
def web(characters, tmp_path_factory) -> Iterator[tuple[int, int]]:
    with neeko_server("serve", characters, tmp_path_factory.mktemp("web"), "/") as running:
        yield running


def refuse_hostile_body(port: int, pid: int, path: str, content_type: str,
                        opening: bytes = b"") -> int:
    """Send a chunked 30 MB body to `path`, expecting 413; the server's peak memory growth
    over the request (MB). A small request first warms the path up."""
    with connect(port) as sock:
        send_chunked(sock, path, 1000, content_type, opening)
        read_response(sock)
    with peak_growth_mb(pid) as growth, connect(port) as sock:
        sent = send_chunked(sock, path, HOSTILE_BYTES, content_type, opening)
        status, _, body = read_response(sock)
    assert status == 413, body[:300]
    assert sent < HOSTILE_BYTES
    return growth[0]


def test_the_api_refuses_a_chunked_30_mb_body_in_little_memory(api):
    growth = refuse_hostile_body(*api, "/v1/chat/completions", "application/json",
                                 b'{"model": "tester", "messages": [{"role": "user", '
                                 b'"content": "')
    assert growth < MAX_GROWTH_MB, f"the server grew by {growth:.1f} MB"


MULTIPART = "multipart/form-data; boundary=LIMITS"
FILE_PART = (b'--LIMITS\r\nContent-Disposition: form-data; name="files"; filename="big.json"'
             b"\r\nContent-Type: application/json\r\n\r\n")


@pytest.mark.parametrize(("path", "content_type", "opening"), [
    ("/gradio_api/upload", MULTIPART, FILE_PART),  # Gradio's own size check answers
    ("/gradio_api/queue/join", "application/json", b'{"data": ["'),  # ours does
], ids=["upload", "queue"])
def test_the_web_app_refuses_a_chunked_30_mb_body_in_little_memory(web, path, content_type,
                                                                    opening):
    growth = refuse_hostile_body(*web, path, content_type, opening)
    assert growth < MAX_GROWTH_MB, f"the server grew by {growth:.1f} MB"


def test_the_api_answers_while_200_connections_idle_and_one_trickles(api):
    port, _ = api
    idle = [connect(port) for _ in range(200)]
    trickler = connect(port)
    trickler.sendall(head("/v1/chat/completions", Content_Type="application/json",
                          Content_Length="1000"))
    stop_trickling = threading.Event()

    def trickle() -> None:
        with contextlib.suppress(OSError):
            while not stop_trickling.wait(1.0):
                trickler.sendall(b" ")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30, json={
            "model": "tester", "messages": [{"role": "user", "content": "Hello?"}],
            "max_tokens": 4})
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 5, "a normal request waited behind idle clients"
        trickler.settimeout(limits.BODY_GRACE_S + 10)
        status, _, body = read_response(trickler)
        assert status == 408, body
        assert all(closed(sock, within_s=server.HEAD_TIMEOUT_S + 5) for sock in idle)
    finally:
        stop_trickling.set()
        thread.join()
        for sock in [*idle, trickler]:
            sock.close()

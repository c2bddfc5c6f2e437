"""Load test of `neeko api`: concurrent streaming clients, a quarter of them hanging up.

    python benchmarks/load_test.py --clients 64 --seconds 120 --base-model tiny

Starts `neeko api` on a free loopback port with a throw-away data folder (memory on), and
runs the clients for the given time: each one chats with one character, every reply
streamed, in sessions of `--turns` exchanges (so prompts stay alike in size all along);
every fourth client hangs up each reply at a random point. Then it checks, and prints:

- every completed reply is whole (its finish chunk and `[DONE]` arrived) and saved in its
  session: memory holds each completed exchange word for word, under its turn;
- no generation slot leaks: /health reports nothing in flight within `--idle-within` seconds
  of the last client;
- the server's resident memory (VmRSS) grows less than `--max-rss-growth` (5 %) over the
  second half of the run: from the median of its samples in the first tenth of that half to
  the median in the last tenth (a momentary peak, a batch's cache, is not growth);
- p50 and p95 time to first token (from sending the request to the first text).

The exit code is 1 when a check fails. `--json FILE` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from neeko_app.bench.process_memory import rss_mb
from neeko_app.bench.timing import percentile
from neeko_app.chat.reply import kept_text
from neeko_app.memory import MemoryStore

DROPPING_SHARE = 4  # every 4th client hangs up


@dataclass
class Exchange:
    """A reply a client read to the end."""

    session: str
    turn: int
    user_text: str
    reply: str
    finish_reason: str


@dataclass
class Tally:
    """What the clients saw."""

    completed: list[Exchange] = field(default_factory=list)
    disconnected: int = 0
    failed: list[str] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)


@dataclass
class Figures:
    """The load test's result."""

    base_model: str
    clients: int
    seconds: float
    completed: int
    disconnected: int
    failed: int
    ttft_p50_s: float
    ttft_p95_s: float
    rss_mid_mb: float  # at the start of the second half
    rss_end_mb: float
    rss_peak_mb: float
    rss_growth: float
    rss_curve: list[tuple[int, float]]  # (second of the run, MB), one point per tenth of it
    idle_after_s: float | None
    unsaved: int
    problems: list[str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def neeko_api(args: argparse.Namespace, data_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`neeko api` on a free port, its output in `data_dir/api.log`; (URL, process)."""
    port = free_port()
    command = [sys.executable, "-m", "neeko_app.cli", "api", "--port", str(port),
               "--base-model", args.base_model, "--data-dir", str(data_dir)]
    for flag in ("device", "characters_dir"):
        if getattr(args, flag):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.no_memory:
        command.append("--no-memory")
    log = data_dir / "api.log"
    with log.open("w") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + args.start_timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"neeko api exited:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"neeko api did not answer in {args.start_timeout} s")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data:` fields of a server-sent event stream. Lines end at LF only (a reply may
    hold U+2028 or NEL, which `aiter_lines` would take for line ends)."""
    pending = b""
    async for received in response.aiter_bytes():
        *lines, pending = (pending + received).split(b"\n")
        for line in lines:
            if line.startswith(b"data: "):
                yield line[len(b"data: "):].rstrip(b"\r").decode()


async def client(index: int, http: httpx.AsyncClient, character: str, deadline: float,
                 args: argparse.Namespace, tally: Tally) -> None:
    """Messages until `deadline`, each reply read whole, or (every DROPPING_SHARE-th client)
    dropped after a random number of pieces; a new session every `args.turns` exchanges."""
    rng = random.Random(index)
    max_tokens = args.max_tokens
    sessions, session = 1, f"load-{index}-1"
    messages: list[dict] = []
    while time.monotonic() < deadline:
        if len(messages) == 2 * args.turns:
            sessions, messages = sessions + 1, []
            session = f"load-{index}-{sessions}"
        turn = len(messages) // 2 + 1
        user_text = f"Client {index}, message {turn}: what did you do today?"
        drop_after = rng.randint(0, max_tokens // 2) if index % DROPPING_SHARE == 0 else None
        body = {"model": character, "messages": [*messages, {"role": "user", "content": user_text}],
                "stream": True, "max_tokens": max_tokens}
        sent = time.monotonic()
        pieces: list[str] = []
        finish, done = None, False
        try:
            async with http.stream("POST", "/v1/chat/completions", json=body,
                                   headers={"X-Session-Id": session}) as response:
                if response.status_code != 200:
                    tally.failed.append(f"{session}: HTTP {response.status_code}: "
                                        f"{(await response.aread())[:200]!r}")
                    return
                async for data in sse_data(response):
                    if data == "[DONE]":
                        done = True
                        break
                    event = json.loads(data)
                    if "error" in event:
                        tally.failed.append(f"{session}: {event['error']}")
                        return
                    for choice in event["choices"]:
                        if choice["delta"].get("content"):
                            if not pieces:
                                tally.first_token_s.append(time.monotonic() - sent)
                            pieces.append(choice["delta"]["content"])
                        finish = choice.get("finish_reason") or finish
                    if drop_after is not None and len(pieces) >= drop_after:
                        break  # hang up: leaving the block closes the connection
        except httpx.HTTPError as err:
            tally.failed.append(f"{session}: {type(err).__name__}: {err}")
            return
        if not done:
            tally.disconnected += 1
            continue
        if finish is None:
            tally.failed.append(f"{session} turn {turn}: no finish reason before [DONE]")
            return
        reply = "".join(pieces)
        tally.completed.append(Exchange(session, turn, user_text, reply, finish))
        if reply.strip():  # a blank reply (a random model's) is not kept: the turn is asked again
            messages += [{"role": "user", "content": user_text},
                         {"role": "assistant", "content": reply}]


async def sample_rss(pid: int, until: float, samples: list[tuple[float, float]]) -> None:
    """(time, RSS MB) of `pid` every half second until `until`."""
    while time.monotonic() < until:
        samples.append((time.monotonic(), rss_mb(pid)))
        await asyncio.sleep(0.5)


async def wait_idle(http: httpx.AsyncClient, within_s: float) -> float | None:
    """Seconds until /health reports nothing in flight; None if not within `within_s`."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if (await http.get("/health")).json()["in_flight"] == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def drive(url: str, pid: int, args: argparse.Namespace
                ) -> tuple[Tally, list[tuple[float, float]], float | None]:
    """Run the clients against `url`; (what they saw, RSS samples, seconds to idle)."""
    limits = httpx.Limits(max_connections=args.clients + 4)
    timeout = httpx.Timeout(args.seconds + 300, connect=30)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as http:
        models = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
        if not models:
            raise RuntimeError("the server lists no characters")
        tally, samples = Tally(), []
        started = time.monotonic()
        deadline = started + args.seconds
        sampler = asyncio.create_task(sample_rss(pid, deadline, samples))
        await asyncio.gather(*(client(i, http, models[i % len(models)], deadline, args, tally)
                               for i in range(args.clients)))
        await sampler
        return tally, samples, await wait_idle(http, args.idle_within)


def unsaved_exchanges(memory_dir: Path, completed: list[Exchange]) -> list[str]:
    """The completed exchanges memory does not hold word for word (empty replies are not
    stored, by design)."""
    memory = MemoryStore.open(memory_dir)
    saved = {}
    for session in {e.session for e in completed}:
        for stored in memory.list_session(session):
            saved[session, stored.turn] = (stored.user_text, stored.reply_text)
    missing = []
    for exchange in completed:
        kept = kept_text(exchange.reply, exchange.finish_reason).strip()
        if kept and saved.get((exchange.session, exchange.turn)) != (exchange.user_text, kept):
            missing.append(f"{exchange.session} turn {exchange.turn}")
    return missing


def second_half(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """The RSS at the start and at the end of the second half of the run: the medians of the
    samples in its first and its last tenth."""
    start, end = samples[0][0], samples[-1][0]
    middle, tenth = (start + end) / 2, (end - start) / 20
    return (statistics.median(rss for at, rss in samples if middle <= at <= middle + tenth),
            statistics.median(rss for at, rss in samples if at >= end - tenth))


def rss_curve(samples: list[tuple[float, float]], points: int = 10) -> list[tuple[int, float]]:
    """The RSS samples thinned to about `points`, as (second of the run, MB)."""
    start = samples[0][0]
    step = max(1, len(samples) // points)
    return [(round(at - start), round(rss)) for at, rss in [*samples[::step], samples[-1]]]


def run(args: argparse.Namespace) -> Figures:
    """Start the server, drive the clients, check what they got."""
    with tempfile.TemporaryDirectory(prefix="neeko-load-") as folder:
        data_dir = Path(folder)
        with neeko_api(args, data_dir) as (url, server):
            tally, samples, idle_after = asyncio.run(drive(url, server.pid, args))
        unsaved = [] if args.no_memory else unsaved_exchanges(data_dir / "memory",
                                                                tally.completed)
    middle, end = second_half(samples)
    growth = end / middle - 1
    ttft = tally.first_token_s or [float("nan")]
    problems = [*tally.failed[:5], *(f"not saved: {e}" for e in unsaved[:5])]
    if idle_after is None:
        problems.append(f"the scheduler was still busy {args.idle_within} s after the last "
                        "client")
    if growth >= args.max_rss_growth:
        problems.append(f"resident memory grew {growth:.1%} in the second half")
    if not tally.completed:
        problems.append("no reply completed")
    return Figures(args.base_model, args.clients, args.seconds, len(tally.completed),
                   tally.disconnected, len(tally.failed), percentile(ttft, 0.5),
                   percentile(ttft, 0.95), middle, end, max(rss for _, rss in samples), growth,
                   rss_curve(samples),
                   idle_after, len(unsaved), problems)


def report(figures: Figures) -> str:
    idle = ("never" if figures.idle_after_s is None else f"{figures.idle_after_s:.1f} s")
    lines = [
        f"neeko api on {figures.base_model}: {figures.clients} streaming clients for "
        f"{figures.seconds:.0f} s ({os.cpu_count()} CPUs)",
        f"  completed {figures.completed}, disconnected {figures.disconnected}, failed "
        f"{figures.failed}, not saved {figures.unsaved}",
        f"  time to first token: p50 {figures.ttft_p50_s:.2f} s, p95 {figures.ttft_p95_s:.2f} s",
        f"  resident memory over the second half: {figures.rss_mid_mb:.0f} -> "
        f"{figures.rss_end_mb:.0f} MB ({figures.rss_growth:+.1%}), peak {figures.rss_peak_mb:.0f}"
        " MB; over the run (s: MB): "
        + ", ".join(f"{at}: {mb:.0f}" for at, mb in figures.rss_curve),
        f"  idle after the last client: {idle}",
    ]
    lines += [f"  PROBLEM: {problem}" for problem in figures.problems]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--base-model", default="tiny", help="tiny (default), embedded or a dir")
    parser.add_argument("--device", help="passed to neeko api (default: its own)")
    parser.add_argument("--characters-dir", help="passed to neeko api (default: the shipped)")
    parser.add_argument("--max-tokens", type=int, default=96, help="per reply")
    parser.add_argument("--turns", type=int, default=4, help="exchanges per session")
    parser.add_argument("--no-memory", action="store_true",
                        help="serve without memory (nothing is saved, nor checked)")
    parser.add_argument("--idle-within", type=float, default=10,
                        help="seconds the scheduler may take to go idle after the last client")
    parser.add_argument("--max-rss-growth", type=float, default=0.05,
                        help="share the memory peak may grow by in the second half")
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = run(args)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 1 if figures.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

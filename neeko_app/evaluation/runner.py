"""Run dialogue scripts: every exchange of every script, for each of its characters, answered
by each system, batched across characters and exchanges (turn k of every conversation in
one round, since turn k+1 needs its reply). Each reply is appended to a JSONL log as soon as
it is done, so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn
from neeko_app.chat.reply import kept_text
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.evaluation.scheduling import evaluation_scheduler
from neeko_app.evaluation.script import DialogueScript, unmet_expectations
from neeko_app.evaluation.systems import system_request
from neeko_app.memory import MemoryStore
from neeko_app.runtime import Runtime

ProgressCallback = Callable[[int, int], None]
GREEDY = DecodingSettings(max_new_tokens=96, temperature=0.0)  # reproducible replies


@dataclass(frozen=True)
class ScriptedReply:
    """One recorded reply; `failures` is None when its turn has no expectation."""

    system: str
    script: str
    character: str
    exchange: int
    turn: int
    question: str
    reply: str
    seconds: float
    tokens: int
    tags: tuple[str, ...]
    failures: tuple[str, ...] | None

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        return self.system, self.script, self.character, self.exchange, self.turn


class ReplyLog:
    """Append-only JSONL of replies; a line cut short by a crash is ignored on reading."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[ScriptedReply]:
        if not self.path.is_file():
            return []
        replies = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            raw["tags"] = tuple(raw["tags"])
            raw["failures"] = None if raw["failures"] is None else tuple(raw["failures"])
            replies.append(ScriptedReply(**raw))
        return replies

    def append(self, replies: Sequence[ScriptedReply]) -> None:
        """Add `replies` (fsynced); a line left cut short by a crash is closed off first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            if handle.tell() > 0:
                with self.path.open("rb") as reader:
                    reader.seek(-1, os.SEEK_END)
                    if reader.read(1) != b"\n":
                        handle.write(b"\n")
            for reply in replies:
                handle.write((json.dumps(asdict(reply), ensure_ascii=False) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())


@dataclass(frozen=True)
class _Thread:
    """One exchange of one script put to one character."""

    script: DialogueScript
    character: str
    exchange: int


def run_scripts(runtime: Runtime, scripts: Sequence[DialogueScript], systems: Sequence[str],
                log: ReplyLog, memory: MemoryStore | None = None,
                decoding: DecodingSettings = GREEDY,
                batch_size: int = 16,
                progress: ProgressCallback = lambda done, total: None) -> list[ScriptedReply]:
    """Answer every turn of `scripts` with each of `systems`; the replies of the whole run
    (those already in `log` included)."""
    for script in scripts:
        for slug in script.characters:
            runtime.character(slug)  # unknown ids fail before anything runs
    threads = [_Thread(s, c, n) for s in scripts for c in s.characters
               for n in range(len(s.exchanges))]
    done = {r.key: r for r in log.read()}
    total = len(systems) * sum(len(t.script.exchanges[t.exchange].turns) for t in threads)
    progress(len(done), total)
    with evaluation_scheduler(runtime, batch_size) as scheduler:
        for system in systems:
            depth = max(len(t.script.exchanges[t.exchange].turns) for t in threads)
            for turn in range(depth):
                todo = [t for t in threads if turn < len(t.script.exchanges[t.exchange].turns)
                        and (system, t.script.name, t.character, t.exchange, turn) not in done]
                for chunk in _chunks(todo, batch_size * 4):
                    new = _answer(runtime, scheduler, system, chunk, turn, done, memory,
                                  decoding)
                    log.append(new)
                    done.update((r.key, r) for r in new)
                    progress(len(done), total)
    return list(done.values())


def _answer(runtime: Runtime, scheduler: BatchScheduler, system: str,
            threads: Sequence[_Thread], turn: int,
            done: dict[tuple[str, str, str, int, int], ScriptedReply],
            memory: MemoryStore | None, decoding: DecodingSettings) -> list[ScriptedReply]:
    """Turn `turn` of each thread, generated together."""
    requests = []
    for thread in threads:
        asks = thread.script.exchanges[thread.exchange].turns
        history = []
        for earlier in range(turn):
            answer = done[(system, thread.script.name, thread.character, thread.exchange,
                           earlier)]
            history += [Turn("user", asks[earlier].ask), Turn("character", answer.reply)]
        _, request = system_request(system, runtime, runtime.character(thread.character),
                                    history, asks[turn].ask, memory, decoding)
        requests.append(request)
    started = time.perf_counter()
    streams = scheduler.submit_many(requests)
    replies = []
    for thread, stream in zip(threads, streams, strict=True):
        text = kept_text("".join(stream).strip(), stream.finish_reason)  # as the app keeps it
        script, exchange = thread.script, thread.script.exchanges[thread.exchange]
        expect = exchange.turns[turn].expect
        replies.append(ScriptedReply(
            system, script.name, thread.character, thread.exchange, turn,
            exchange.turns[turn].ask, text, time.perf_counter() - started,
            stream.completion_tokens, exchange.tags,
            None if expect is None else tuple(unmet_expectations(expect, text,
                                                                 script.era_terms))))
    return replies


def _chunks(items: Sequence[_Thread], size: int) -> Iterator[Sequence[_Thread]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]

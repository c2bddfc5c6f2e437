"""The child side of the crash-safety tests: workloads run in real processes that get SIGKILLed.

Children fork from a forkserver that imports this module (so torch, transformers, Chroma and
the app) once: each workload starts in about a second instead of a fresh interpreter's ~15 s.
A workload reports to the test through a pipe; what it sent before it died stays readable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from neeko_app.characters.registry import discover_characters
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.chat.session import SessionStore
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_save_tensors, load_tensors
from neeko_app.training.trainer import CHECKPOINT_FILE, TrainingConfig
from neeko_app.training.workflows import TrainingJob, add_character
from tests.conftest import randomize_blocks, write_card

ROLE_DIM = 384
OLD_CHARACTERS = {"baker": "Bread Baker", "sailor": "Old Sailor"}
PROBE_IDS = [[2, 60, 61, 62, 63, 64, 65, 66]]
PRELOAD = ["sentence_transformers", "neeko_app.api.server", "neeko_app.training.cli_progress"]
DEADLINE_S = 240.0  # generous: only a hung or crashed child takes this long

# ---- the test's side -------------------------------------------------------------------


def make_library(root: Path) -> Settings:
    """`root/characters` with two trained characters (random non-zero blocks and roles);
    settings keeping characters, cache, memory and sessions under `root`."""
    characters = root / "characters"
    characters.mkdir(parents=True)
    generator = torch.Generator().manual_seed(7)
    donor = NeekoModel(load_base_model("tiny", device="cpu").model, MoeLoraConfig())
    roles = torch.randn(len(OLD_CHARACTERS), ROLE_DIM, generator=generator)
    donor.add_blocks(list(OLD_CHARACTERS), roles)
    randomize_blocks(donor, seed=7)
    for (slug, name), role in zip(OLD_CHARACTERS.items(), roles, strict=True):
        folder = write_card(characters, slug, name)
        save_block(donor, slug, folder / "block.safetensors", "tiny")
        atomic_save_tensors(folder / "role.safetensors", {"role": role})
    return Settings(base_model="tiny", device="cpu", characters_dir=characters, data_dir=root,
                    cache_dir=root / "cache", memory_dir=root / "memory",
                    sessions_dir=root / "sessions")


def write_source(root: Path, slug: str, conversations: int) -> Path:
    """A character folder to add by expansion, with `conversations` training dialogues."""
    folder = root / slug
    folder.mkdir(parents=True)
    card = {"name": slug.title(), "slug": slug, "description": "forges iron all day.",
            "personality": "patient", "scenario": "A forge.", "greeting": "Mind the sparks."}
    (folder / "character.json").write_text(json.dumps(card))
    lines = [{"id": f"{slug}-{i}", "turns": [
        {"role": "user", "text": f"What about blade {i}?"},
        {"role": "character", "text": f"Blade {i} wants more iron, more fire."}]}
        for i in range(conversations)]
    (folder / "dialogues.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    return folder


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, except in the hidden staging folder."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.relative_to(directory).parts[0] != ".staging"}


def old_logits(settings: Settings) -> dict[str, torch.Tensor]:
    """Logits of a fixed prompt under each old character's gate, as the app loads them."""
    runtime = load_runtime(settings, report=lambda _: None)
    assert not runtime.problems, runtime.problems
    ids = torch.tensor(PROBE_IDS)
    with torch.no_grad():
        return {slug: runtime.model(ids, gate=runtime.gate_for(runtime.character(slug))).logits
                for slug in OLD_CHARACTERS}


def assert_old_characters_intact(settings: Settings, hashes: dict[str, str],
                                 logits: dict[str, torch.Tensor]) -> None:
    """The old characters' files are byte-identical and give bit-identical logits."""
    now = file_hashes(settings.characters_dir)
    assert {name: now.get(name) for name in hashes} == hashes
    after = old_logits(settings)
    for slug in OLD_CHARACTERS:
        assert torch.equal(logits[slug], after[slug]), f"{slug} answers differently"


def assert_registry_has(settings: Settings, slugs: set[str]) -> None:
    """The registry loads exactly `slugs`, with no problem (the staging folder is skipped)."""
    registry = discover_characters(settings.characters_dir)
    assert set(registry.characters) == slugs and not registry.problems, registry.problems


def checkpoint_step(directory: Path) -> int | None:
    """The step of the checkpoint in `directory` (None if there is none); it must load."""
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    load_tensors(path)
    with safe_open(str(path), framework="pt") as handle:
        return int((handle.metadata() or {})["step"])


class Child:
    """A workload running in its own process; `messages` holds what it reported so far."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, *PRELOAD])
        self._pipe, child_end = context.Pipe(duplex=False)
        self.process: BaseProcess = context.Process(target=_run, args=(child_end, target, args),
                                                    daemon=True)
        self.process.start()
        child_end.close()
        self.messages: list[Any] = []

    def next(self) -> Any:
        """The next message (fails if the child dies or stays silent too long)."""
        if not self._pipe.poll(DEADLINE_S):
            raise AssertionError(f"no word from the child in {DEADLINE_S:.0f} s")
        try:
            message = self._pipe.recv()
        except EOFError:
            raise AssertionError(f"the child died (exit {self.process.exitcode})") from None
        if isinstance(message, tuple) and message[:1] == ("error",):
            raise AssertionError(f"the child failed:\n{message[1]}")
        self.messages.append(message)
        return message

    def result(self) -> Any:
        """Wait for the workload to finish; its return value."""
        while True:
            message = self.next()
            if isinstance(message, tuple) and message[:1] == ("done",):
                self.process.join(DEADLINE_S)
                assert self.process.exitcode == 0, self.process.exitcode
                return message[1]

    def kill(self) -> None:
        """SIGKILL the child now; what it sent before dying joins `messages`."""
        assert self.process.is_alive(), f"the child ended first ({self.process.exitcode})"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(DEADLINE_S)
        assert self.process.exitcode == -signal.SIGKILL, self.process.exitcode
        self._drain()

    def died_by_sigkill(self) -> bool:
        """Wait until the child ends by itself; whether SIGKILL ended it."""
        self.process.join(DEADLINE_S)
        self._drain()
        return self.process.exitcode == -signal.SIGKILL

    def _drain(self) -> None:
        """Read every message left in the pipe of the dead child."""
        while True:
            try:
                message = self._pipe.recv()
            except EOFError:
                return
            if isinstance(message, tuple) and message[:1] == ("error",):
                raise AssertionError(f"the child failed:\n{message[1]}")
            self.messages.append(message)


def _run(conn: Connection, target: Callable[..., Any], args: tuple) -> None:
    try:
        conn.send(("done", target(conn, *args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


# ---- workloads (each gets the pipe first) ------------------------------------------------


def kill_self_before_replace(name: str, nth: int) -> None:
    """SIGKILL this process at the `nth` atomic rename onto a file called `name`: its temp
    file is written and fsynced, the rename that commits it has not happened."""
    real_replace = os.replace
    count = itertools.count(1)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if Path(dst).name == name and next(count) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, **kwargs)

    os.replace = replace


def neeko(conn: Connection, argv: list[str], log: Path, env: dict[str, str]) -> int:
    """The `neeko` command (`neeko_app.cli:main`, what the console script calls) with `env`
    added to the environment, its stdout and stderr going to `log`."""
    os.environ.update(env)
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for stream in (1, 2):
        os.dup2(output, stream)
    try:
        return main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def expand(conn: Connection, settings: Settings, source: Path, config: TrainingConfig,
           kill_at: tuple[str, int] | None = None) -> list[int]:
    """`add_character` by expansion (optionally killed at an atomic write); the steps run."""
    if kill_at:
        kill_self_before_replace(*kill_at)
    steps: list[int] = []
    add_character(settings, source, "expansion",
                  TrainingJob(config, on_progress=lambda p: steps.append(p.step)))
    return steps


def block_tensors(conn: Connection, path: Path) -> dict[str, np.ndarray]:
    """The tensors of a block file (as numpy: plain pickles through the pipe)."""
    return {name: tensor.numpy() for name, tensor in load_tensors(path).items()}


def remember_forever(conn: Connection, memory_dir: Path, session_id: str,
                     first_turn: int) -> None:
    """Store exchange after exchange, acknowledging each once `remember_exchange` returned."""
    store = MemoryStore.open(memory_dir)
    for turn in itertools.count(first_turn):
        store.remember_exchange(session_id, "baker", f"question {turn}", f"answer {turn}", turn)
        conn.send(("ack", turn))


def read_memory(conn: Connection, memory_dir: Path, session_id: str,
                query: str) -> tuple[list[tuple[int, str, str]], list[int]]:
    """The session's exchanges (turn, user, reply) and the turns `recall` finds for `query`."""
    store = MemoryStore.open(memory_dir)
    exchanges = [(e.turn, e.user_text, e.reply_text) for e in store.list_session(session_id)]
    recalled = [e.turn for e in store.recall(session_id, "baker", query, k=3)]
    return exchanges, recalled


def _engine(settings: Settings) -> ChatEngine:
    """The web app's engine (memory + saved sessions); no stop token: replies never empty."""
    runtime = load_runtime(settings, report=lambda _: None)
    scheduler = BatchScheduler(runtime.model, runtime.base.tokenizer, stop_ids=[])
    return ChatEngine(runtime, MemoryStore.open(settings.memory_dir),
                      DecodingSettings(max_new_tokens=8, seed=0),
                      sessions=SessionStore(settings.sessions_dir), scheduler=scheduler)


def chat_then_hang(conn: Connection, settings: Settings, exchanges: int,
                   kill_at_save: bool) -> None:
    """Chat `exchanges` times (each acknowledged with its reply once it is complete), then
    start one more reply and wait mid-stream to be killed there; or, with `kill_at_save`,
    finish it and die at the rename that commits the session file."""
    engine = _engine(settings)
    session = engine.open_session(["baker"])
    for number in range(exchanges):
        reply = engine.send(session, f"message {number}")[0]
        reply.result()
        conn.send(("ack", session.id, f"message {number}", reply.finished_text))
    reply = engine.send(session, "one more",
                        decoding=DecodingSettings(max_new_tokens=40, seed=0))[0]
    pieces = iter(reply)
    conn.send(("streaming", next(pieces)))
    if kill_at_save:
        kill_self_before_replace(f"{session.id}.json", 1)
        for _ in pieces:  # complete: memory stores the exchange, then the session is saved
            pass
    threading.Event().wait(DEADLINE_S)  # mid-reply until the SIGKILL comes


def chat_on(conn: Connection, settings: Settings, session_id: str,
            message: str) -> tuple[list[tuple[str, str]], str]:
    """Reopen the saved session and chat on: the transcript as loaded, and the new reply."""
    engine = _engine(settings)
    session = engine.load_session(session_id)
    loaded = [(turn.role, turn.text) for turn in session.turns]
    reply = engine.send(session, message)[0]
    reply.result()
    engine.close()
    return loaded, reply.finished_text

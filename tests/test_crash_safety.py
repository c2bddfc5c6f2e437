"""Crash safety under a real `kill -9` (SIGKILL): during expansion training, at the commit of a
checkpoint, block or role file, during memory writes and in the middle of a chat reply.

After each kill the data is reopened as a restarted app would: the registry loads, the old
characters are byte-identical and answer bit-identically, training resumes from its last
checkpoint (or starts over when none was committed), and every acknowledged exchange is kept.
Everything lives in tmp_path; the tiny random model keeps it fast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neeko_app.chat.reply import end_cleanly
from neeko_app.chat.session import SessionStore
from neeko_app.config import Settings
from neeko_app.training.trainer import CHECKPOINT_FILE, TrainingConfig
from tests.crash_helpers import (
    DEADLINE_S,
    OLD_CHARACTERS,
    Child,
    assert_old_characters_intact,
    assert_registry_has,
    block_tensors,
    chat_on,
    chat_then_hang,
    checkpoint_step,
    expand,
    file_hashes,
    make_library,
    old_logits,
    read_memory,
    remember_forever,
    write_source,
)
from tests.test_cli import neeko_exe
from tests.test_memory import free_port

OLD = set(OLD_CHARACTERS)
FAST = TrainingConfig(epochs=2, batch_size=1, lr=5e-3, max_tokens=160, checkpoint_every=2)


def poll(condition, what: str, process: subprocess.Popen | None = None) -> None:
    """Wait until `condition()` holds (fails if `process` dies first or after DEADLINE_S)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert process is None or process.poll() is None, f"exited {process.returncode}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ---- expansion training --------------------------------------------------------------------


def test_kill_during_expansion_training_then_the_same_command_resumes(tmp_path):
    settings = make_library(tmp_path)
    hashes, logits = file_hashes(settings.characters_dir), old_logits(settings)
    source = write_source(tmp_path / "incoming", "smith", conversations=10)
    command = [neeko_exe(), "add-character", str(source), "--mode", "expansion",
               "--base-model", "tiny", "--characters-dir", str(settings.characters_dir),
               "--cache-dir", str(settings.cache_dir), "--epochs", "16", "--batch-size", "1"]
    checkpoint = settings.cache_dir / "checkpoints" / "expand-smith"
    with (tmp_path / "killed.log").open("w") as log:
        run = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        poll((checkpoint / CHECKPOINT_FILE).exists, "the first checkpoint", run)
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    assert run.returncode == -signal.SIGKILL

    step = checkpoint_step(checkpoint)
    assert step is not None and 20 <= step < 160
    assert file_hashes(settings.characters_dir) == hashes, "the kill changed the characters"
    assert (settings.characters_dir / ".staging" / "smith").is_dir()
    assert_registry_has(settings, OLD)  # the half-assembled character stays invisible

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S)
    assert rerun.returncode == 0, rerun.stderr
    assert "added smith (expansion)" in rerun.stdout
    first_shown = re.search(r"(\d+)/160 ", rerun.stderr)
    assert first_shown and int(first_shown[1]) == step, "the re-run did not resume"
    assert_registry_has(settings, OLD | {"smith"})
    assert (settings.characters_dir / "smith" / "block.safetensors").is_file()
    assert not checkpoint.exists() and not (settings.characters_dir / ".staging" / "smith").exists()
    assert_old_characters_intact(settings, hashes, logits)


# ---- the commit of a checkpoint, block or role file ----------------------------------------


@pytest.mark.parametrize(("file", "nth", "resumes_after"), [
    (CHECKPOINT_FILE, 1, 0),  # no checkpoint committed yet: the re-run starts over
    (CHECKPOINT_FILE, 2, 2),  # the step-2 checkpoint stays; step 4's temp file is left over
    ("block.safetensors", 1, 8),  # trained, not saved: the re-run only saves
    ("role.safetensors", 1, 8),
])
def test_kill_at_the_rename_of_an_atomic_write(tmp_path, file, nth, resumes_after):
    settings = make_library(tmp_path)
    hashes, logits = file_hashes(settings.characters_dir), old_logits(settings)
    source = write_source(tmp_path / "incoming", "smith", conversations=4)
    assert Child(expand, settings, source, FAST, (file, nth)).died_by_sigkill()

    checkpoint = settings.cache_dir / "checkpoints" / "expand-smith"
    staged = settings.characters_dir / ".staging" / "smith"
    committed = checkpoint_step(checkpoint)  # loads every tensor: never a torn file
    assert committed == (resumes_after or None)
    where = checkpoint if file == CHECKPOINT_FILE else staged
    assert list(where.glob(f".{file}.*.tmp")), "the kill came before the temp file was written"
    assert not (staged / file).exists() or file == CHECKPOINT_FILE
    assert file_hashes(settings.characters_dir) == hashes
    assert_registry_has(settings, OLD)

    steps = Child(expand, settings, source, FAST).result()
    assert steps == list(range(resumes_after + 1, 9)), "the re-run did not resume"
    assert_registry_has(settings, OLD | {"smith"})
    assert not checkpoint.exists() and not staged.exists()
    assert not list(settings.characters_dir.rglob("*.tmp"))
    assert_old_characters_intact(settings, hashes, logits)

    if nth == 2:  # resuming gives the very weights of a run that was never interrupted
        resumed = Child(block_tensors, settings.characters_dir / "smith" / "block.safetensors")
        straight = make_library(tmp_path / "straight")
        Child(expand, straight, source, FAST).result()
        clean = Child(block_tensors, straight.characters_dir / "smith" / "block.safetensors")
        one, other = resumed.result(), clean.result()
        assert one.keys() == other.keys()
        assert all(np.array_equal(one[name], other[name]) for name in one)


# ---- memory writes -------------------------------------------------------------------------


def test_kill_during_memory_writes_keeps_every_acknowledged_exchange(tmp_path):
    memory, session = tmp_path / "memory", "crash-session"
    acked: list[int] = []
    for kill_after in (1, 7, 110):  # 110: past Chroma's 100-vector index batch
        writer = Child(remember_forever, memory, session, len(acked) + 1)
        while len(writer.messages) < kill_after:
            writer.next()
        writer.kill()  # mid-write: the child was storing the next exchange
        turns = [turn for _, turn in writer.messages]  # with the acks still in the pipe
        assert turns == list(range(len(acked) + 1, len(acked) + len(turns) + 1))
        acked += turns
        exchanges, recalled = Child(read_memory, memory, session, "question 1").result()
        kept = {turn: (user, reply) for turn, user, reply in exchanges}
        missing = [t for t in acked if kept.get(t) != (f"question {t}", f"answer {t}")]
        assert not missing, f"acknowledged exchanges lost: {missing}"
        assert set(kept) <= set(acked) | {len(acked) + 1}  # at most the one being written
        assert recalled and set(recalled) <= set(kept)


# ---- chat replies --------------------------------------------------------------------------


def test_kill_mid_reply_keeps_the_saved_session_and_memory(tmp_path):
    settings = make_library(tmp_path)
    chat = Child(chat_then_hang, settings, 3)
    acks = [chat.next() for _ in range(3)]
    assert chat.next()[0] == "streaming"
    chat.kill()
    session_id = acks[0][1]
    transcript = [turn for _, _, message, reply in acks
                  for turn in (("user", message), ("character", reply.strip()))]

    saved = SessionStore(settings.sessions_dir).load(session_id)
    assert [(t.role, t.text) for t in saved.turns] == transcript
    assert not list(settings.sessions_dir.glob(".*.tmp"))
    exchanges, _ = Child(read_memory, settings.memory_dir, session_id, "message 1").result()
    assert exchanges == [(number + 1, message, reply.strip())
                         for number, (_, _, message, reply) in enumerate(acks)]

    loaded, reply = Child(chat_on, settings, session_id, "and now?").result()
    assert loaded == transcript and reply
    saved = SessionStore(settings.sessions_dir).load(session_id)
    assert [(t.role, t.text) for t in saved.turns] == [*transcript, ("user", "and now?"),
                                                        ("character", reply.strip())]
    exchanges, _ = Child(read_memory, settings.memory_dir, session_id, "and now?").result()
    assert [turn for turn, _, _ in exchanges] == [1, 2, 3, 4]


def post(url: str, body: dict, session_id: str) -> urllib.request.Request:
    return urllib.request.Request(url, json.dumps(body).encode(), {
        "Content-Type": "application/json", "X-Session-Id": session_id})


def sse_events(response) -> Iterator[dict | str]:
    """The data of each server-sent event, decoded (`[DONE]` stays a string)."""
    for line in response:
        if line.startswith(b"data: "):
            data = line[len(b"data: "):].strip().decode()
            yield data if data == "[DONE]" else json.loads(data)


def start_api(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    """`neeko api` on the tiny model and `settings`' dirs; returns once it answers."""
    env = os.environ | {"NEEKO_SESSIONS_DIR": str(settings.sessions_dir)}
    with log.open("a") as output:
        server = subprocess.Popen(
            [neeko_exe(), "api", "--base-model", "tiny", "--port", str(port),
             "--characters-dir", str(settings.characters_dir), "--cache-dir",
             str(settings.cache_dir), "--memory-dir", str(settings.memory_dir)],
            stdout=output, stderr=subprocess.STDOUT, env=env)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):
                return True
        except (urllib.error.URLError, ConnectionError):
            return False

    poll(answers, "the API to answer", server)
    return server


def kept_text(content: str, reason: str) -> str:
    """What memory keeps of a reply the API returned (cut-off replies end at a sentence)."""
    return (end_cleanly(content) if reason == "length" else content).strip()


def test_kill_of_the_api_server_mid_stream_keeps_the_acknowledged_memory(tmp_path):
    settings = make_library(tmp_path)
    port, log, session = free_port(), tmp_path / "api.log", "api-session"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    messages: list[dict] = []
    remembered: list[tuple[int, str, str]] = []  # what memory must hold
    server = start_api(settings, port, log)
    try:
        for number in range(3):  # acknowledged: the whole response came back
            messages.append({"role": "user", "content": f"message {number}"})
            body = {"model": "baker", "messages": messages, "max_tokens": 8, "seed": number}
            with urllib.request.urlopen(post(url, body, session), timeout=60) as response:
                choice = json.loads(response.read())["choices"][0]
            content = choice["message"]["content"]
            assert content.strip(), "an empty reply is not remembered: pick another seed"
            messages.append({"role": "assistant", "content": content})
            remembered.append((number + 1, f"message {number}",
                               kept_text(content, choice["finish_reason"])))
        body = {"model": "baker", "stream": True, "max_tokens": 500, "seed": 0,
                "messages": [*messages, {"role": "user", "content": "tell me everything"}]}
        with urllib.request.urlopen(post(url, body, session), timeout=60) as response:
            events = sse_events(response)
            next(events)  # the role
            assert next(events)["choices"][0]["delta"]["content"] is not None
            os.kill(server.pid, signal.SIGKILL)  # mid-stream
            server.wait()
    finally:
        server.kill()
        server.wait()
    assert server.returncode == -signal.SIGKILL

    server = start_api(settings, port, log)
    try:
        messages.append({"role": "user", "content": "still there?"})
        body = {"model": "baker", "messages": messages, "max_tokens": 8, "seed": 5,
                "stream": True}
        with urllib.request.urlopen(post(url, body, session), timeout=60) as response:
            events = list(sse_events(response))
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert events[-1] == "[DONE]"
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert content.strip(), "an empty reply is not remembered: pick another seed"
    remembered.append((4, "still there?", kept_text(content, events[-2]["choices"][0]
                                                    ["finish_reason"])))

    exchanges, _ = Child(read_memory, settings.memory_dir, session, "message 1").result()
    assert exchanges == remembered

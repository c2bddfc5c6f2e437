"""Crash safety under a real `kill -9` (SIGKILL): during expansion training, at the commit of a
checkpoint, block or role file, during memory writes and in the middle of a chat reply.

After each kill the data is reopened as a restarted app would: the registry loads, the old
characters are byte-identical and answer bit-identically, training resumes from its last
checkpoint (or starts over when none was committed), and every acknowledged exchange is kept.
Everything lives in tmp_path; the tiny random model keeps it fast.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from neeko_app.chat.reply import kept_text
from neeko_app.chat.session import SessionStore
from neeko_app.config import Settings
from neeko_app.runtime import load_runtime
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
    neeko,
    old_logits,
    read_memory,
    remember_forever,
    write_source,
)
from tests.test_memory import free_port

OLD = set(OLD_CHARACTERS)
FAST = TrainingConfig(epochs=2, batch_size=1, lr=5e-3, max_tokens=160, checkpoint_every=2)


def poll(condition: Callable[[], bool], what: str, child: Child) -> None:
    """Wait until `condition()` holds (fails if `child` dies first, or after DEADLINE_S)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert child.process.is_alive(), f"the child exited ({child.process.exitcode})"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ---- expansion training --------------------------------------------------------------------


def test_kill_during_expansion_training_then_the_same_command_resumes(tmp_path):
    settings = make_library(tmp_path)
    hashes, logits = file_hashes(settings.characters_dir), old_logits(settings)
    source = write_source(tmp_path / "incoming", "smith", conversations=10)
    argv = ["add-character", str(source), "--mode", "expansion", "--base-model", "tiny",
            "--device", "cpu", "--characters-dir", str(settings.characters_dir),
            "--data-dir", str(settings.data_dir), "--cache-dir", str(settings.cache_dir),
            "--epochs", "16", "--batch-size", "1"]
    checkpoint = settings.cache_dir / "checkpoints" / "expand-smith"
    run = Child(neeko, argv, tmp_path / "killed.log", {})
    try:
        poll((checkpoint / CHECKPOINT_FILE).exists, "the first checkpoint", run)
    finally:
        if run.process.is_alive():
            run.kill()  # training went on past the checkpoint (every 20 of 160 steps) until now
    assert run.process.exitcode == -signal.SIGKILL

    step = checkpoint_step(checkpoint)
    assert step is not None and 20 <= step < 160
    assert file_hashes(settings.characters_dir) == hashes, "the kill changed the characters"
    assert (settings.characters_dir / ".staging" / "smith").is_dir()
    assert_registry_has(settings, OLD)  # the half-assembled character stays invisible

    log = tmp_path / "rerun.log"
    assert Child(neeko, argv, log, {}).result() == 0
    output = log.read_text()
    assert "added smith (expansion)" in output
    first_shown = re.search(r"(\d+)/160 ", output)  # the progress bar starts where it resumed
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
    assert list(where.glob(f".{file}.*.tmp")), "no temp file: the kill was not at the rename"
    if file != CHECKPOINT_FILE:
        assert not (staged / file).exists()
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


def test_kill_while_training_in_place_leaves_only_a_harmless_temp_file(tmp_path):
    settings = make_library(tmp_path)
    source = write_source(settings.characters_dir, "smith", conversations=4)  # trained in place
    hashes, logits = file_hashes(settings.characters_dir), old_logits(settings)
    assert Child(expand, settings, source, FAST, ("block.safetensors", 1)).died_by_sigkill()

    now = file_hashes(settings.characters_dir)
    assert {name: now.get(name) for name in hashes} == hashes
    assert [Path(name).parent.name for name in now.keys() - hashes.keys()] == ["smith"]
    assert_registry_has(settings, OLD | {"smith"})  # smith is still there, by fusion
    runtime = load_runtime(settings, report=lambda _: None)
    assert not runtime.problems and runtime.model.block_names == sorted(OLD)

    assert Child(expand, settings, source, FAST).result() == []  # resumed at the last step
    assert_old_characters_intact(settings, hashes, logits)
    assert "smith" in load_runtime(settings, report=lambda _: None).model.block_names


# ---- memory writes -------------------------------------------------------------------------


def test_kill_during_memory_writes_keeps_every_acknowledged_exchange(tmp_path):
    memory, session = tmp_path / "memory", "crash-session"
    acked: list[int] = []
    for kill_after in (1, 7, 110):  # 110: across Chroma's batch of 100 vectors per index update
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


@pytest.mark.parametrize("at_save", [False, True], ids=["mid-stream", "at-session-save"])
def test_kill_during_a_chat_reply_keeps_the_saved_session_and_memory(tmp_path, at_save):
    settings = make_library(tmp_path)
    chat = Child(chat_then_hang, settings, 3, at_save)
    acks = [chat.next() for _ in range(3)]
    assert chat.next()[0] == "streaming"
    if at_save:
        assert chat.died_by_sigkill()
    else:
        chat.kill()
    session_id = acks[0][1]
    transcript = [turn for _, _, message, reply in acks
                  for turn in (("user", message), ("character", reply.strip()))]
    remembered = [(number + 1, message, reply.strip())
                  for number, (_, _, message, reply) in enumerate(acks)]

    sessions = SessionStore(settings.sessions_dir)
    assert sessions.list_ids() == [session_id]
    assert [(t.role, t.text) for t in sessions.load(session_id).turns] == transcript
    assert bool(list(settings.sessions_dir.glob(".*.tmp"))) == at_save  # left by the kill
    exchanges, _ = Child(read_memory, settings.memory_dir, session_id, "message 1").result()
    assert exchanges[:3] == remembered  # and at most the unacknowledged fourth
    assert [turn for turn, _, _ in exchanges[3:]] in ([], [4])

    loaded, reply = Child(chat_on, settings, session_id, "and now?").result()
    assert loaded == transcript and reply.strip()
    saved = sessions.load(session_id)
    assert [(t.role, t.text) for t in saved.turns] == [*transcript, ("user", "and now?"),
                                                        ("character", reply.strip())]
    exchanges, _ = Child(read_memory, settings.memory_dir, session_id, "and now?").result()
    assert exchanges == [*remembered, (4, "and now?", reply.strip())]


def post(url: str, body: dict, session_id: str) -> urllib.request.Request:
    return urllib.request.Request(url, json.dumps(body).encode(), {
        "Content-Type": "application/json", "X-Session-Id": session_id})


def sse_events(response) -> Iterator[dict | str]:
    """The data of each server-sent event, decoded (`[DONE]` stays a string)."""
    for line in response:
        if line.startswith(b"data: "):
            data = line[len(b"data: "):].strip().decode()
            yield data if data == "[DONE]" else json.loads(data)


def start_api(settings: Settings, port: int, log: Path) -> Child:
    """`neeko api` on the tiny model and `settings`' dirs; returns once it answers."""
    server = Child(neeko, ["api", "--base-model", "tiny", "--device", "cpu", "--port", str(port),
                           "--characters-dir", str(settings.characters_dir),
                           "--data-dir", str(settings.data_dir), "--cache-dir",
                           str(settings.cache_dir), "--memory-dir", str(settings.memory_dir)],
                   log, {"NEEKO_SESSIONS_DIR": str(settings.sessions_dir)})

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):
                return True
        except (urllib.error.URLError, ConnectionError):
            return False

    poll(answers, "the API to answer", server)
    return server


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
                               kept_text(content, choice["finish_reason"]).strip()))
        body = {"model": "baker", "stream": True, "max_tokens": 500, "temperature": 0,
                "messages": [*messages, {"role": "user", "content": "tell me everything"}]}
        with urllib.request.urlopen(post(url, body, session), timeout=60) as response:
            events = sse_events(response)
            next(events)  # the role
            assert next(events)["choices"][0]["delta"]["content"] is not None
            server.kill()  # mid-stream
            rest: list[dict | str] = []
            with contextlib.suppress(http.client.IncompleteRead, ConnectionError):
                rest.extend(sse_events(response))  # what was sent before the kill
    finally:
        if server.process.is_alive():
            server.kill()
    # greedy decoding runs this reply to 500 tokens (seconds): the kill comes mid-stream
    assert "[DONE]" not in rest, "the reply was complete before the kill"
    exchanges, _ = Child(read_memory, settings.memory_dir, session, "message 1").result()
    assert exchanges == remembered, "an acknowledged exchange was lost, or half a reply kept"

    server = start_api(settings, port, log)
    try:  # the client retries the interrupted request
        messages.append({"role": "user", "content": "tell me everything"})
        body = {"model": "baker", "messages": messages, "max_tokens": 8, "seed": 6,
                "stream": True}
        with urllib.request.urlopen(post(url, body, session), timeout=60) as response:
            events = list(sse_events(response))
    finally:
        server.kill()  # right after an acknowledged reply, before any clean shutdown
    assert events[-1] == "[DONE]"
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert content.strip(), "an empty reply is not remembered: pick another seed"
    remembered.append((4, "tell me everything", kept_text(content, events[-2]["choices"][0]
                                                    ["finish_reason"]).strip()))

    exchanges, _ = Child(read_memory, settings.memory_dir, session, "message 1").result()
    assert exchanges == remembered

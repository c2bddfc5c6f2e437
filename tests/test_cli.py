"""The installed `neeko` console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import write_card


@pytest.fixture(autouse=True)
def private_memory(tmp_path, monkeypatch):
    """Every command's memory store and saved sessions go to this test's folder."""
    monkeypatch.setenv("NEEKO_MEMORY_DIR", str(tmp_path / "memory"))
    monkeypatch.setenv("NEEKO_SESSIONS_DIR", str(tmp_path / "memory" / "sessions"))


def neeko_exe() -> str:
    """The console script installed beside the interpreter running the tests: found so
    whether or not its environment is activated (the README's test command does not)."""
    exe = Path(sys.executable).with_name("neeko")
    assert exe.is_file(), f"the neeko console script is not installed beside {sys.executable}"
    return str(exe)


def neeko(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([neeko_exe(), *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_subcommands():
    result = neeko("--help")
    assert result.returncode == 0
    for command in ("chat", "characters", "export"):
        assert command in result.stdout


def test_chat_streams_a_reply_with_the_tiny_model(tmp_path):
    (tmp_path / "characters").mkdir()
    write_card(tmp_path / "characters", "tester", "Test Person", greeting="Good day to you.")
    result = neeko("chat", "tester", "--base-model", "tiny",
                   "--characters-dir", str(tmp_path / "characters"),
                   "--max-new-tokens", "8", "--seed", "0", stdin="Hello there\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "Test Person: Good day to you." in result.stdout
    assert result.stdout.count("Test Person:") == 2
    # the same engine as the web app: memory indexed, the exchange saved as a session
    assert "indexing 1 characters" in result.stderr
    saved = [json.loads(p.read_text()) for p in (tmp_path / "memory" / "sessions").glob("*.json")]
    assert [[t["text"] for t in s["turns"]][0] for s in saved] == ["Hello there"]
    assert saved[0]["turns"][1]["speaker"] == "tester"


def test_more_goes_on_with_the_last_reply_in_the_saved_session(tmp_path):
    (tmp_path / "characters").mkdir()
    write_card(tmp_path / "characters", "tester", "Test Person")

    def chat(stdin: str, folder: str) -> tuple[str, str]:
        """What the terminal showed, and the reply the saved session keeps."""
        result = subprocess.run(
            [neeko_exe(), "chat", "tester", "--base-model", "tiny", "--characters-dir",
             str(tmp_path / "characters"), "--max-new-tokens", "6", "--max-sentences", "0",
             "--seed", "0"], input=stdin, capture_output=True, text=True, timeout=300,
            env=os.environ | {"NEEKO_SESSIONS_DIR": str(tmp_path / folder)})
        assert result.returncode == 0, result.stderr
        [saved] = [json.loads(p.read_text()) for p in (tmp_path / folder).glob("*.json")]
        return result.stdout, saved["turns"][1]["text"]

    _, first = chat("Hello there\n", "once")
    shown, longer = chat("/more\nHello there\n/more\n", "more")
    assert "(no reply to go on with yet)" in shown and "Test Person (on): " in shown
    assert longer.startswith(first.removesuffix("…")) and len(longer) > len(first)


def test_unknown_character_is_a_clear_error(tmp_path):
    write_card(tmp_path, "tester", "Test Person")
    result = neeko("chat", "nobody", "--base-model", "tiny", "--characters-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown character 'nobody'" in result.stderr and "tester" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_base_model_path_is_a_clear_error(tmp_path):
    write_card(tmp_path, "tester", "Test Person")
    result = neeko("chat", "tester", "--base-model", str(tmp_path / "nope"),
                   "--characters-dir", str(tmp_path))
    assert result.returncode == 2
    assert "not a Hugging Face model directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_characters_lists_broken_ones_without_failing(tmp_path):
    write_card(tmp_path, "tester", "Test Person")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "character.json").write_text("{not json")
    result = neeko("characters", "--characters-dir", str(tmp_path))
    assert result.returncode == 0
    assert "tester" in result.stdout and "BROKEN" in result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_api_command_serves_the_characters_on_loopback(tmp_path):
    write_card(tmp_path, "tester", "Test Person")
    port = free_port()
    env = {**os.environ, "NEEKO_SESSIONS_DIR": str(tmp_path / "sessions")}
    server = subprocess.Popen(
        [neeko_exe(), "api", "--base-model", "tiny", "--characters-dir", str(tmp_path),
         "--no-memory", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                models = http_json(f"{base}/models")
                break
            except OSError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.5)
        assert [m["id"] for m in models["data"]] == ["tester"]
        reply = http_json(f"{base}/chat/completions", {
            "model": "tester", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Hello?"}]})
        assert reply["object"] == "chat.completion"
        assert reply["usage"]["completion_tokens"] <= 4
    finally:
        server.terminate()
        server.wait(timeout=30)

"""`neeko serve`: the web app from the console script, on the tiny model."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx

from neeko_app.chat.generation import DecodingSettings
from neeko_app.cli import DECODING_FLAGS, main
from tests.conftest import write_card
from tests.test_cli import neeko_exe
from tests.test_memory import free_port


def start_server(command: str, arguments: list[str], env: dict[str, str], log: Path
                 ) -> subprocess.Popen:
    """`neeko COMMAND ARGUMENTS` (serve or api) in the background, its output going to `log`."""
    with log.open("w") as output:
        return subprocess.Popen([neeko_exe(), command, *arguments], env=env, stdout=output,
                                stderr=subprocess.STDOUT)


def wait_for_page(server: subprocess.Popen, url: str, timeout_s: float, log: Path) -> str:
    """The page at `url` once the `server` process answers (fails if the process dies)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"the app did not answer at {url}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)


def test_serve_answers_on_loopback_with_the_app_page(tmp_path):
    write_card(tmp_path, "tester", "Test Person")
    port = free_port()
    env = os.environ | {"NEEKO_CACHE_DIR": str(tmp_path / "cache"),
                        "NEEKO_SESSIONS_DIR": str(tmp_path / "sessions")}
    log = tmp_path / "serve.log"
    server = start_server("serve", ["--base-model", "tiny", "--characters-dir", str(tmp_path),
                                    "--port", str(port), "--no-memory"], env, log)
    try:
        url = f"http://127.0.0.1:{port}/"
        page = wait_for_page(server, url, timeout_s=240, log=log)
        assert "Neeko: role-play chat" in page
        uploads = (tmp_path / "cache" / "app" / "uploads").resolve()
        for name in ("card.json", "../../../evil.json"):  # kept inside the app's upload dir
            response = httpx.post(f"{url}gradio_api/upload", files={"files": (name, b"{}")})
            [stored] = response.json()
            assert Path(stored).resolve().is_relative_to(uploads), stored
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_malformed_auth(capsys):
    assert main(["serve", "--auth", "only-a-user"]) == 2
    assert "neeko: error: --auth must be USER:PASSWORD" in capsys.readouterr().err


def test_decoding_flags_reach_the_engine_of_both_servers(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    built: list[DecodingSettings] = []

    def capture(settings, decoding, **kwargs):
        built.append(decoding)
        raise ValueError("engine not needed")

    monkeypatch.setattr("neeko_app.chat.startup.build_engine", capture)
    flags = ["--no-memory", "--temperature", "0", "--repetition-penalty", "1.3",
             "--no-prompt-echo", "0", "--max-new-tokens", "32", "--script-guard", "off"]
    assert main(["api", *flags]) == 2 and main(["serve", *flags]) == 2
    wanted = DecodingSettings(max_new_tokens=32, temperature=0.0, repetition_penalty=1.3,
                              no_prompt_echo=0, script_guard=False)
    assert built == [wanted, wanted]


def test_decoding_flags_state_the_engine_defaults():
    defaults = DecodingSettings()
    for flag, (field, _, text) in DECODING_FLAGS.items():
        stated = re.search(r"\(default ([\d.]+|on|off)", text)
        assert stated, flag
        word = stated.group(1)
        value = word == "on" if word in ("on", "off") else float(word)
        assert value == getattr(defaults, field), flag

"""`neeko serve`: the web app from the console script, on the tiny model."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request

from neeko_app.cli import main
from tests.conftest import write_card
from tests.test_cli import neeko_exe
from tests.test_memory import free_port


def test_serve_answers_on_loopback_with_the_app_page(tmp_path):
    write_card(tmp_path, "tester", "Test Person")
    port = free_port()
    env = os.environ | {"NEEKO_CACHE_DIR": str(tmp_path / "cache"),
                        "NEEKO_SESSIONS_DIR": str(tmp_path / "sessions")}
    server = subprocess.Popen(
        [neeko_exe(), "serve", "--base-model", "tiny", "--characters-dir", str(tmp_path),
         "--port", str(port), "--no-memory"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, "the app did not answer"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert "Neeko: role-play chat" in page
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_malformed_auth(capsys):
    assert main(["serve", "--auth", "only-a-user"]) == 2
    assert "neeko: error: --auth must be USER:PASSWORD" in capsys.readouterr().err

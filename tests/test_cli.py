"""The installed `neeko` console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def neeko(*args: str, stdin: str = "", env_dir: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("neeko")
    assert exe, "the neeko console script is not installed"
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands():
    result = neeko("--help")
    assert result.returncode == 0
    for command in ("chat", "characters", "export"):
        assert command in result.stdout


def write_character(folder: Path, slug: str) -> None:
    (folder / slug).mkdir(parents=True)
    card = {"name": "Test Person", "slug": slug, "description": "a test.", "personality": "calm",
            "scenario": "A quiet room.", "greeting": "Good day to you."}
    (folder / slug / "character.json").write_text(json.dumps(card))


def test_chat_streams_a_reply_with_the_tiny_model(tmp_path):
    write_character(tmp_path, "tester")
    result = neeko("chat", "tester", "--base-model", "tiny", "--characters-dir", str(tmp_path),
                   "--max-new-tokens", "8", "--seed", "0", stdin="Hello there\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "Test Person: Good day to you." in result.stdout
    assert result.stdout.count("Test Person:") == 2


def test_unknown_character_is_a_clear_error(tmp_path):
    write_character(tmp_path, "tester")
    result = neeko("chat", "nobody", "--base-model", "tiny", "--characters-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown character 'nobody'" in result.stderr and "tester" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_base_model_path_is_a_clear_error(tmp_path):
    write_character(tmp_path, "tester")
    result = neeko("chat", "tester", "--base-model", str(tmp_path / "nope"),
                   "--characters-dir", str(tmp_path))
    assert result.returncode == 2
    assert "not a Hugging Face model directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_characters_lists_broken_ones_without_failing(tmp_path):
    write_character(tmp_path, "tester")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "character.json").write_text("{not json")
    result = neeko("characters", "--characters-dir", str(tmp_path))
    assert result.returncode == 0
    assert "tester" in result.stdout and "BROKEN" in result.stdout

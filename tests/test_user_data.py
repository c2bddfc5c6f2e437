"""The user's data folder: added characters, memory and sessions apart from the shipped files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neeko_app.characters.registry import discover_characters
from neeko_app.config import PROJECT_ROOT, Settings, default_data_dir
from neeko_app.training.workflows import add_character
from neeko_app.user_data import move_old_user_data
from tests.conftest import write_card
from tests.test_training import write_character


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_added_character_goes_to_the_data_folder_and_the_shipped_ones_stay(tmp_path):
    shipped = tmp_path / "app" / "characters"
    shipped.mkdir(parents=True)
    write_card(shipped, "ada", "Ada Lovelace")
    before = snapshot(shipped)
    settings = Settings(base_model="tiny", device="cpu", characters_dir=shipped,
                        data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    added = add_character(settings, write_character(tmp_path / "in", "smith", "iron"), "fusion")
    assert added.folder == tmp_path / "data" / "characters" / "smith"
    assert snapshot(shipped) == before
    assert set(discover_characters(*settings.character_dirs).characters) == {"ada", "smith"}
    with pytest.raises(Exception, match="already exists"):  # a shipped id cannot be re-added
        add_character(settings, write_card(tmp_path / "in", "ada", "Ada Again"), "fusion")


def test_a_data_folder_from_the_environment_carries_memory_and_sessions(monkeypatch, tmp_path):
    monkeypatch.setenv("NEEKO_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("NEEKO_MEMORY_DIR", raising=False)
    monkeypatch.setenv("NEEKO_SESSIONS_DIR", str(tmp_path / "s"))
    settings = Settings.from_env()
    assert settings.user_characters_dir == tmp_path / "d" / "characters"
    assert settings.memory_dir == tmp_path / "d" / "memory"
    assert settings.sessions_dir == tmp_path / "s"  # set on its own: kept
    assert Settings.from_env(data_dir=str(tmp_path / "e")).memory_dir == tmp_path / "e" / "memory"


@pytest.fixture
def old_layout(tmp_path, monkeypatch):
    """An app folder as versions before the data folder left it: an added character among the
    shipped ones, and a memory/ folder with a store and sessions."""
    app = tmp_path / "app"
    shipped = app / "characters"
    shipped.mkdir(parents=True)
    (shipped / "shipped.txt").write_text("# shipped\nada\n")
    write_card(shipped, "ada", "Ada Lovelace")
    write_card(shipped, "seraphina", "Seraphina")
    old_memory = app / "memory"
    (old_memory / "sessions").mkdir(parents=True)
    (old_memory / "README.md").write_text("about this folder")
    (old_memory / "chroma.sqlite3").write_bytes(b"store")
    (old_memory / "sessions" / "s1.json").write_text("{}")
    monkeypatch.setattr("neeko_app.user_data.OLD_MEMORY_DIR", old_memory)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEEKO_DATA_DIR")
    return app


def test_data_left_in_the_app_folder_moves_to_the_default_data_folder_once(old_layout):
    settings = Settings.from_env(characters_dir=str(old_layout / "characters"))
    assert settings.data_dir == default_data_dir()
    lines: list[str] = []
    moved = move_old_user_data(settings, lines.append)
    data = default_data_dir()
    assert sorted(moved) == sorted([data / "characters" / "seraphina",
                                    data / "memory" / "chroma.sqlite3", data / "sessions"])
    assert (data / "sessions" / "s1.json").read_text() == "{}"
    assert sorted(p.name for p in (old_layout / "characters").iterdir()) == ["ada", "shipped.txt"]
    assert [p.name for p in (old_layout / "memory").iterdir()] == ["README.md"]
    assert len(lines) == 3 and all("moved your data from" in line for line in lines)
    registry = discover_characters(*settings.character_dirs)
    assert set(registry.characters) == {"ada", "seraphina"}
    assert move_old_user_data(settings, lines.append) == [] and len(lines) == 3


def test_nothing_moves_into_a_data_folder_the_user_chose_or_over_existing_data(old_layout,
                                                                                tmp_path):
    chosen = Settings.from_env(characters_dir=str(old_layout / "characters"),
                               data_dir=str(tmp_path / "chosen"))
    assert move_old_user_data(chosen, pytest.fail) == []
    settings = Settings.from_env(characters_dir=str(old_layout / "characters"))
    (settings.sessions_dir).mkdir(parents=True)
    lines: list[str] = []
    move_old_user_data(settings, lines.append)
    assert (old_layout / "memory" / "sessions" / "s1.json").exists()
    assert any(line.startswith("neeko: kept") for line in lines)


def test_the_readme_test_command_finds_the_cli_without_an_activated_venv(tmp_path):
    """The README runs `.venv/bin/python -m pytest` in a shell where nothing is activated:
    the tests that start `neeko` must find it all the same."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PATH")}
    env["PATH"] = "/usr/bin:/bin"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_cli.py::test_help_lists_subcommands"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout

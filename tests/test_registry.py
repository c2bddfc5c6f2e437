"""The characters registry: valid, broken and duplicate characters, and data-file checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from neeko_app.characters.registry import check_character, discover_characters
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.user_data import shipped_ids
from tests.conftest import write_card

SHIPPED = Path(__file__).resolve().parents[1] / "characters"


def conversation(i: int) -> str:
    return json.dumps({"id": f"c{i}", "turns": [{"role": "user", "text": f"Question {i}?"},
                                                {"role": "character", "text": f"Answer {i}."}]})


def test_broken_and_duplicate_characters_are_skipped_with_reasons(tmp_path):
    write_card(tmp_path, "ada", "Ada Lovelace")
    write_card(tmp_path, "byron", "Lord Byron")
    write_card(tmp_path, "lovelace", "ADA LOVELACE ")  # same name, other case and spacing
    write_card(tmp_path, "mismatch", "Someone", slug="other")
    write_card(tmp_path, "nameless", "")
    (tmp_path / "nocard").mkdir()
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "character.json").write_bytes('{"name": "Andr\xe9"}'.encode("latin-1"))
    (tmp_path / ".staging" / "ada2").mkdir(parents=True)  # an install in progress

    registry = discover_characters(tmp_path)

    assert sorted(registry.characters) == ["ada", "byron"]
    problems = registry.problems
    assert sorted(problems) == ["latin1", "lovelace", "mismatch", "nameless", "nocard"]
    assert "duplicate" in problems["lovelace"] and "'ada'" in problems["lovelace"]
    assert "differs from folder" in problems["mismatch"]
    assert "name" in problems["nameless"]
    assert "no character.json" in problems["nocard"]
    assert "UTF-8" in problems["latin1"]


def test_missing_directory_is_an_empty_registry(tmp_path):
    registry = discover_characters(tmp_path / "absent")
    assert registry.characters == {} and registry.problems == {}


def test_check_reports_bad_dialogue_lines_and_small_sets(tmp_path):
    folder = write_card(tmp_path, "ada", "Ada Lovelace")
    lines = [conversation(i) for i in range(5)]
    lines.insert(3, '{"turns": [{"role": "character", "text": "I speak first"}]}')
    (folder / "dialogues.jsonl").write_text("\n".join(lines))
    (folder / "block.safetensors").write_bytes(b"not a safetensors file")
    character = discover_characters(tmp_path).characters["ada"]

    issues = check_character(character)
    assert any("line 4" in issue and "role 'user'" in issue for issue in issues)
    assert any("block.safetensors" in issue for issue in issues)

    (folder / "dialogues.jsonl").write_text("\n".join(lines[:3]))
    (folder / "block.safetensors").unlink()
    assert check_character(character) == []  # fine for a user's own character...
    strict = check_character(character, strict=True)  # ...too small to ship
    assert any("3 conversations" in issue for issue in strict)
    assert any("heldout.jsonl is missing" in issue for issue in strict)


def test_shipped_characters_pass_the_strict_check():
    registry = discover_characters(SHIPPED)
    assert shipped_ids(SHIPPED) == ["beethoven", "caesar", "cleopatra", "martin-luther-king",
                                    "newton", "socrates", "spartacus"]
    for slug in shipped_ids(SHIPPED):
        assert slug not in registry.problems, registry.problems[slug]
        assert check_character(registry.characters[slug], strict=True) == [], slug


@pytest.mark.skipif(not (SHIPPED.parent / ".git").exists(), reason="not a git checkout")
def test_the_shipped_list_names_every_committed_character():
    tracked = subprocess.run(["git", "ls-files", "characters/*/character.json"], cwd=SHIPPED.parent,
                             capture_output=True, text=True, check=True).stdout.split()
    assert sorted(Path(path).parent.name for path in tracked) == shipped_ids(SHIPPED)


def test_characters_come_from_the_shipped_folder_then_the_users(tmp_path):
    shipped, mine = tmp_path / "shipped", tmp_path / "mine"
    shipped.mkdir(), mine.mkdir()
    write_card(shipped, "ada", "Ada Lovelace")
    write_card(mine, "bo", "Bo Peep")
    write_card(mine, "ada", "Another Ada")  # the id is taken by a shipped character
    write_card(mine, "ada-2", "ada lovelace")  # so is the name
    registry = discover_characters(shipped, mine)
    assert set(registry.characters) == {"ada", "bo"}
    assert registry.characters["ada"].folder == shipped / "ada"
    assert "clashes with 'ada'" in registry.problems["ada-2"]
    settings = Settings(characters_dir=shipped, data_dir=tmp_path)
    assert settings.character_dirs == (shipped, tmp_path / "characters")
    one = tmp_path / "characters"  # shipped and added characters in one folder: listed once
    assert Settings(characters_dir=one, data_dir=tmp_path).character_dirs == (one,)


@pytest.mark.parametrize("broken", [False, True])
def test_cli_check_exit_status(tmp_path, capsys, broken):
    folder = write_card(tmp_path, "ada", "Ada Lovelace")
    (folder / "dialogues.jsonl").write_text("\n".join(conversation(i) for i in range(200)))
    (folder / "heldout.jsonl").write_text(
        "\n".join(conversation(i) for i in range(40 if not broken else 39)))
    code = main(["characters", "--check", "--characters-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == (1 if broken else 0)
    assert ("39 conversations" in out) == broken

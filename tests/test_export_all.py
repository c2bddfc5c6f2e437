"""`neeko export --all` on the tiny model: one adapter per trained character, fusion ones
skipped with the reason, README and launch lines that name every adapter."""

from __future__ import annotations

import json
import re
import stat

import pytest

from neeko_app.cli import main
from neeko_app.moelora.serving_lines import VLLM_MAX_LORA_RANKS
from tests.tiny_characters import make_tiny_runtime

TRAINED = {"ada": "Ada Lovelace", "bo": "Bo Diddley"}
FUSED = {"cy": "Cy Twombly"}
# what vLLM's PEFTHelper and LoRAX's LoraConfig read; nothing they refuse
SERVER_FIELDS = {"peft_type", "task_type", "base_model_name_or_path", "r", "lora_alpha",
                 "lora_dropout", "target_modules", "bias", "fan_in_fan_out", "use_rslora",
                 "use_dora", "inference_mode"}


@pytest.fixture(scope="module")
def characters(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    make_tiny_runtime(root, TRAINED, FUSED)
    return root


def export(characters, *args: str) -> int:
    return main(["export", *args, "--base-model", "tiny", "--device", "cpu",
                 "--characters-dir", str(characters / "characters"),
                 "--cache-dir", str(characters / "cache")])


def test_export_all_writes_one_adapter_per_trained_character(characters, tmp_path, capsys):
    out = tmp_path / "adapters"
    assert export(characters, "--all", "--peft", str(out)) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "ada", "bo"]
    for slug in TRAINED:
        config = json.loads((out / slug / "adapter_config.json").read_text())
        assert set(config) <= SERVER_FIELDS
        assert config["bias"] == "none" and not config["use_dora"]
        assert config["base_model_name_or_path"] == "tiny-gemma3"
        assert (out / slug / "adapter_model.safetensors").stat().st_size > 0
    assert re.search(r"skipped cy: no trained block .*nearest trained character", printed)
    readme = (out / "README.md").read_text()
    for text in (printed, readme):
        assert f"ada={out / 'ada'}" in text and f"bo={out / 'bo'}" in text
        assert "--max-loras 2" in text and "lorax-launcher --model-id tiny-gemma3" in text
        rank = int(re.search(r"--max-lora-rank (\d+)", text).group(1))
        assert rank in VLLM_MAX_LORA_RANKS and rank >= config["r"]
    assert "`cy`: no trained block" in readme


def test_export_all_replaces_an_earlier_export(characters, tmp_path, capsys):
    out = tmp_path / "adapters"
    assert export(characters, "--all", "--peft", str(out)) == 0
    (out / "ada" / "stale.txt").write_text("from an earlier export")
    assert export(characters, "--all", "--peft", str(out)) == 0
    assert sorted(p.name for p in (out / "ada").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_export_all_leaves_a_foreign_folder_alone(characters, tmp_path, capsys):
    (tmp_path / "bo").mkdir()
    (tmp_path / "bo" / "notes.txt").write_text("mine")
    assert export(characters, "--all", "--peft", str(tmp_path)) == 2
    assert "not an exported adapter" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bo", "notes.txt"]


def test_single_character_export_still_works(characters, tmp_path, capsys):
    assert export(characters, "bo", "--peft", str(tmp_path / "bo")) == 0
    assert f"exported bo to {tmp_path / 'bo'}" in capsys.readouterr().out
    assert (tmp_path / "bo" / "adapter_config.json").is_file()
    assert export(characters, "cy", "--peft", str(tmp_path / "cy")) == 2
    assert "cy has no trained block" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["ada", "--all"], "a CHARACTER or --all, not both"),
    ([], "needs a CHARACTER, or --all"),
])
def test_character_and_all_are_exclusive(characters, tmp_path, capsys, args, message):
    assert export(characters, *args, "--peft", str(tmp_path / "out")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_exported_files_get_the_umask_permissions_like_every_other_write(
        characters, tmp_path, capsys, monkeypatch, umask):
    monkeypatch.setattr("neeko_app.storage._UMASK", umask)  # read once, at import
    out = tmp_path / "adapters"
    assert export(characters, "--all", "--peft", str(out)) == 0
    assert export(characters, "ada", "--peft", str(tmp_path / "single")) == 0
    written = [*out.rglob("*.*"), *(tmp_path / "single").iterdir()]
    assert len(written) == 7  # README, and two files in each of three adapters
    assert {stat.S_IMODE(path.stat().st_mode) for path in written} == {0o666 & ~umask}

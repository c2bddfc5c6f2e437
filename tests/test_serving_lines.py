"""Launch lines for vLLM and LoRAX, and the README written beside exported adapters."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from neeko_app.moelora.serving_lines import (
    VLLM_MAX_LORA_RANKS,
    lorax_commands,
    readme,
    vllm_command,
    vllm_max_lora_rank,
)

BASE = "/models/gemma 3"  # a space, to check the quoting
ADAPTERS = {"ada": Path("/out/ada"), "bo": Path("/out/bo")}


@pytest.mark.parametrize(("rank", "expected"), [(1, 8), (8, 8), (9, 16), (300, 320), (512, 512)])
def test_max_lora_rank_rounds_up_to_a_value_vllm_accepts(rank, expected):
    assert vllm_max_lora_rank(rank) == expected
    assert expected in VLLM_MAX_LORA_RANKS


def test_rank_above_vllms_largest_is_refused():
    with pytest.raises(ValueError, match="above vLLM's largest"):
        vllm_max_lora_rank(513)


def test_vllm_command_registers_every_adapter():
    args = shlex.split(vllm_command(BASE, ADAPTERS, rank=12))
    assert args[:3] == ["vllm", "serve", BASE] and "--enable-lora" in args
    assert args[args.index("--max-loras") + 1] == "2"
    assert args[args.index("--max-lora-rank") + 1] == "16"
    modules = args[args.index("--lora-modules") + 1:]
    assert modules == ["ada=/out/ada", "bo=/out/bo"]


def test_lorax_commands_mount_base_and_adapters_at_the_same_paths():
    launcher, docker = (shlex.split(line) for line in lorax_commands(BASE, Path("/out")))
    assert launcher[:3] == ["lorax-launcher", "--model-id", BASE]
    assert f"{BASE}:{BASE}:ro" in docker and "/out:/out:ro" in docker
    assert docker[-2:] == ["--model-id", BASE]


def test_readme_names_adapters_skipped_characters_and_commands():
    text = readme(BASE, ADAPTERS, {"cy": "no trained block"}, Path("/out"), rank=8)
    assert "`ada`: `/out/ada`" in text and "`bo`: `/out/bo`" in text
    assert "`cy`: no trained block" in text and "nearest trained one" in text
    assert "--max-lora-rank 8" in text and "lorax-launcher" in text
    assert '"adapter_source": "local"' in text and '"adapter_id": "/out/ada"' in text

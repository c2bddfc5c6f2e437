"""The evaluated systems: their gates (fusion without the own block, LoRA-mix) and headers."""

from __future__ import annotations

import pytest
import torch

from neeko_app.evaluation.systems import (
    MIX_BLOCK,
    fusion_without_own_block,
    system_gate,
    system_header,
)
from tests.tiny_characters import make_tiny_runtime


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return make_tiny_runtime(tmp_path_factory.mktemp("systems"),
                             {"ada": "Ada", "newton": "Newton", "cleo": "Cleopatra"})


def test_fusion_mixes_the_other_blocks_only(runtime):
    ada = runtime.character("ada")
    gate = fusion_without_own_block(runtime, ada)
    own = runtime.model.block_names.index("ada")
    assert own not in gate.indices[0].tolist() and gate.indices.shape == (1, 2)
    assert gate.weights.sum().item() == pytest.approx(1.0)
    assert system_gate("fusion", runtime, ada).indices.tolist() == gate.indices.tolist()
    assert system_gate("blocks", runtime, ada).indices.tolist() == [[own]]
    assert system_gate("profile-prompt", runtime, ada) is None


def test_lora_mix_needs_its_block_and_then_uses_it_for_everyone(runtime):
    with pytest.raises(ValueError, match="neeko train --mix"):
        system_gate("lora-mix", runtime, runtime.character("ada"))
    runtime.model.add_blocks([MIX_BLOCK], torch.zeros(1, runtime.model.keys.shape[1]))
    try:
        mix = runtime.model.block_names.index(MIX_BLOCK)
        for slug in ("ada", "newton"):
            gate = system_gate("lora-mix", runtime, runtime.character(slug))
            assert gate.indices.tolist() == [[mix]]
        fused = fusion_without_own_block(runtime, runtime.character("cleo"))
        assert mix not in fused.indices[0].tolist()
    finally:
        runtime.model.truncate_blocks(mix)


def test_blocks_with_the_card_use_the_own_block_and_the_baselines_header(runtime):
    ada = runtime.character("ada")
    own = runtime.model.block_names.index("ada")
    card = system_header("blocks+card", ada, "Who are you?", None)
    assert card == system_header("profile-prompt", ada, "Who are you?", None)
    assert f"Personality: {ada.personality}" in card
    assert card != system_header("blocks", ada, "Who are you?", None)
    assert system_gate("blocks+card", runtime, ada).indices.tolist() == [[own]]

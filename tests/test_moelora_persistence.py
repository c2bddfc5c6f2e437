"""Save/load round trips are exact; a PEFT export gives the in-app logits."""

from __future__ import annotations

import json

import pytest
import torch

from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.moelora.peft_export import export_peft
from neeko_app.moelora.persistence import (
    AdapterFormatError,
    load_adapter,
    load_block,
    save_adapter,
    save_block,
)
from tests.conftest import KEY_DIM


def fresh_base():
    return load_base_model("tiny", device="cpu").model


def all_logits(model: NeekoModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([model(ids, gate=model.gate_for([n] * len(ids))).logits
                            for n in model.block_names])


def test_adapter_round_trip_is_exact(tiny_neeko, token_batch, tmp_path):
    save_adapter(tiny_neeko, tmp_path, "tiny-gemma3")
    loaded = load_adapter(fresh_base(), tmp_path)
    assert loaded.block_names == tiny_neeko.block_names
    assert torch.equal(loaded.keys, tiny_neeko.keys)
    assert torch.equal(all_logits(loaded, token_batch), all_logits(tiny_neeko, token_batch))


def test_corrupt_adapter_is_refused_with_a_clear_error(tiny_neeko, tmp_path):
    save_adapter(tiny_neeko, tmp_path)
    weights = tmp_path / "blocks.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(AdapterFormatError, match="checksum"):
        load_adapter(fresh_base(), tmp_path)
    with pytest.raises(AdapterFormatError, match="cannot read"):
        load_adapter(fresh_base(), tmp_path / "missing")


def test_block_file_round_trip_is_exact(tiny_neeko, token_batch, tmp_path):
    save_block(tiny_neeko, "char2", tmp_path / "char2.safetensors")
    other = NeekoModel(fresh_base(), tiny_neeko.config, key_dim=KEY_DIM)
    assert load_block(other, tmp_path / "char2.safetensors") == 0
    with torch.no_grad():
        expected = tiny_neeko(token_batch, gate=tiny_neeko.gate_for(["char2"] * 4)).logits
        got = other(token_batch, gate=other.gate_for(["char2"] * 4)).logits
    assert torch.equal(expected, got)


def test_block_with_other_config_is_refused(tiny_neeko, tmp_path):
    save_block(tiny_neeko, "char0", tmp_path / "b.safetensors")
    other = NeekoModel(fresh_base(), MoeLoraConfig(rank=2), key_dim=KEY_DIM)
    with pytest.raises(AdapterFormatError, match="trained with"):
        load_block(other, tmp_path / "b.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterFormatError, match="not a readable"):
        load_block(other, tmp_path / "junk.safetensors")


def test_peft_export_matches_in_app_logits(tiny_neeko, token_batch, tmp_path):
    from peft import PeftModel

    export_peft(tiny_neeko, "char1", tmp_path / "char1", "tiny-gemma3")
    config = json.loads((tmp_path / "char1" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == tiny_neeko.config.rank
    peft_model = PeftModel.from_pretrained(fresh_base(), tmp_path / "char1").eval()
    with torch.no_grad():
        ours = tiny_neeko(token_batch, gate=tiny_neeko.gate_for(["char1"] * 4)).logits
        theirs = peft_model(input_ids=token_batch).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    bare = fresh_base()(input_ids=token_batch).logits
    assert not torch.allclose(bare, ours, atol=1e-3)


def test_block_of_another_model_shape_is_refused_and_adds_nothing():
    """A block trained on another base (here: a shipped Gemma 270M block on the tiny model,
    same LoRA config) is refused with its shapes; the model keeps just the blocks it had."""
    from neeko_app.config import Settings

    model = NeekoModel(fresh_base(), MoeLoraConfig(), key_dim=384)
    model.add_blocks(["a", "b"], torch.zeros(2, 384))
    shipped = Settings().characters_dir / "beethoven" / "block.safetensors"
    with pytest.raises(AdapterFormatError, match="do not fit this model"):
        load_block(model, shipped)
    assert model.block_names == ["a", "b"] and model.keys.shape[0] == 2
    assert all(layer.lora_A.shape[0] == 2 for _, layer in model.lora_layers())

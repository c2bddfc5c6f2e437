"""Loading characters and their blocks: broken ones are reported, the others still work."""

from __future__ import annotations

import torch

from neeko_app.config import Settings
from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import load_runtime
from tests.conftest import write_card


def test_runtime_loads_blocks_and_survives_broken_ones(tmp_path):
    # the runtime's model uses the default config and MiniLM-sized keys
    donor = NeekoModel(load_base_model("tiny", device="cpu").model, MoeLoraConfig())
    donor.add_blocks(["alice", "bob"], torch.randn(2, 384))
    for _, layer in donor.lora_layers():
        layer.lora_BT.normal_(0, 0.05)
    for slug in ("alice", "bob", "carol"):
        write_card(tmp_path, slug, slug.title())
    save_block(donor, "alice", tmp_path / "alice" / "block.safetensors")
    (tmp_path / "bob" / "block.safetensors").write_bytes(b"\x00" * 64)  # corrupt
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "character.json").write_text("[1, 2]")

    runtime = load_runtime(Settings(base_model="tiny", device="cpu", characters_dir=tmp_path),
                           report=lambda _: None)
    assert sorted(runtime.characters) == ["alice", "bob", "carol"]
    assert runtime.model.block_names == ["alice"]
    assert "broken" in runtime.problems and "bob" in runtime.problems
    alice_gate = runtime.gate_for(runtime.character("alice"))
    assert alice_gate.indices.tolist() == [[0]] and alice_gate.weights.tolist() == [[1.0]]
    fused = runtime.gate_for(runtime.character("carol"))
    assert fused.indices.tolist() == [[0]]  # fusion over the one trained block
    ids = torch.tensor([[2, 50, 60, 70]])
    donor.eval().merge_single_blocks(True)  # as the runtime serves one character
    with torch.no_grad():
        expected = donor(ids, gate=donor.gate_for(["alice"])).logits
        got = runtime.model(ids, gate=alice_gate).logits
    assert torch.equal(expected, got)


def test_refresh_takes_in_characters_another_replica_added(tmp_path):
    donor = NeekoModel(load_base_model("tiny", device="cpu").model, MoeLoraConfig())
    donor.add_blocks(["alice", "dora"], torch.randn(2, 384))
    for _, layer in donor.lora_layers():
        layer.lora_BT.normal_(0, 0.05)
    write_card(tmp_path, "alice", "Alice")
    save_block(donor, "alice", tmp_path / "alice" / "block.safetensors")
    runtime = load_runtime(Settings(base_model="tiny", device="cpu", characters_dir=tmp_path),
                           report=lambda _: None)
    assert runtime.refresh() == []

    write_card(tmp_path, "dora", "Dora")  # what another replica's add-character leaves
    save_block(donor, "dora", tmp_path / "dora" / "block.safetensors")
    write_card(tmp_path, "erin", "Erin")  # a fusion character
    (tmp_path / ".staging" / "fred").mkdir(parents=True)  # an add still in progress
    assert sorted(runtime.refresh()) == ["dora", "erin"]
    assert runtime.model.block_names == ["alice", "dora"]
    assert runtime.refresh() == [] and runtime.model.block_names == ["alice", "dora"]
    ids = torch.tensor([[2, 50, 60, 70]])
    donor.eval().merge_single_blocks(True)  # as the runtime serves one character
    with torch.no_grad():
        expected = donor(ids, gate=donor.gate_for(["dora"])).logits
        got = runtime.model(ids, gate=runtime.gate_for(runtime.character("dora"))).logits
    assert torch.equal(expected, got)

"""A batch of one character served through its block merged into the weights gives the
fused gate's outputs, follows every change of the blocks, and never touches training."""

from __future__ import annotations

import torch

from neeko_app.config import Settings
from neeko_app.moelora import Gate, NeekoModel
from neeko_app.moelora.layer import MoeLoraLinear
from neeko_app.runtime import load_runtime
from tests.conftest import make_tiny_neeko


def logits(model: NeekoModel, ids: torch.Tensor, gate: Gate | None) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, gate=gate).logits


def kept_blocks(model: NeekoModel) -> set[int | None]:
    """The block each layer holds merged (None: nothing kept)."""
    return {layer._merged.stamp[0] if layer._merged else None for _, layer in model.lora_layers()}


def test_merged_block_gives_the_gates_outputs(token_batch):
    fused, merged = make_tiny_neeko(), make_tiny_neeko()
    merged.merge_single_blocks(True)
    for name in ("char1", "char3"):
        gate = fused.gate_for([name] * 4)
        expected = logits(fused, token_batch, gate)
        torch.testing.assert_close(logits(merged, token_batch, gate), expected,
                                   rtol=1e-5, atol=1e-5)
        assert kept_blocks(merged) == {merged.block_index(name)}
    assert not torch.equal(expected, logits(fused, token_batch, None))


def test_mixed_fusion_and_dense_gates_do_not_merge(token_batch):
    model = make_tiny_neeko()
    model.merge_single_blocks(True)
    roles = torch.randn(4, model.keys.shape[1], generator=torch.Generator().manual_seed(3))
    for gate in (model.gate_for(["char0", "char1", "char0", "char2"]),
                 model.fusion_gate_for(roles, temperature=0.5),
                 model.gate_for(["char0"] * 4).with_path("dense"),
                 model.gate_for(["char0", None, "char0", "char0"])):
        logits(model, token_batch, gate)
        assert kept_blocks(model) == {None}


def test_merged_weight_follows_changed_blocks(token_batch):
    model = make_tiny_neeko()
    model.merge_single_blocks(True)
    gate = model.gate_for(["char2"] * 4)
    before = logits(model, token_batch, gate)
    layer = next(layer for _, layer in model.lora_layers())
    layer.lora_BT[2].mul_(3.0)  # written in place
    changed = logits(model, token_batch, gate)
    assert not torch.allclose(changed, before, atol=1e-4)
    model.merge_single_blocks(False)
    torch.testing.assert_close(changed, logits(model, token_batch, gate), rtol=1e-5, atol=1e-5)
    model.merge_single_blocks(True)
    layer.set_blocks(layer.lora_A.clone(), torch.zeros_like(layer.lora_BT))  # reassigned
    reset = logits(model, token_batch, gate)
    model.merge_single_blocks(False)
    torch.testing.assert_close(reset, logits(model, token_batch, gate), rtol=1e-5, atol=1e-5)


def test_training_goes_through_the_blocks_and_changes_the_merged_weight(token_batch):
    model = make_tiny_neeko()
    model.merge_single_blocks(True)
    gate = model.gate_for(["char1"] * 4)
    before = logits(model, token_batch, gate)
    with model.training_blocks(["char1"]) as params:
        model.train()
        loss = model(token_batch, gate=gate).logits.float().pow(2).mean()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        torch.optim.SGD(params, lr=1.0).step()
        model.eval()
    assert kept_blocks(model) == {1}, "merged before training, not rebuilt yet"
    after = logits(model, token_batch, gate)
    assert not torch.allclose(after, before, atol=1e-4)
    model.merge_single_blocks(False)
    torch.testing.assert_close(after, logits(model, token_batch, gate), rtol=1e-5, atol=1e-5)


def test_runtime_merges_only_when_serving_in_merged_mode(tmp_path):
    def merges(decode: str, serving: bool) -> bool:
        settings = Settings(base_model="tiny", device="cpu", characters_dir=tmp_path,
                            data_dir=tmp_path / "data", decode=decode)
        runtime = load_runtime(settings, report=lambda _: None, serving=serving)
        flags = {layer.merges_single_block for _, layer in runtime.model.lora_layers()}
        assert len(flags) == 1 and all(isinstance(layer, MoeLoraLinear)
                                       for _, layer in runtime.model.lora_layers())
        return flags.pop()

    assert merges(Settings().decode, serving=True), "merged by default on a CPU"
    assert not Settings(decode="auto").merges_single_blocks("cuda")
    assert Settings(decode="merged").merges_single_blocks("cuda")
    assert merges("merged", serving=True)
    assert not merges("merged", serving=False)
    assert not merges("eager", serving=True)

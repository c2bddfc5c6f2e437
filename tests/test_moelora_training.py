"""Training touches only the chosen blocks; expansion never changes old characters."""

from __future__ import annotations

import pytest
import torch

from neeko_app.training.loop import TrainingBatch, train_blocks


def batch_for(blocks: list[str], seed: int = 0) -> TrainingBatch:
    ids = torch.randint(10, 200, (len(blocks), 16), generator=torch.Generator().manual_seed(seed))
    return TrainingBatch(ids, torch.ones_like(ids), ids.clone(), blocks)


def same_block(before: list[torch.Tensor], model, name: str) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, block_snapshot(model, name), strict=True))


def block_snapshot(model, name: str) -> list[torch.Tensor]:
    i = model.block_index(name)
    return [t[i].clone() for _, layer in model.lora_layers() for t in (layer.lora_A, layer.lora_BT)]


def all_logits(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {n: model(ids, gate=model.gate_for([n] * len(ids))).logits
                for n in model.block_names}


def test_gradients_reach_only_the_selected_block(tiny_neeko):
    batch = batch_for(["char2", "char2"])
    with tiny_neeko.training_blocks(["char1", "char2"]) as params:
        loss = tiny_neeko(batch.input_ids, gate=tiny_neeko.gate_for(batch.blocks),
                          labels=batch.labels).loss
        loss.backward()
        for _, layer in tiny_neeko.lora_layers():
            assert layer.trainable_A["2"].grad.abs().sum() > 0
            assert layer.trainable_BT["2"].grad.abs().sum() > 0
            assert layer.trainable_A["1"].grad.abs().sum() == 0
            assert layer.trainable_BT["1"].grad.abs().sum() == 0
            assert not layer.lora_A.requires_grad and layer.lora_A.grad is None
        base_grads = [p.grad for n, p in tiny_neeko.base_model.named_parameters()
                      if ".trainable_" not in n]
        assert base_grads and all(g is None for g in base_grads)
        assert {id(p) for p in params} == {
            id(p) for p in tiny_neeko.parameters() if p.requires_grad}


def test_mixed_training_batch_routes_rows_to_their_blocks(tiny_neeko):
    before = {n: block_snapshot(tiny_neeko, n) for n in tiny_neeko.block_names}
    train_blocks(tiny_neeko, [batch_for(["char0", "char1"], s) for s in range(3)],
                 ["char0", "char1"], lr=1e-2, weight_decay=0.1)
    for name in ("char0", "char1"):
        after = block_snapshot(tiny_neeko, name)
        changed = [not torch.equal(a, b) for a, b in zip(before[name], after, strict=True)]
        assert all(changed), f"{name} was in the batch but not trained"
    for name in ("char2", "char3"):
        assert same_block(before[name], tiny_neeko, name)


def test_training_other_blocks_keeps_old_logits_bit_identical(tiny_neeko, token_batch):
    before = all_logits(tiny_neeko, token_batch)
    train_blocks(tiny_neeko, [batch_for(["char3"] * 2, s) for s in range(3)], ["char3"],
                 lr=1e-2, weight_decay=0.1)
    after = all_logits(tiny_neeko, token_batch)
    for name in ("char0", "char1", "char2"):
        assert torch.equal(before[name], after[name])
    assert not torch.allclose(before["char3"], after["char3"])


def test_expansion_keeps_old_logits_bit_identical(tiny_neeko, token_batch):
    before = all_logits(tiny_neeko, token_batch)
    tiny_neeko.add_blocks(["newcomer"], torch.randn(1, tiny_neeko.keys.shape[1]))
    untrained = all_logits(tiny_neeko, token_batch)
    losses = train_blocks(tiny_neeko, [batch_for(["newcomer"] * 2, 7)] * 8, ["newcomer"],
                          lr=5e-3, weight_decay=0.01)
    after = all_logits(tiny_neeko, token_batch)
    assert losses[-1] < losses[0], "the new block did not learn"
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert not torch.allclose(untrained["newcomer"], after["newcomer"])


def test_removing_a_block_leaves_the_others_bit_identical(tiny_neeko, token_batch):
    before = all_logits(tiny_neeko, token_batch)
    tiny_neeko.remove_block("char1")
    after = all_logits(tiny_neeko, token_batch)
    assert tiny_neeko.block_names == ["char0", "char2", "char3"]
    assert tiny_neeko.keys.shape[0] == 3
    for name in after:
        assert torch.equal(before[name], after[name]), name
    with pytest.raises(KeyError, match="no block named 'char1'"):
        tiny_neeko.remove_block("char1")


def test_interrupted_training_leaves_blocks_unchanged(tiny_neeko):
    before = block_snapshot(tiny_neeko, "char1")

    def batches():
        yield batch_for(["char1"] * 2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_blocks(tiny_neeko, batches(), ["char1"], lr=1e-2)
    assert same_block(before, tiny_neeko, "char1")
    assert all(len(layer.trainable_A) == 0 for _, layer in tiny_neeko.lora_layers())


def test_rows_of_frozen_blocks_are_refused(tiny_neeko):
    with pytest.raises(ValueError, match="not being trained"):
        train_blocks(tiny_neeko, [batch_for(["char0", "char1"])], ["char0"])

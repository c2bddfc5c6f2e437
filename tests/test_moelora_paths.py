"""The fused sparse path agrees with the dense reference, and rows do not affect each other."""

from __future__ import annotations

import torch

from neeko_app.moelora import Gate, NeekoModel


def logits(model: NeekoModel, ids: torch.Tensor, gate: Gate | None) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, gate=gate).logits


def test_blocks_change_the_output(tiny_neeko, token_batch):
    bare = logits(tiny_neeko, token_batch, None)
    with_block = logits(tiny_neeko, token_batch, tiny_neeko.gate_for(["char1"] * 4))
    assert not torch.allclose(bare, with_block, atol=1e-4)


def test_base_row_in_gate_equals_bare_model(tiny_neeko, token_batch):
    bare = logits(tiny_neeko, token_batch, None)
    gated = logits(tiny_neeko, token_batch, tiny_neeko.gate_for([None] * 4))
    torch.testing.assert_close(gated, bare, rtol=0, atol=1e-6)


def test_one_hot_sparse_equals_dense(tiny_neeko, token_batch):
    gate = tiny_neeko.gate_for(["char0", "char3", "char1", "char3"])
    sparse = logits(tiny_neeko, token_batch, gate)
    dense = logits(tiny_neeko, token_batch, gate.with_path("dense"))
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def test_top_k_and_fusion_sparse_equal_dense(tiny_neeko, token_batch):
    roles = torch.randn(4, tiny_neeko.keys.shape[1], generator=torch.Generator().manual_seed(3))
    for top_k in (None, 2):
        gate = tiny_neeko.fusion_gate_for(roles, temperature=0.5, top_k=top_k)
        assert gate.indices.shape[1] == (top_k or tiny_neeko.num_blocks)
        torch.testing.assert_close(gate.weights.sum(-1), torch.ones(4))
        sparse = logits(tiny_neeko, token_batch, gate)
        dense = logits(tiny_neeko, token_batch, gate.with_path("dense"))
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def test_fusion_prefers_the_most_similar_block(tiny_neeko):
    role = tiny_neeko.keys[2:3] + 0.01
    gate = tiny_neeko.fusion_gate_for(role, temperature=0.05, top_k=1)
    assert gate.indices.tolist() == [[2]]


def test_mixed_batch_rows_equal_rows_run_alone(tiny_neeko, token_batch):
    names = ["char0", "char1", "char2", "char3"]
    mixed = logits(tiny_neeko, token_batch, tiny_neeko.gate_for(names))
    for row, name in enumerate(names):
        alone = logits(tiny_neeko, token_batch[row : row + 1], tiny_neeko.gate_for([name]))
        torch.testing.assert_close(mixed[row : row + 1], alone, rtol=1e-5, atol=1e-5)


def test_generate_with_mixed_gate_matches_single_rows(tiny_neeko):
    prompt = torch.tensor([[2, 40, 41, 42, 43]] * 3)
    names = ["char0", "char2", "char3"]
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    mixed = tiny_neeko.generate(prompt, gate=tiny_neeko.gate_for(names), **kwargs)
    for row, name in enumerate(names):
        alone = tiny_neeko.generate(prompt[:1], gate=tiny_neeko.gate_for([name]), **kwargs)
        assert torch.equal(mixed[row], alone[0])
    assert len({tuple(r.tolist()) for r in mixed}) > 1, "different characters, same text"


def test_gate_rows_must_match_batch(tiny_neeko, token_batch):
    import pytest

    with pytest.raises(ValueError, match="one gate row per input row"):
        logits(tiny_neeko, token_batch, tiny_neeko.gate_for(["char0"] * 3))


def test_gate_is_per_thread(tiny_neeko, token_batch):
    """Two threads with different gates at the same time each get their own character."""
    from concurrent.futures import ThreadPoolExecutor

    expected = {n: logits(tiny_neeko, token_batch, tiny_neeko.gate_for([n] * 4))
                for n in ("char0", "char1")}

    def run(name: str) -> bool:
        results = [logits(tiny_neeko, token_batch, tiny_neeko.gate_for([name] * 4))
                   for _ in range(10)]
        return all(torch.allclose(r, expected[name], atol=1e-6) for r in results)

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(run, ["char0", "char1"] * 4))

"""The fused sparse path agrees with the dense reference, and rows do not affect each other."""

from __future__ import annotations

import torch

from neeko_app.model.kv_cache import returned_cache, with_cache
from neeko_app.moelora import Gate, NeekoModel
from tests.conftest import make_tiny_neeko


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


def decode_logits(model: NeekoModel, prompt: torch.Tensor, gate: Gate | None) -> torch.Tensor:
    """Logits of two decode steps (one token per row, KV cache) after a prefill."""
    with torch.no_grad():
        out = model(prompt, gate=gate, use_cache=True)
        steps = [out.logits[:, -1]]
        for _ in range(2):
            token = out.logits[:, -1:].argmax(-1)
            out = model(token, gate=gate, use_cache=True, **with_cache(returned_cache(out)))
            steps.append(out.logits[:, -1])
        return torch.stack(steps, 1)


def decode_gates(model: NeekoModel) -> dict[str, Gate]:
    """A gate for each decode path of a 40-block model and a batch of 4 rows."""
    return {
        "uniform": model.gate_for(["char5"] * 4),
        "narrow span": model.gate_for(["char1", "char3", None, "char2"]),
        "wide span": model.gate_for(["char0", "char39", "char20", None]),
        "fusion": model.fusion_gate_for(torch.randn(4, model.keys.shape[1],
                                                    generator=torch.Generator().manual_seed(0)),
                                        top_k=3),
    }


def test_every_decode_path_equals_the_dense_reference(token_batch):
    """One character for all rows (views of one block), a narrow block range read whole,
    and a wide range gathered per row: all three agree with the dense reference, with bare
    rows mixed in."""
    model = make_tiny_neeko(num_blocks=40)
    gates = decode_gates(model)
    assert gates["uniform"].uniform_block == 5
    assert gates["narrow span"].uniform_block is None
    assert gates["wide span"].block_span == (0, 40)
    bare = decode_logits(model, token_batch, None)
    for name, gate in gates.items():
        sparse = decode_logits(model, token_batch, gate)
        dense = decode_logits(model, token_batch, gate.with_path("dense"))
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5, msg=name)
        assert not torch.allclose(sparse[0], bare[0], atol=1e-4), name
    rows = decode_logits(model, token_batch, gates["wide span"])
    torch.testing.assert_close(rows[3], bare[3], rtol=0, atol=1e-6)  # the bare row


def test_gate_derived_tensors_are_made_once_per_gate(tiny_neeko):
    gate = tiny_neeko.gate_for(["char0", None, "char2"])
    device = torch.device("cpu")
    assert gate.flat_indices(device) is gate.flat_indices(device)
    weights = gate.range_weights(gate.block_span, 4, device, torch.float32)
    assert weights is gate.range_weights((0, 3), 4, device, torch.float32)
    assert weights.shape == (3, 1, 3 * 4)
    assert weights[1].sum() == 0 and weights[0, 0, :4].tolist() == [1.0] * 4
    assert not gate.unit_weights and gate.block_span == (0, 3)


def test_generate_that_repeats_rows_repeats_their_gate_rows(tiny_neeko):
    """num_return_sequences doubles the batch inside generate(): each copy keeps its row's
    character (the repeated gate is made once per call, not once per layer)."""
    prompt = torch.tensor([[2, 40, 41, 42]] * 2)
    gate = tiny_neeko.gate_for(["char0", "char3"])
    kwargs = dict(max_new_tokens=5, do_sample=False, num_beams=2, num_return_sequences=2,
                  pad_token_id=0)
    both = tiny_neeko.generate(prompt, gate=gate, **kwargs)
    for row, name in enumerate(["char0", "char3"]):
        alone = tiny_neeko.generate(prompt[:1], gate=tiny_neeko.gate_for([name]), **kwargs)
        assert torch.equal(both[2 * row:2 * row + 2], alone)
    assert gate.for_batch(4) is gate.for_batch(4)
    assert gate.for_batch(4).indices[:, 0].tolist() == [0, 0, 3, 3]


def test_float32_blocks_in_a_bfloat16_model_take_every_path(token_batch):
    """Blocks kept in float32 inside a bfloat16 model (as a block trained in float32 would
    be): each decode path adds the rows' own products, shaped as the base output, close to
    the float32 model's."""
    model = make_tiny_neeko(num_blocks=40)
    gates = decode_gates(model)
    reference = {name: decode_logits(model, token_batch, gate) for name, gate in gates.items()}
    layers = [layer for _, layer in model.lora_layers()]
    blocks = [(layer.lora_A.clone(), layer.lora_BT.clone()) for layer in layers]
    model.to(torch.bfloat16)
    for layer, (a, bt) in zip(layers, blocks, strict=True):
        layer.lora_A, layer.lora_BT = a, bt
    for name, gate in gates.items():
        mixed = decode_logits(model, token_batch, gate)
        assert mixed.shape == reference[name].shape, name
        torch.testing.assert_close(mixed.float(), reference[name], rtol=0.05, atol=0.05,
                                   msg=name)

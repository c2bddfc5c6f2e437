"""Weights laid out for oneDNN (`PrepackedWeight`): the same products as `F.linear` (the
same bits in bfloat16), a plain fallback, and the serving paths that use them (a merged
block, a narrowed output head) give what they gave with plain weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neeko_app.model.loader import cpu_multiplies_bfloat16
from neeko_app.model.output_head import OutputHead
from neeko_app.model.prepacked import PrepackedWeight, can_prepack
from tests.conftest import make_tiny_neeko

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                  reason="this torch build has no oneDNN")
needs_bfloat16 = pytest.mark.skipif(not cpu_multiplies_bfloat16(),
                                    reason="oneDNN packs bfloat16 only where the CPU multiplies it")


def weight_and_bias(dtype: torch.dtype, out: int = 96, inp: int = 64):
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(out, inp, generator=generator).to(dtype),
            torch.randn(out, generator=generator).to(dtype))


@needs_onednn
@needs_bfloat16
@pytest.mark.parametrize("shape", [(1, 64), (2, 64), (16, 64), (2, 7, 64)])
def test_bfloat16_products_are_bit_identical(shape):
    weight, bias = weight_and_bias(torch.bfloat16)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    packed = PrepackedWeight(weight.clone())
    assert packed.packed
    assert torch.equal(packed(x, bias), F.linear(x, weight, bias))
    assert torch.equal(packed(x), F.linear(x, weight))


@needs_onednn
def test_float32_products_agree_and_a_strided_input_is_taken():
    weight, bias = weight_and_bias(torch.float32)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(2)).T  # not contiguous
    packed = PrepackedWeight(weight.clone())
    assert packed.packed and packed.nbytes == weight.nbytes
    torch.testing.assert_close(packed(x, bias), F.linear(x, weight, bias))


def test_a_weight_onednn_cannot_take_stays_plain():
    weight, bias = weight_and_bias(torch.float16)
    assert not can_prepack(weight)
    x = torch.randn(2, 64).to(torch.float16)
    for kept in (PrepackedWeight(weight), PrepackedWeight(weight_and_bias(torch.float32)[0],
                                                          packed=False)):
        assert not kept.packed
    assert torch.equal(PrepackedWeight(weight)(x, bias), F.linear(x, weight, bias))


@needs_onednn
def test_an_input_that_needs_gradients_gets_them():
    weight, _ = weight_and_bias(torch.float32)
    x = torch.randn(2, 64, requires_grad=True)
    PrepackedWeight(weight.clone())(x).sum().backward()
    torch.testing.assert_close(x.grad, weight.sum(0).expand(2, -1))


@needs_onednn
@needs_bfloat16
def test_serving_paths_give_the_same_bits_in_bfloat16(token_batch):
    """One character (merged block), several characters (the gate over the base weight)
    and the narrowed head, with plain and with prepacked weights."""
    model = make_tiny_neeko().to(torch.bfloat16)
    model.merge_single_blocks(True)
    rows = token_batch.shape[0]
    gates = {"one character": model.gate_for(["char2"] * rows),
             "several": model.gate_for(["char0", "char1", "char3", "char0"])}
    allowed = torch.rand(model.base_model.config.vocab_size,
                         generator=torch.Generator().manual_seed(5)) < 0.5
    outputs = {}
    for prepacked in (False, True):
        model.prepack_weights(prepacked)
        head = OutputHead(model.base_model, prepacked=prepacked)
        for name, gate in gates.items():
            with torch.no_grad():
                hidden = model.hidden_states(token_batch, gate=gate).last_hidden_state
            outputs[prepacked, name] = (hidden, head(hidden[:, -1], allowed))
        layers = [layer for _, layer in model.lora_layers()]
        assert all(layer._merged.weight.packed == prepacked for layer in layers)
        assert all((layer._packed_base is not None) == prepacked for layer in layers)
    for name in gates:
        assert torch.equal(outputs[True, name][0], outputs[False, name][0]), name
        assert torch.equal(outputs[True, name][1], outputs[False, name][1]), name
    logits = outputs[True, "several"][1]
    assert logits.isfinite().any() and logits.isinf().any()
    assert not torch.equal(outputs[True, "one character"][0], outputs[True, "several"][0])

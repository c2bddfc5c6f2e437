"""The output head narrowed to the tokens a batch may produce (`OutputHead`), on the tiny
model: the allowed tokens keep the logits the model's own head gives them, the others get
-inf, whichever way the head computes them."""

from __future__ import annotations

import pytest
import torch

from neeko_app.chat.scheduler import batch_vocabulary
from neeko_app.model.output_head import OutputHead
from neeko_app.moelora import Gate
from tests.conftest import make_tiny_neeko


@pytest.fixture(scope="module")
def model():
    return make_tiny_neeko(num_blocks=2)


def last_hidden_and_logits(model, gate: Gate | None = None):
    ids = torch.randint(10, 200, (3, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        hidden = model.hidden_states(ids, gate=gate).last_hidden_state[:, -1]
        logits = model(ids, gate=gate).logits[:, -1]
    return hidden, logits


def some_tokens(vocab: int, share: float, seed: int = 0) -> torch.Tensor:
    return torch.rand(vocab, generator=torch.Generator().manual_seed(seed)) < share


def test_the_whole_head_gives_the_models_own_logits(model):
    hidden, logits = last_hidden_and_logits(model, Gate.one_hot([1, 0, -1]))
    torch.testing.assert_close(OutputHead(model.base_model)(hidden), logits)


@pytest.mark.parametrize("narrow_at_most", [0.9, 0.0], ids=["narrowed", "whole-then-banned"])
def test_allowed_tokens_keep_their_logits_and_the_rest_are_banned(model, narrow_at_most):
    hidden, logits = last_hidden_and_logits(model)
    head = OutputHead(model.base_model, narrow_at_most=narrow_at_most)
    allowed = some_tokens(head.vocab, 0.4)
    got = head(hidden, allowed)
    assert got.shape == logits.shape
    torch.testing.assert_close(got[:, allowed], logits[:, allowed])
    assert torch.isneginf(got[:, ~allowed]).all()
    again = head(hidden, allowed)  # the compact copy is reused, not rebuilt wrongly
    torch.testing.assert_close(again, got)
    other = some_tokens(head.vocab, 0.3, seed=1)  # another batch's mix of scripts
    torch.testing.assert_close(head(hidden, other)[:, other], logits[:, other])


def test_a_logit_cap_applies_before_the_ban():
    model = make_tiny_neeko(num_blocks=1)
    model.base_model.config.final_logit_softcapping = 0.5  # Gemma 2 caps its logits
    hidden, logits = last_hidden_and_logits(model)
    assert logits.abs().max() <= 0.5
    head = OutputHead(model.base_model)
    allowed = some_tokens(head.vocab, 0.5)
    got = head(hidden, allowed)
    torch.testing.assert_close(got[:, allowed], logits[:, allowed])
    assert torch.isneginf(got[:, ~allowed]).all()  # not -0.5, the cap of -inf


def test_head_rows_past_the_tokenizer_stay_allowed(model):
    hidden, logits = last_hidden_and_logits(model)
    head = OutputHead(model.base_model)
    allowed = some_tokens(head.vocab - 20, 0.5)  # a head padded past the vocabulary
    got = head(hidden, allowed)
    torch.testing.assert_close(got[:, -20:], logits[:, -20:])


def test_a_batch_may_produce_what_any_of_its_rows_may():
    first = torch.tensor([True, False, False, True])  # banned tokens per row
    second = torch.tensor([True, True, False, False])
    assert batch_vocabulary([first, second]).tolist() == [False, True, True, True]
    assert batch_vocabulary([first, None]) is None  # a row without the script guard
    assert batch_vocabulary([]) is None

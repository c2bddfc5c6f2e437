"""Token choice: top-p without sorting the vocabulary keeps exactly transformers' nucleus;
the repetition controls see the reply, not the prompt."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers.generation.logits_process import TopPLogitsWarper

from neeko_app.chat.decoding import FIRST_CANDIDATES, nucleus
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.opening import OpeningTemperature


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("spread", [0.5, 3.0, 8.0])  # from near-flat to very peaked
def test_nucleus_keeps_the_tokens_transformers_keeps(top_p, spread):
    generator = torch.Generator().manual_seed(int(top_p * 1000 + spread))
    for _ in range(10):
        scores = torch.randn(1, 20_000, generator=generator) * spread
        kept_by_transformers = TopPLogitsWarper(top_p)(None, scores.clone())[0] > -float("inf")
        probs = torch.softmax(scores[0], dim=-1)
        ids, weights = nucleus(probs, top_p)
        ours, theirs = set(ids.tolist()), set(kept_by_transformers.nonzero().flatten().tolist())
        if top_p <= 0.95:
            assert ours == theirs
        else:  # ~10k tokens of ~1e-5 each: float sums may disagree on the last one or two
            differ = sorted(ours ^ theirs)
            assert len(differ) <= 2 and probs[differ].sum() < 1e-4
        assert torch.equal(weights, probs[ids])
        assert bool((weights[:-1] >= weights[1:]).all())  # best first


def test_a_wide_nucleus_widens_the_candidates_past_the_first_look():
    probs = torch.full((10_000,), 1e-4)  # flat: the nucleus needs 9,000 tokens
    ids, _ = nucleus(probs, 0.9)
    assert len(ids) > 4 * FIRST_CANDIDATES
    assert len(nucleus(probs, 1.0)[0]) == 10_000
    peaked = torch.zeros(100)
    peaked[7] = 1.0
    assert nucleus(peaked, 0.9)[0].tolist() == [7]


def _greedy_choice(settings: DecodingSettings, prompt: list[int], generated: list[int],
                   scores: torch.Tensor) -> int:
    """The greedy token under `settings`' repetition rules (these ids have no text: no
    script guard)."""
    processors = replace(settings, script_guard=False).logits_processors(prompt, None)
    ids = torch.tensor([prompt + generated])
    return int(processors(ids, scores.clone().unsqueeze(0))[0].argmax())


def test_repetition_penalty_leaves_the_prompt_words_free_and_penalises_the_reply():
    settings = DecodingSettings(temperature=0, repetition_penalty=2.0, no_repeat_ngram_size=0)
    scores = torch.zeros(10)
    scores[3], scores[4] = 2.0, 1.5  # token 3 is the model's choice, 4 the runner-up
    # token 3 is in the prompt (the user's word, a name in a memory note): still chosen
    assert _greedy_choice(settings, [1, 3, 2], [], scores) == 3
    # once the reply itself has said it, the penalty (2.0 / 2 < 1.5) picks the runner-up
    assert _greedy_choice(settings, [1, 3, 2], [3], scores) == 4


def test_no_repeat_ngrams_are_counted_within_the_reply_only():
    settings = DecodingSettings(temperature=0, repetition_penalty=1.0, no_repeat_ngram_size=3)
    scores = torch.zeros(10)
    scores[7] = 1.0
    # "5 6 7" is in the prompt (a fact in a note): the reply may copy it
    assert _greedy_choice(settings, [5, 6, 7, 0], [5, 6], scores) == 7
    # the reply already said "5 6 7": saying it again is banned
    assert _greedy_choice(settings, [0], [5, 6, 7, 1, 5, 6], scores) != 7



def test_the_reply_may_not_echo_a_long_run_of_the_prompt():
    settings = DecodingSettings(temperature=0, repetition_penalty=1.0, no_repeat_ngram_size=0,
                                no_prompt_echo=4)
    scores = torch.zeros(10)
    scores[8] = 1.0
    prompt = [1, 5, 6, 8, 2]  # "5 6 8" is a run of the prompt
    # three tokens of the prompt in a row are allowed (4 would be an echo)
    assert _greedy_choice(settings, prompt, [5, 6], scores) == 8
    # "1 5 6 8" would repeat four prompt tokens in a row: banned
    assert _greedy_choice(settings, prompt, [1, 5, 6], scores) != 8
    # the same run met in the reply alone is not the prompt's business
    assert _greedy_choice(DecodingSettings(temperature=0, repetition_penalty=1.0,
                                           no_repeat_ngram_size=0, no_prompt_echo=0),
                          prompt, [1, 5, 6], scores) == 8


def test_the_memory_notes_may_be_copied_at_any_length():
    """A note's name and date run past the echo limit (digits are one token each): the
    guard spares the notes' tokens, and only those."""
    settings = DecodingSettings(temperature=0, repetition_penalty=1.0, no_repeat_ngram_size=0,
                                no_prompt_echo=4)
    scores = torch.zeros(10)
    scores[8] = 1.0
    prompt = [1, 5, 6, 8, 2, 3, 4, 9]  # header, then a note
    processors = settings.penalties(len(prompt), quotable=[1, 5, 6, 8])
    sequence = torch.tensor([prompt + [1, 5, 6]])
    assert int(processors(sequence, scores[None].clone())[0].argmax()) == 8
    other = settings.penalties(len(prompt), quotable=[2, 3, 4, 9])
    assert int(other(sequence, scores[None].clone())[0].argmax()) != 8


class WordTokenizer:
    """Token i decodes to WORDS[i]."""

    WORDS = ["<p>", "The", " Rubicon", ".", " It", " was", " cold", "\n", " Dr", "!"]

    def decode(self, ids, skip_special_tokens=True) -> str:
        return "".join(self.WORDS[int(i)] for i in ids)


@pytest.mark.parametrize("reply, opened", [
    ([], False), ([1, 2], False), ([1, 2, 3], False),  # the full stop alone: not yet
    ([1, 2, 3, 4], True), ([1, 7], False), ([1, 7, 4], True), ([8, 3, 4], False),
    ([1, 9, 4], True), ([1, 9, 5], False),  # a small letter after the stop goes on
])
def test_the_opening_temperature_holds_until_the_first_sentence_has_ended(reply, opened):
    processor = OpeningTemperature(0.25, 1.0, prompt_length=1, tokenizer=WordTokenizer())
    scores = torch.ones(1, 10)
    out = processor(torch.tensor([[0, *reply]]), scores)
    assert torch.equal(out, scores if opened else scores * 4)


def test_each_row_leaves_its_opening_on_its_own_and_stays_out():
    processor = OpeningTemperature(0.5, 0.8, prompt_length=1, tokenizer=WordTokenizer())
    out = processor(torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 5, 6]]), torch.ones(2, 10))
    assert torch.allclose(out[:, 0], torch.tensor([1 / 0.8, 1 / 0.5]))
    later = processor(torch.tensor([[0, 1], [0, 1]]), torch.ones(2, 10))  # row 0 stays opened
    assert torch.allclose(later[:, 0], torch.tensor([1 / 0.8, 1 / 0.5]))


def test_the_opening_temperature_applies_only_when_cooler_than_the_temperature():
    def warpers(**settings) -> list[str]:
        chosen = DecodingSettings(script_guard=False, **settings)
        return [type(p).__name__ for p in chosen.logits_processors([0, 1], WordTokenizer())
                if "Temperature" in type(p).__name__]

    assert warpers(temperature=0.7, opening_temperature=0.3) == ["OpeningTemperature"]
    assert warpers(temperature=0.7, opening_temperature=0) == ["TemperatureLogitsWarper"]
    assert warpers(temperature=0.2, opening_temperature=0.3) == ["TemperatureLogitsWarper"]
    assert warpers(temperature=0, opening_temperature=0.3) == []

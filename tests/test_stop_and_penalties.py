"""Stop strings and OpenAI's frequency/presence penalties in the decoder: a row's text ends
before its first stop string (a tail that may start one waits), the penalties follow
OpenAI's formula over the reply's tokens, and each batch row keeps its own."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from neeko_app.chat.decoding import RowDecoder, held_back, stop_position
from neeko_app.chat.generation import CountPenalties, DecodingSettings
from neeko_app.chat.scheduler import BatchScheduler
from tests.conftest import make_tiny_neeko
from tests.test_chat_scheduler import request

GREEDY = DecodingSettings(max_new_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def model():
    return make_tiny_neeko(num_blocks=4)


def test_the_first_stop_string_wins_and_a_possible_start_is_held_back():
    assert stop_position("one. two! three", ("!", ".")) == 3
    assert stop_position("one two", ("!",)) is None
    assert held_back("say hel", ("hello",)) == 3
    assert held_back("say hello", ("hello",)) == 0  # whole: found by stop_position instead
    assert held_back("a\nUs", ("\nUser:", "s!")) == 3  # the longest candidate counts
    assert held_back("abc", ()) == 0


def forced(row: RowDecoder, token: int, vocab: int) -> str:
    """Make `row` choose `token`, and return the text it hands out for it."""
    row.choose(torch.zeros(vocab).index_fill_(0, torch.tensor([token]), 10.0))
    return row.new_text()


def test_a_stop_string_across_tokens_ends_the_row_and_a_false_start_is_released(model):
    tokenizer = model.tokenizer
    text = "Yes. Then we go.\nUser: and you?"
    tokens = tokenizer(text, add_special_tokens=False).input_ids
    settings = DecodingSettings(max_new_tokens=64, temperature=0, repetition_penalty=1.0,
                                no_repeat_ngram_size=0, stop_strings=("\nUser:", ". T!"),
                                max_sentences=0)
    row = RowDecoder(tokenizer, [2, 50], settings, [])
    pieces = []
    for token in tokens:
        pieces.append(forced(row, token, len(tokenizer)))
        if row.finish_reason is not None:
            break
    assert row.finish_reason == "stop" and "".join(pieces) == "Yes. Then we go."
    assert row.generated == tokens[:len(pieces)]  # it stopped at the stop string
    assert pieces[tokens.index(tokenizer(".", add_special_tokens=False).input_ids[0])] == ""
    # "." could begin ". T!" and waited; it went out with the next piece, which ruled it out


def test_a_possible_start_at_the_length_cap_is_handed_out(model):
    tokenizer = model.tokenizer
    tokens = tokenizer("Well.", add_special_tokens=False).input_ids
    settings = DecodingSettings(max_new_tokens=len(tokens), temperature=0,
                                repetition_penalty=1.0, no_repeat_ngram_size=0,
                                stop_strings=(".\nUser",))
    row = RowDecoder(tokenizer, [2, 50], settings, [])
    text = "".join(forced(row, token, len(tokenizer)) for token in tokens)
    assert row.finish_reason == "length" and text == "Well."


def test_count_penalties_follow_openais_formula():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    used = torch.tensor([[2, 2, 2, 1]])  # token 2 three times, token 1 once
    penalised = CountPenalties(frequency=0.5, presence=0.25)(used, scores.clone())
    assert penalised.tolist() == [[1.0, 1.0 - 0.5 - 0.25, 1.0 - 1.5 - 0.25, 1.0]]
    favoured = CountPenalties(frequency=-1.0, presence=0.0)(used, scores.clone())
    assert favoured.tolist() == [[1.0, 2.0, 4.0, 1.0]]
    assert CountPenalties(1.0, 1.0)(used[:, :0], scores.clone()).tolist() == scores.tolist()


def test_count_penalties_see_the_reply_not_the_prompt():
    settings = DecodingSettings(temperature=0, repetition_penalty=1.0, no_repeat_ngram_size=0,
                                no_prompt_echo=0, presence_penalty=2.0)
    processors = settings.penalties(prompt_length=3)
    scores = torch.zeros(1, 6)
    scores[0, 4] = 1.0
    assert int(processors(torch.tensor([[4, 4, 4]]), scores.clone()).argmax()) == 4
    assert int(processors(torch.tensor([[4, 4, 4, 4]]), scores.clone()).argmax()) != 4


def test_each_batch_row_keeps_its_own_penalties_and_stop_strings(model):
    def alone(settings: DecodingSettings) -> str:
        scheduler = BatchScheduler(model, model.tokenizer, window_s=0, stop_ids=[])
        try:
            return "".join(scheduler.submit(request(model, 1, None, settings)))
        finally:
            scheduler.close()

    plain = DecodingSettings(max_new_tokens=12, temperature=0, repetition_penalty=1.0,
                             no_repeat_ngram_size=0)
    penalised = replace(plain, frequency_penalty=2.0)
    base_text, penalised_text = alone(plain), alone(penalised)
    assert penalised_text != base_text, "a strong frequency penalty changes the reply"
    stop = penalised_text[3:5]
    variants = [plain, penalised, replace(plain, presence_penalty=-2.0),
                replace(penalised, stop_strings=(stop,))]
    expected = [base_text, penalised_text, *(alone(s) for s in variants[2:])]
    assert expected[3] == penalised_text[:penalised_text.find(stop)] and expected[3]
    scheduler = BatchScheduler(model, model.tokenizer, max_batch=4, window_s=0, stop_ids=[])
    try:
        streams = scheduler.submit_many([request(model, 1, None, s) for s in variants])
        texts = ["".join(stream) for stream in streams]
    finally:
        scheduler.close()
    assert scheduler.stats.batch_sizes == [4]
    assert texts == expected
    assert [s.finish_reason for s in streams] == ["length", "length", "length", "stop"]

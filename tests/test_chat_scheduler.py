"""Batching scheduler on the tiny model: mixed-character batches, no cross-talk between rows."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from neeko_app.chat import writing_systems
from neeko_app.chat.decoding import RowDecoder
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn, render_prompt
from neeko_app.chat.scheduler import BatchScheduler, GenerationRequest, gate_row
from neeko_app.moelora import Gate
from tests.conftest import make_tiny_neeko
from tests.reference_generation import generate_kwargs, stream_reply

GREEDY = DecodingSettings(max_new_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def model():
    return make_tiny_neeko(num_blocks=4)


def prompt(i: int) -> str:
    return render_prompt(f"You are character {i}.", [Turn("user", "tell me " * (i * 3 + 1))])


def request(model, i: int, gate: Gate | None, settings: DecodingSettings) -> GenerationRequest:
    ids = model.tokenizer(prompt(i), add_special_tokens=False).input_ids
    return GenerationRequest(tuple(ids), gate_row(gate), settings)


def mixed_gates(model) -> list[Gate | None]:
    """Own blocks, a top-2 fusion, a full-softmax fusion, and the bare base model."""
    role = torch.randn(1, model.keys.shape[1], generator=torch.Generator().manual_seed(3))
    return [*(Gate.one_hot([b]) for b in range(4)), Gate.from_rows([([0, 2], [0.7, 0.3])]),
            model.fusion_gate_for(role), None, Gate.one_hot([3])]


def test_mixed_batch_is_one_batch_and_each_row_equals_generating_it_alone(model):
    gates = mixed_gates(model)
    settings = [DecodingSettings(max_new_tokens=5 + i, temperature=0) for i in range(8)]
    scheduler = BatchScheduler(model, model.tokenizer, max_batch=8, window_s=0)
    try:
        streams = scheduler.submit_many(
            [request(model, i, g, s) for i, (g, s) in enumerate(zip(gates, settings, strict=True))])
        texts = ["".join(stream) for stream in streams]
    finally:
        scheduler.close()
    assert scheduler.stats.batches == 1 and scheduler.stats.batch_sizes == [8]
    steps = [s.completion_tokens + (s.finish_reason == "stop") for s in streams]
    assert scheduler.stats.forward_passes == max(steps)  # one pass per step for all rows
    for i, (stream, gate, setting) in enumerate(zip(streams, gates, settings, strict=True)):
        # reference: transformers' own generate() for this request alone
        alone = "".join(stream_reply(model, model.tokenizer, prompt(i), gate, setting))
        assert texts[i] == alone == stream.text, f"row {i} differs from its solo generation"
        assert stream.finish_reason in ("stop", "length")
        if stream.finish_reason == "length":
            assert stream.completion_tokens == setting.max_new_tokens
    assert len(set(texts)) > 4  # the characters really differ


def test_rows_stop_on_their_own_end_token_and_leave_the_batch(model):
    requests = [request(model, i, g, GREEDY) for i, g in enumerate(mixed_gates(model)[:4])]
    # row 0's tokens when nothing stops it (transformers' generate, no end token)
    prompt_ids = torch.tensor([requests[0].prompt_ids])
    ids = model.generate(prompt_ids, gate=Gate.one_hot([0]), eos_token_id=[],
                         pad_token_id=0,
                         **generate_kwargs(GREEDY, prompt_ids.shape[1]))[0, prompt_ids.shape[1]:]
    ids = ids.tolist()
    # the latest token that appears there for the first time (a random model may repeat)
    position = max(i for i in range(len(ids)) if ids[i] not in ids[:i])
    stop = ids[position]  # make row 0 meet an end token as its (position+1)-th token

    scheduler = BatchScheduler(model, model.tokenizer, window_s=0, stop_ids=[stop])
    try:
        batched = scheduler.submit_many(requests)
        texts = ["".join(stream) for stream in batched]
        alone = ["".join(scheduler.submit(r)) for r in requests]
    finally:
        scheduler.close()
    assert batched[0].finish_reason == "stop" and batched[0].completion_tokens == position
    assert texts[0] == model.tokenizer.decode(ids[:position])
    assert texts == alone
    assert [s.finish_reason for s in batched[1:]].count("length") >= 1


def test_seeded_sampling_does_not_depend_on_the_batch(model):
    sampled = DecodingSettings(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=7)
    scheduler = BatchScheduler(model, model.tokenizer, window_s=0)
    try:
        together = scheduler.submit_many([request(model, i, Gate.one_hot([i]), sampled)
                                          for i in range(3)])
        texts = ["".join(stream) for stream in together]
        alone = "".join(scheduler.submit(request(model, 1, Gate.one_hot([1]), sampled)))
    finally:
        scheduler.close()
    assert texts[1] == alone


def test_a_cancelled_request_stops_without_disturbing_its_batch(model):
    long = DecodingSettings(max_new_tokens=200, temperature=0)
    scheduler = BatchScheduler(model, model.tokenizer, window_s=0)
    try:
        stopped, kept = scheduler.submit_many([request(model, 1, Gate.one_hot([1]), long),
                                               request(model, 2, Gate.one_hot([2]), GREEDY)])
        pieces = iter(stopped)
        next(pieces)
        assert scheduler.in_flight() >= 1  # the long one at least is being generated
        stopped.cancel()
        list(pieces)
        kept_text = "".join(kept)
        alone = "".join(scheduler.submit(request(model, 2, Gate.one_hot([2]), GREEDY)))
        deadline = time.monotonic() + 5
        while scheduler.in_flight() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.in_flight() == 0  # no slot held by the cancelled request
    finally:
        scheduler.close()
    assert stopped.finish_reason == "cancelled" and stopped.completion_tokens < 200
    assert kept_text == alone


def test_a_failing_batch_reports_to_its_requests_and_the_next_batch_runs(model):
    scheduler = BatchScheduler(model, model.tokenizer, window_s=0)
    try:
        broken = scheduler.submit(GenerationRequest((2, 50, 60), ((99,), (1.0,)), GREEDY))
        with pytest.raises((IndexError, RuntimeError)):
            list(broken)
        assert "".join(scheduler.submit(request(model, 0, None, GREEDY)))
    finally:
        scheduler.close()
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit(request(model, 0, None, GREEDY))


def test_row_decoder_holds_partial_characters_and_hides_the_stop_token(model):
    tokenizer = model.tokenizer
    stop = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    row = RowDecoder(tokenizer, [2, 50], GREEDY, [stop])
    vocab = len(tokenizer)

    def logits_for(token: int) -> torch.Tensor:
        return torch.zeros(vocab).index_fill_(0, torch.tensor([token]), 10.0)

    first, second = tokenizer("é", add_special_tokens=False).input_ids  # two UTF-8 bytes
    row.choose(logits_for(first))
    assert row.new_text() == ""  # half a character is held back
    row.choose(logits_for(second))
    assert row.new_text() == "é"
    row.choose(logits_for(stop))
    assert row.finish_reason == "stop" and row.generated == [first, second]
    assert row.new_text() == ""


def test_decoding_hands_over_the_cache_without_a_deprecation_warning(model):
    """transformers 5 warns (into every chat) when the cache goes by its old name."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(handler)
    logging.Logger.warning_once.cache_clear()  # a warning given once before is given again
    scheduler = BatchScheduler(model, model.tokenizer, window_s=0)
    try:
        stream = scheduler.submit(request(model, 0, Gate.one_hot([1]), GREEDY))
        "".join(stream)
    finally:
        scheduler.close()
        library_logger.removeHandler(handler)
    assert stream.completion_tokens > 1  # the cache was used for at least one decode step
    assert not [r.getMessage() for r in records if "deprecated" in r.getMessage()]


def test_a_head_narrowed_to_the_allowed_tokens_streams_what_the_whole_head_streams(
        model, monkeypatch):
    banned = torch.zeros(len(model.tokenizer), dtype=torch.bool)
    banned[10::2] = True  # half the byte tokens, as if of a script the prompt does not use
    monkeypatch.setattr(writing_systems, "_foreign_mask", lambda tokenizer, allowed: banned)
    gates = mixed_gates(model)

    def texts(narrow_at_most: float) -> list[str]:
        scheduler = BatchScheduler(model, model.tokenizer, max_batch=8, window_s=0)
        scheduler.head.narrow_at_most = narrow_at_most
        try:
            streams = scheduler.submit_many([request(model, i, g, GREEDY)
                                             for i, g in enumerate(gates)])
            replies = ["".join(stream) for stream in streams]
        finally:
            scheduler.close()
        assert len(scheduler.head._narrow) == (narrow_at_most > 0)  # the path under test
        return replies

    narrowed = texts(0.9)
    assert narrowed == texts(0.0)  # the whole head, the banned tokens then set to -inf
    assert any(narrowed)
    for text in narrowed:  # byte tokens: the text's tokens are the ones generated
        assert not banned[model.tokenizer(text, add_special_tokens=False).input_ids].any()

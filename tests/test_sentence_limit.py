"""The sentence limit: a reply ends after its N-th sentence, read while it is written; what
was streamed is exactly what is kept, in the app's decoder and from a remote model server;
an API request sets its own limit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest
import torch

from neeko_app.api.fields import decoding
from neeko_app.api.schemas import ChatCompletionRequest
from neeko_app.chat.decoding import RowDecoder
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.remote import RemoteScheduler
from neeko_app.chat.scheduler import GenerationRequest
from neeko_app.chat.sentences import SentenceLimit, cut_after_sentences, sentence_ends
from tests.conftest import make_tiny_neeko


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_neeko(num_blocks=2).tokenizer


def ended(text: str) -> list[str]:
    return [text[:end] for end in sentence_ends(text)]


def test_a_sentence_ends_only_once_the_next_one_has_begun():
    assert ended("Tuberculosis, in 1815.") == []
    assert ended("Tuberculosis, in 1815. ") == []  # the next word may still be "in" or "84"
    assert ended("Tuberculosis, in 1815. He") == ["Tuberculosis, in 1815."]
    assert ended("A symphony? They asked! Yes… so") == ["A symphony?", "A symphony? They asked!"]


def test_numbers_small_letters_and_abbreviations_do_not_end_a_sentence():
    assert ended("I wrote Op. 84 for him. Then") == ["I wrote Op. 84 for him."]
    assert ended("Visit St. Paul and Mr. Hooke. Then") == ["Visit St. Paul and Mr. Hooke."]
    assert ended("No. I refuse. Go") == ["No.", "No. I refuse."]  # "No. 5" has its digit
    assert ended("Symphony No. 9 is done. Then") == ["Symphony No. 9 is done."]
    assert ended("I admire J. S. Bach and M. Crassus. I") == [
        "I admire J. S. Bach and M. Crassus."]
    assert ended('"Yes!" he said. And') == ['"Yes!" he said.']
    assert ended("Well… perhaps not.\" She") == ["Well… perhaps not.\""]


def test_a_line_break_ends_a_sentence_even_without_a_stop():
    assert ended("A list\n\nAnd more") == ["A list"]
    assert ended("\n\nLeading breaks. Then") == ["\n\nLeading breaks."]  # no empty sentence


def test_the_cut_comes_after_the_limit_once_another_sentence_begins():
    text = "Cassel, in 1808. I wrote Op. 84 for him. He"
    assert cut_after_sentences(text, 1) == len("Cassel, in 1808.")
    assert cut_after_sentences(text, 2) == len("Cassel, in 1808. I wrote Op. 84 for him.")
    assert cut_after_sentences(text, 3) is None


def stream(tokenizer, text: str, settings: DecodingSettings) -> tuple[list[str], RowDecoder]:
    """Force `text`'s tokens through a row; the pieces it hands out, and the row."""
    row = RowDecoder(tokenizer, [2, 50], settings, [])
    pieces = []
    for token in tokenizer(text, add_special_tokens=False).input_ids:
        row.choose(torch.zeros(len(tokenizer)).index_fill_(0, torch.tensor([token]), 10.0))
        pieces.append(row.new_text())
        if row.finish_reason is not None:
            break
    return pieces, row


@pytest.mark.parametrize("limit, kept", [(1, "Cassel, in 1808."),
                                          (2, "Cassel, in 1808. I wrote Op. 84 for him.")])
def test_the_row_stops_at_the_limit_and_streams_no_more_than_it_keeps(tokenizer, limit, kept):
    settings = DecodingSettings(max_new_tokens=64, temperature=0, repetition_penalty=1.0,
                                no_repeat_ngram_size=0, max_sentences=limit)
    pieces, row = stream(tokenizer, "Cassel, in 1808. I wrote Op. 84 for him. He was kind.",
                         settings)
    assert row.finish_reason == "stop"
    assert row.text == kept and "".join(pieces) == kept


def test_without_a_limit_the_whole_reply_comes(tokenizer):
    settings = DecodingSettings(max_new_tokens=64, temperature=0, repetition_penalty=1.0,
                                no_repeat_ngram_size=0, max_sentences=0)
    text = "Cassel, in 1808. I wrote Op. 84 for him. He was kind."
    pieces, row = stream(tokenizer, text, settings)
    assert row.finish_reason is None and "".join(pieces) == text


def test_a_stream_of_pieces_is_cut_where_the_decoder_would_cut_it():
    limit = SentenceLimit(1)
    pieces = ["Cassel, in", " 1808.", " ", "He", " was kind."]
    handed = []
    for piece in pieces:
        text, ended = limit.take(piece)
        handed.append(text)
        if ended:
            break
    assert handed == ["Cassel, in", " 1808.", "", ""] and ended
    assert "".join(handed) == cut("".join(pieces), 1)
    assert SentenceLimit(0).take(" any. Thing") == (" any. Thing", False)


def cut(text: str, limit: int) -> str:
    return text[:cut_after_sentences(text, limit)]


def test_the_remote_backend_closes_the_reply_at_the_sentence_limit():
    """A model server (vLLM) knows no sentence limit: the app cuts its stream."""
    pieces = ["Cassel, in", " 1808.", " He", " was kind.", " Then"]
    events = [f"data: {json.dumps({'choices': [{'text': p, 'finish_reason': None}]})}"
              for p in pieces] + ["data: [DONE]"]
    sent = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, text="\n\n".join(events) + "\n\n")

    remote = RemoteScheduler("http://model-server/v1", [1])
    remote._client = httpx.Client(base_url=remote.base_url, transport=httpx.MockTransport(server))
    try:
        answers = {}
        for limit in (1, 0):
            settings = DecodingSettings(max_new_tokens=32, temperature=0, max_sentences=limit)
            stream = remote.submit(GenerationRequest((2, 3), (), settings, "ada", ()))
            answers[limit] = ("".join(stream), stream.finish_reason)
    finally:
        remote.close()
    assert answers[1] == ("Cassel, in 1808.", "stop")
    assert answers[0] == ("".join(pieces), "stop")
    assert sent[0]["max_tokens"] == 32


def test_an_api_request_sets_its_own_sentence_limit():
    engine = SimpleNamespace(decoding=DecodingSettings(), context_tokens=2048,
                             max_reply_tokens=512)
    message = [{"role": "user", "content": "Hi"}]
    asked = ChatCompletionRequest(model="ada", messages=message, max_sentences=3)
    unlimited = ChatCompletionRequest(model="ada", messages=message, max_sentences=0)
    default = ChatCompletionRequest(model="ada", messages=message)
    assert decoding(engine, asked).max_sentences == 3
    assert decoding(engine, unlimited).max_sentences == 0
    engine.decoding = DecodingSettings(max_sentences=2)  # the server's own default
    assert decoding(engine, default).max_sentences == 2

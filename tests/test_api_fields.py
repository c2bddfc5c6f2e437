"""The API honours what clients send: `stop` (streamed too, across chunks), OpenAI's
penalties, and every other field either honoured, refused with a 400, or accepted without
effect as docs/how-it-works.md lists; SillyTavern's request bodies go through."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

from neeko_app.api import create_app
from neeko_app.api.schemas import ChatMessage, conversation
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.remote import RemoteScheduler
from neeko_app.chat.scheduler import GenerationRequest
from neeko_app.memory import KnowledgeChunk
from tests.test_api import (  # noqa: F401  (fixtures)
    DECODING,
    KEY,
    RecordingMemory,
    client,
    endless_scheduler,
    engine,
    http,
    post,
    user,
)

HI = [{"role": "user", "content": "Hi"}]
CAPTURED = Path(__file__).parent / "data" / "sillytavern_request.json"


def ask(client: openai.OpenAI, stream: bool = False, max_tokens: int = 16,  # noqa: F811
        **fields: object) -> tuple[list[str], str]:
    """(the reply's content pieces, finish reason) of a greedy reply of Ada to "Hi"."""
    if not stream:
        choice = client.chat.completions.create(model="ada", messages=HI, temperature=0,
                                                max_tokens=max_tokens, **fields).choices[0]
        return [choice.message.content], choice.finish_reason
    chunks = [c.choices[0] for c in client.chat.completions.create(
        model="ada", messages=HI, temperature=0, max_tokens=max_tokens, stream=True,
        **fields)]
    return [c.delta.content for c in chunks if c.delta.content], chunks[-1].finish_reason


def spanning_stop(pieces: list[str]) -> tuple[str, int]:
    """A three-character stop string across a boundary between streamed pieces, first seen
    there and after some text; (it, where it starts)."""
    text = "".join(pieces)
    for end in itertools.accumulate(len(piece) for piece in pieces[:-1]):
        stop = text[end - 2:end + 1]
        if end >= 3 and len(stop) == 3 and text.find(stop) == end - 2:
            return stop, end - 2
    raise AssertionError(f"no stop string spans two pieces of {pieces!r}")


def test_stop_ends_the_reply_before_the_stop_string_streamed_or_not(client):  # noqa: F811
    pieces, reason = ask(client, stream=True)
    text = "".join(pieces)
    assert reason == "length" and len(pieces) > 4  # this tiny model never ends a reply
    stop, start = spanning_stop(pieces)
    expected = text[:start]

    whole, reason = ask(client, stop=[stop, "never said"])
    assert whole == [expected] and reason == "stop"
    streamed, reason = ask(client, stream=True, stop=stop)
    assert "".join(streamed) == expected and reason == "stop"

    # a reply cut by the length cap right after what may start a stop string: held back,
    # then handed out at the end
    shorter = "".join(ask(client, stream=True, max_tokens=10)[0])
    assert shorter[-1].isalpha()
    unmatched, reason = ask(client, stream=True, max_tokens=10, stop=[shorter[-1] + "\u2603"])
    assert "".join(unmatched) == shorter and reason == "length"


def test_frequency_and_presence_penalties_change_the_reply(client):  # noqa: F811
    [plain], _ = ask(client)
    assert ask(client, frequency_penalty=0.0, presence_penalty=0.0)[0] == [plain]
    [frequent], _ = ask(client, frequency_penalty=2.0)
    [present], _ = ask(client, presence_penalty=2.0)
    [favoured], _ = ask(client, frequency_penalty=-2.0)
    assert plain not in (frequent, present, favoured), (plain, frequent, present, favoured)
    # the server's own repetition controls (on by default) may be turned off per request
    [unguarded], _ = ask(client, extra_body={"repetition_penalty": 1.0, "no_repeat_ngram_size": 0})
    assert unguarded != plain


class OneNoteMemory(RecordingMemory):
    """Memory that finds one knowledge note for every message."""

    def search_knowledge(self, *args, **kwargs):
        return [KnowledgeChunk("Ada's engine was drawn by Babbage in Marylebone.", "fact")]


def replies_beside_a_note(served: ChatEngine, field: str, values: tuple[float, float],
                          **fixed) -> tuple[dict[float, str], ChatEngine]:
    """Greedy replies with one memory note for each value of the request field `field`
    (`fixed`: other fields), on `served`'s runtime; a negative value must be refused. Also
    the engine used."""
    noted = ChatEngine(served.runtime, OneNoteMemory(), DECODING,
                       scheduler=endless_scheduler(served.runtime))
    try:
        http = TestClient(create_app(noted))
        replies = {}
        for value in values:
            body = {"model": "ada", "messages": user(), "temperature": 0, "max_tokens": 6,
                    field: value, **fixed}
            response = post(http, body)
            assert response.status_code == 200, response.text
            replies[value] = response.json()["choices"][0]["message"]["content"]
        assert post(http, {"model": "ada", "messages": user(), field: -1}).status_code == 400
    finally:
        noted.close()
    return replies, noted


def test_copy_bias_is_set_per_request_and_favours_the_notes_names(engine):  # noqa: F811
    replies, _ = replies_beside_a_note(engine, "copy_bias", (0.0, 10.0))
    assert replies[0.0] != replies[10.0]
    # the tiny model spells letter by letter: a strong bias starts a note name, then goes on
    assert replies[10.0][:2] in ("Ba", "Ma"), replies


def test_note_contrast_is_set_per_request_and_changes_a_reply_with_notes(engine):  # noqa: F811
    replies, noted = replies_beside_a_note(engine, "note_contrast", (0.0, 3.0), copy_bias=0)
    assert noted.scheduler.stats.batch_sizes == [1, 1]  # the hidden row is no request
    assert replies[0.0] != replies[3.0]


def test_every_field_sillytavern_sends_is_accepted(http):  # noqa: F811
    """The body SillyTavern's "Custom (OpenAI-compatible)" source builds, every optional
    field set the way its settings can set it (src/endpoints/backends/chat-completions.js)."""
    body = {
        "messages": [
            {"role": "system", "content": "Write Ada's next reply in a fictional chat."},
            {"role": "system", "name": "example_user", "content": "What do you do?"},
            {"role": "system", "name": "example_assistant", "content": "I compute."},
            {"role": "system", "content": "[Start a new Chat]"},
            {"role": "assistant", "content": "Good evening."},
            {"role": "user", "content": "Hi"}],
        "model": "ada", "temperature": 1, "max_tokens": 300, "stream": False,
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "top_p": 1, "top_k": 40,
        "stop": ["\nUser:", "\nAda:"], "logit_bias": {}, "seed": 7, "n": 1,
        "logprobs": False, "reasoning_effort": "medium", "tool_choice": "auto",
    }
    response = post(http, body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_null_fields_mean_the_defaults(http, client):  # noqa: F811
    nulls = dict.fromkeys(["stream", "n", "stop", "temperature", "top_p", "max_tokens", "seed",
                           "frequency_penalty", "presence_penalty", "logprobs", "tools",
                           "response_format", "user"])
    response = post(http, {"model": "ada", "messages": HI, **nulls, "temperature": 0,
                           "max_tokens": 16})
    assert response.status_code == 200, response.text
    assert [response.json()["choices"][0]["message"]["content"]] == ask(client)[0]


@pytest.mark.skipif(not CAPTURED.is_file(), reason="no SillyTavern request captured yet")
def test_sillytavern_captured_request_is_accepted(http):  # noqa: F811
    body = json.loads(CAPTURED.read_text())
    body["model"] = "ada"  # the captured one names a character of the interop run
    response = post(http, body)
    assert response.status_code == 200, response.text


def test_message_names_reach_the_prompt_as_speakers():
    instructions, turns = conversation([
        ChatMessage(role="system", content="Rules."),
        ChatMessage(role="system", name="example_user", content="Hello?"),
        ChatMessage(role="user", name="Tom", content="Hi")])
    assert instructions == "Rules.\n\nexample_user: Hello?"
    assert turns[0].text == "Tom: Hi"


@pytest.mark.parametrize(("fields", "code", "message"), [
    ({"stop": ["a", "b", "c", "d", "e"]}, "invalid_stop", "at most 4 strings, got 5"),
    ({"stop": ""}, "invalid_stop", "must not be empty"),
    ({"stop": ["a", ""]}, "invalid_stop", "must not be empty"),
    ({"stop": [1]}, "invalid_request", "stop"),
    ({"frequency_penalty": 2.5}, "invalid_request", "frequency_penalty"),
    ({"presence_penalty": -3}, "invalid_request", "presence_penalty"),
    ({"top_k": -2}, "invalid_request", "top_k"),
    ({"max_sentences": -1}, "invalid_request", "max_sentences"),
    ({"max_sentences": 1.5}, "invalid_request", "max_sentences"),
    ({"n": 2}, "invalid_n", "n=1"),
    ({"logprobs": True}, "unsupported_parameter", "log-probabilities are not returned"),
    ({"top_logprobs": 5}, "unsupported_parameter", "log-probabilities"),
    ({"logit_bias": {"42": 5}}, "unsupported_parameter", "logit_bias"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "unsupported_parameter",
     "tool and function calls are not supported"),
    ({"tool_choice": "required"}, "unsupported_parameter", "tool_choice='required'"),
    ({"response_format": {"type": "json_object"}}, "unsupported_parameter", "only text"),
    ({"modalities": ["text", "audio"]}, "unsupported_parameter", "only text"),
    ({"web_search_options": {}}, "unsupported_parameter", "cannot search the web"),
    ({"audio": {}}, "unsupported_parameter", "only text"),
    ({"verbosity": "low"}, "unsupported_parameter", "max_tokens"),
    ({"min_p": 0.1}, "invalid_request", "min_p: unrecognized field"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]},
     "unsupported_content", "'image_url' part"),
])
def test_what_cannot_be_honoured_is_refused_clearly(http, fields, code, message):  # noqa: F811
    response = post(http, {"model": "ada", "messages": user(), **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"], error


def test_the_remote_backends_request_is_taken_by_the_completions_endpoint(http, engine):  # noqa: F811
    """One app is another's model server: what `RemoteScheduler` sends (stop strings and
    penalties included) is a request `/v1/completions` takes and honours."""
    prompt = tuple(engine.tokenizer("<start_of_turn>user\nHi<end_of_turn>\n",
                                    add_special_tokens=False).input_ids)
    settings = DecodingSettings(max_new_tokens=12, temperature=0, frequency_penalty=1.0)
    remote = RemoteScheduler("http://127.0.0.1:9/v1", [])

    def completion(settings: DecodingSettings) -> tuple[dict, dict]:
        body = remote.body(GenerationRequest(prompt, (), settings, "ada", ()))
        response = http.post("/v1/completions", json={**body, "stream": False},
                             headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 200, response.text
        return body, response.json()["choices"][0]

    try:
        _, full = completion(settings)
        text = full["text"]
        assert len(text) > 4
        body, stopped = completion(replace(settings, stop_strings=(text[2:4],)))
    finally:
        remote.close()
    assert body["stop"] == [text[2:4]] and body["frequency_penalty"] == 1.0
    assert stopped["text"] == text[:text.find(text[2:4])] and stopped["finish_reason"] == "stop"


def test_top_p_zero_keeps_only_the_likeliest_token(client):  # noqa: F811
    assert ask(client, top_p=0.0)[0] == ask(client)[0]  # `ask` is greedy (temperature 0)
    sampled = client.chat.completions.create(model="ada", messages=HI, temperature=1.5,
                                             top_p=0.0, max_tokens=16, seed=3)
    assert [sampled.choices[0].message.content] == ask(client)[0]


def test_opening_temperature_is_set_per_request(client):  # noqa: F811
    [greedy], _ = ask(client, max_tokens=6)
    hot = {"temperature": 1.5, "seed": 3, "max_tokens": 6}
    replies = {opening: client.chat.completions.create(
        model="ada", messages=HI, extra_body={"opening_temperature": opening}, **hot
    ).choices[0].message.content for opening in (0, 0.001)}
    # no full stop comes in six tokens: an opening this cool decodes the whole reply greedily
    assert replies[0.001] == greedy != replies[0], (greedy, replies)

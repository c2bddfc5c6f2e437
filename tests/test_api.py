"""OpenAI-compatible API: the official `openai` client against a real server on 127.0.0.1,
concurrent sessions batched through the scheduler, and OpenAI-shaped errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient

from neeko_app.api import create_app
from neeko_app.chat.engine import ChatEngine, ContextLimits
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.serving.server import server_config
from tests.test_memory import free_port
from tests.tiny_characters import make_tiny_runtime

TRAINED = {"ada": "Ada Lovelace", "newton": "Isaac Newton", "cleo": "Cleopatra",
           "galen": "Galen", "hypatia": "Hypatia", "spartacus": "Spartacus"}
FUSED = {"sappho": "Sappho", "zeno": "Zeno", "tycho": "Tycho Brahe"}
DECODING = DecodingSettings(max_new_tokens=10, temperature=0)
KEY = "sekret-key"


def endless_scheduler(runtime) -> BatchScheduler:
    """No stop tokens: a random model's reply could otherwise be empty (and not remembered)."""
    return BatchScheduler(runtime.model, runtime.base.tokenizer, stop_ids=[])


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[ChatEngine]:
    runtime = make_tiny_runtime(tmp_path_factory.mktemp("api"), TRAINED, FUSED)
    engine = ChatEngine(runtime, None, DECODING, scheduler=endless_scheduler(runtime),
                        limits=ContextLimits(context_tokens=1024, max_reply_tokens=16))
    yield engine
    engine.close()


@contextmanager
def serving(app) -> Iterator[int]:
    """Serve `app` on a free loopback port, with `neeko api`'s server settings, in a
    background thread; yields the port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, "warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def running_server(app) -> Iterator[str]:
    """`serving(app)`, as the API's base URL."""
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def client(engine) -> Iterator[openai.OpenAI]:
    with running_server(create_app(engine, api_key=KEY)) as url:
        yield openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)


def solo(engine: ChatEngine, character: str, message: str, instructions: str = "") -> str:
    return engine.reply(character, [Turn("user", message)], None, DECODING,
                        instructions).result()


def test_models_are_the_characters(client, engine):
    models = client.models.list().data
    assert sorted(m.id for m in models) == sorted(TRAINED | FUSED)
    modes = {m.id: m.mode for m in models}
    assert modes["ada"] == "block" and modes["zeno"] == "fusion"
    assert client.models.retrieve("tycho").name == "Tycho Brahe"


def test_streaming_and_plain_completions_give_the_same_reply(client, engine):
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "assistant", "content": "Greetings, traveller."},  # a greeting
                {"role": "user", "content": "What are you working on?"}]
    plain = client.chat.completions.create(model="ada", messages=messages, temperature=0,
                                           max_tokens=10)
    expected = solo(engine, "ada", "What are you working on?", "Answer briefly.")
    choice = plain.choices[0]
    assert choice.message.content == expected and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length") and plain.model == "ada"
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens

    chunks = list(client.chat.completions.create(
        model="ada", messages=messages, temperature=0, max_tokens=10, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_max_tokens_is_clamped_to_the_engines_reply_limit(client):
    reply = client.chat.completions.create(
        model="newton", messages=[{"role": "user", "content": "Talk on and on."}],
        max_tokens=900)  # allowed by the context (1024) but above the reply limit (16)
    assert reply.usage.completion_tokens <= 16


def test_concurrent_sessions_are_batched_and_each_gets_its_own_reply(client, engine):
    characters = list(TRAINED | FUSED)[:8]
    messages = {c: f"Hello {c}, tell me about your day number {i}."
                for i, c in enumerate(characters)}
    expected = {c: solo(engine, c, m) for c, m in messages.items()}
    assert len(set(expected.values())) > 4  # the characters answer differently

    def ask(character: str) -> str:
        message = [{"role": "user", "content": messages[character]}]
        if characters.index(character) % 2:
            stream = client.chat.completions.create(model=character, messages=message,
                                                    temperature=0, max_tokens=10, stream=True,
                                                    extra_headers={"X-Session-Id": character})
            return "".join(c.choices[0].delta.content or "" for c in stream)
        reply = client.chat.completions.create(model=character, messages=message,
                                               temperature=0, max_tokens=10, user=character)
        return reply.choices[0].message.content

    stats = engine.scheduler.stats
    requests, batches = stats.requests, stats.batches
    engine.scheduler.window_s = 30.0  # wait for all 8 (a batch starts once 8 are waiting)
    try:
        with ThreadPoolExecutor(len(characters)) as pool:
            got = dict(zip(characters, pool.map(ask, characters), strict=True))
    finally:
        engine.scheduler.window_s = 0.02
    assert got == expected  # no cross-talk: each row equals its request served alone
    assert stats.requests - requests == 8
    assert stats.batches - batches < 8 and max(stats.batch_sizes[batches:]) > 1


def test_errors_through_the_openai_client(client, engine):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nobody", messages=[{"role": "user",
                                                                  "content": "Hi"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="ada", max_tokens=10**9,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert "max_tokens must be between 1 and 1024" in bad.value.body["message"]
    anonymous = openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()


@pytest.fixture(scope="module")
def http(engine) -> TestClient:
    return TestClient(create_app(engine, api_key=KEY))


def post(http: TestClient, body: object, **headers: str):
    return http.post("/v1/chat/completions", json=body,
                     headers={"Authorization": f"Bearer {KEY}", **headers})


def user(text: str = "Hi") -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize(("body", "headers", "status", "code", "message"), [
    ({"model": "nobody", "messages": user()}, {}, 404, "model_not_found", "does not exist"),
    ({"model": "ada", "messages": user(), "max_tokens": 0}, {}, 400, "invalid_max_tokens",
     "between 1 and 1024"),
    ({"model": "ada", "messages": user(), "max_tokens": -5}, {}, 400, "invalid_max_tokens", ""),
    ({"model": "ada", "messages": user(), "max_completion_tokens": 0, "max_tokens": 5}, {}, 400,
     "invalid_max_tokens", "got 0"),
    ({"model": "ada", "messages": user(), "max_tokens": "lots"}, {}, 400, "invalid_request",
     "max_tokens"),
    ({"model": "ada", "messages": [{"role": "assistant", "content": "Hi"}]}, {}, 400,
     "no_user_message", "needs a message from the user"),
    ({"model": "ada", "messages": [{"role": "tool", "content": "x"}]}, {}, 400,
     "invalid_request", "messages.0.role"),
    ({"model": "ada", "messages": []}, {}, 400, "invalid_request", "messages"),
    ({"model": "ada"}, {}, 400, "invalid_request", "messages"),
    ({"model": "ada", "messages": user("  ")}, {}, 400, "empty_message", "has no text"),
    ({"model": "ada", "messages": user(), "temperature": 9}, {}, 400, "invalid_request",
     "temperature"),
    ({"model": "ada", "messages": user(), "n": 3}, {}, 400, "invalid_n", "n=1"),
    ({"model": "ada", "messages": user("word " * 400)}, {}, 400, "context_length_exceeded",
     "too long"),
    ({"model": "ada", "messages": user()}, {"X-Session-Id": "../etc"}, 400,
     "invalid_session_id", "invalid session id"),
])
def test_bad_requests_get_openai_shaped_errors(http, body, headers, status, code, message):
    response = post(http, body, **headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"]
    assert error["type"] == "invalid_request_error"


def test_a_last_assistant_message_is_continued(http, engine, monkeypatch):
    """SillyTavern's Continue sends the reply to go on with last (then its nudge, a system
    message): the prompt ends with that reply's text, and the completion is the new text."""
    prompts = []
    submit = engine.scheduler.submit_many

    def recording(requests):
        prompts.extend(engine.tokenizer.decode(r.prompt_ids) for r in requests)
        return submit(requests)
    monkeypatch.setattr(engine.scheduler, "submit_many", recording)
    lead = "Well met, traveller. The road"
    messages = [*user("Hi"), {"role": "assistant", "content": lead},
                {"role": "system", "content": "[Continue your last message.]"}]
    response = post(http, {"model": "ada", "messages": messages, "max_tokens": 6})
    fresh = post(http, {"model": "ada", "messages": user("Hi"), "max_tokens": 6})
    assert response.status_code == 200 == fresh.status_code, response.text
    continued, new = prompts
    assert continued.endswith(f"{new.rsplit('Hi', 1)[1]}{lead}")  # after the reply's opening
    assert "[Continue your last message.]" in continued and not new.endswith(lead)
    text = response.json()["choices"][0]["message"]["content"]
    assert text and not text.startswith(lead)


def test_authentication_and_unknown_routes(http):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = http.post("/v1/chat/completions", json={"model": "ada", "messages": user()},
                             headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    assert http.get("/v1/models").status_code == 401
    broken = http.post("/v1/chat/completions", content=b"{not json",
                       headers={"Authorization": f"Bearer {KEY}",
                                "Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_request"
    missing = http.get("/v1/nothing", headers={"Authorization": f"Bearer {KEY}"})
    assert missing.status_code == 404 and "error" in missing.json()
    health = http.get("/health")  # no key needed: it tells only how busy the server is
    assert health.status_code == 200 and health.json() == {"status": "ok", "in_flight": 0}


class RecordingMemory:
    """Memory that finds nothing and records what it is asked to remember."""

    def __init__(self) -> None:
        self.remembered: list[tuple] = []

    def search_knowledge(self, *args, **kwargs):
        return []

    def recall(self, *args, **kwargs):
        return []

    def remember_exchange(self, session_id, character, user_text, reply_text, turn):
        self.remembered.append((session_id, character, user_text, turn))


def test_the_session_key_comes_from_the_header_else_the_user_field(engine):
    memory = RecordingMemory()
    remembering = ChatEngine(engine.runtime, memory, DECODING,
                             scheduler=endless_scheduler(engine.runtime))
    try:
        http = TestClient(create_app(remembering))  # no API key: open
        history = [*user("First."), {"role": "assistant", "content": "Yes."},
                   *user("Second.")]
        assert post(http, {"model": "ada", "messages": history, "user": "u-1"},
                    **{"X-Session-Id": "chat-7"}).status_code == 200
        assert post(http, {"model": "zeno", "messages": user(), "user": "u-1"}).status_code == 200
        assert post(http, {"model": "zeno", "messages": user()}).status_code == 200
    finally:
        remembering.close()
    assert memory.remembered == [("chat-7", "ada", "Second.", 2), ("u-1", "zeno", "Hi", 1)]

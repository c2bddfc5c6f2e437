"""Scale out: generation on a remote OpenAI-compatible server, and two app replicas sharing
one `chroma run` memory server and one data dir (tiny model, real processes on loopback).

The stand-in model server is the app's own `neeko api`, whose `/v1/completions` takes the
request shape vLLM takes (token-id prompt, adapter name as `model`, `stop_token_ids`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from neeko_app.chat.engine import ChatEngine, ContextLimits
from neeko_app.chat.generation import DecodingSettings, stop_token_ids
from neeko_app.chat.prompt import Turn
from neeko_app.chat.remote import RemoteBackendError, RemoteScheduler
from neeko_app.config import Settings
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import TrainingJob, add_character
from tests.test_memory import chroma_server, free_port, stop  # noqa: F401  (a fixture)
from tests.test_serve_cli import start_server, wait_for_page
from tests.test_training import write_character
from tests.tiny_characters import make_tiny_runtime

TRAINED = {"ada": "Ada Lovelace", "newton": "Isaac Newton", "cleo": "Cleopatra"}
FUSED = {"zeno": "Zeno"}
GREEDY = DecodingSettings(max_new_tokens=12, temperature=0)


@contextmanager
def neeko_api(settings: Settings, log: Path, *flags: str) -> Iterator[str]:
    """`neeko api` on the tiny model over `settings`' folders; yields its /v1 URL."""
    port = free_port()
    env = os.environ | {"NEEKO_SESSIONS_DIR": str(settings.sessions_dir)}
    server = start_server("api", [
        "--base-model", "tiny", "--characters-dir", str(settings.characters_dir),
        "--data-dir", str(settings.data_dir),
        "--cache-dir", str(settings.cache_dir), "--port", str(port), *flags], env, log)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_for_page(server, f"{url}/models", timeout_s=240, log=log)
        yield url
    finally:
        stop(server, timeout_s=30)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return make_tiny_runtime(tmp_path_factory.mktemp("scale"), TRAINED, FUSED)


@pytest.fixture(scope="module")
def engines(runtime) -> Iterator[tuple[ChatEngine, ChatEngine]]:
    """(local engine, engine whose replies come from a `neeko api` on the same characters)."""
    limits = ContextLimits(context_tokens=1024, max_reply_tokens=32)
    local = ChatEngine(runtime, None, GREEDY, limits=limits)
    with neeko_api(runtime.settings, runtime.settings.characters_dir.parent / "api.log",
                   "--no-memory") as url:
        remote = ChatEngine(runtime, None, GREEDY, limits=limits, scheduler=RemoteScheduler(
            url, stop_token_ids(runtime.base.tokenizer)))
        yield local, remote
        remote.close()
    local.close()


def test_remote_replies_stream_and_equal_local_generation(engines):
    local, remote = engines
    for slug in TRAINED:
        turns = [Turn("user", f"Good evening, {slug}. What are you working on?")]
        pieces = list(remote.reply(slug, turns))
        assert len(pieces) > 1, "the reply did not stream"
        assert "".join(pieces) == local.reply(slug, turns).result(), slug


def test_a_fusion_character_is_sent_to_the_block_its_gate_weighs_most(engines, runtime):
    local, remote = engines
    adapter = remote.adapter_name("zeno")
    indices, weights = local._gate_row("zeno")
    assert adapter == runtime.model.block_names[indices[weights.index(max(weights))]]
    reply = remote.reply("zeno", [Turn("user", "Is motion possible?")])
    prompt_ids = local.tokenizer(reply.prompt.text, add_special_tokens=False).input_ids
    expected = local.complete(adapter, prompt_ids)
    assert reply.result() == "".join(expected)


def test_the_completions_endpoint_refuses_bad_requests_clearly(engines):
    _, remote = engines
    url = remote.scheduler.base_url
    cases = [({"model": "nobody", "prompt": [2, 3]}, 404, "does not exist"),
             ({"model": "ada", "prompt": [2, 10**9]}, 400, "token ids must be between"),
             ({"model": "ada", "prompt": [2, 3], "max_tokens": 0}, 400, "max_tokens"),
             ({"model": "ada", "prompt": [2] * 2100}, 400, "exceed the 2048-token context"),
             ({"model": "ada", "prompt": []}, 400, "prompt")]
    for body, status, message in cases:
        response = httpx.post(f"{url}/completions", json=body, timeout=60)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"]["message"], response.text


def test_an_unreachable_model_server_is_a_clear_error(runtime):
    scheduler = RemoteScheduler(f"http://127.0.0.1:{free_port()}/v1", [1])
    engine = ChatEngine(runtime, None, GREEDY, scheduler=scheduler)
    try:
        with pytest.raises(RemoteBackendError, match="model server http://127.0.0.1"):
            engine.reply("ada", [Turn("user", "Hello?")]).result()
    finally:
        engine.close()


def test_two_replicas_share_memory_through_a_chroma_server(runtime, chroma_server, tmp_path):  # noqa: F811
    """A fact told to replica 1 comes back from memory in replica 2, same session."""
    url, _ = chroma_server
    settings = runtime.settings
    fact = "My sister Hypatia keeps seven beehives on the roof."
    filler = "Let me describe the weather at length. " * 12  # ~470 byte tokens each
    turns = [Turn("user", "Hello there."), Turn("character", "Welcome."),
             Turn("user", fact)]

    def chat(replica: str, turns: list[Turn]) -> tuple[str, str]:
        messages = [{"role": "user" if t.role == "user" else "assistant", "content": t.text}
                    for t in turns]
        response = httpx.post(f"{replica}/chat/completions", timeout=120,
                              headers={"X-Session-Id": "shared-session"},
                              json={"model": "ada", "messages": messages, "max_tokens": 8,
                                    "temperature": 0})
        assert response.status_code == 200, response.text
        return (response.json()["choices"][0]["message"]["content"],
                response.headers["X-Neeko-Recalled-Turns"])

    with neeko_api(settings, tmp_path / "one.log", "--chroma-url", url) as one, \
            neeko_api(settings, tmp_path / "two.log", "--chroma-url", url) as two:
        reply, _ = chat(one, turns)  # replica 1 hears the fact (turn 2)
        turns.append(Turn("character", reply or "I see."))
        for number in range(4):  # replica 2 chats on until turn 2 no longer fits the context
            turns.append(Turn("user", f"{filler} ({number})"))
            reply, recalled = chat(two, turns)
            turns.append(Turn("character", reply or "Indeed."))
        turns.append(Turn("user", "Who keeps beehives?"))
        _, recalled = chat(two, turns)
        assert "2" in recalled.split(","), f"replica 2 recalled turns {recalled!r}, not turn 2"

        # a character added through replica 1's folder is served by replica 2 at once
        source = write_character(tmp_path / "incoming", "smith", "iron")
        add_character(settings, source, "expansion", TrainingJob(TrainingConfig(epochs=1)))
        listed = httpx.get(f"{two}/models", timeout=60).json()["data"]
        assert {"id": "smith", "mode": "block"}.items() <= next(
            m for m in listed if m["id"] == "smith").items()
        turns = [Turn("user", "What do you forge?")]
        assert chat(two, turns)[1] == ""  # answered (nothing recalled in a first turn)

"""Many people at once: 16 sessions of 8 characters chat over loopback (through the API while
a new character is trained by expansion in the same process; through the API and the web
app in a real browser together).

Checked for every reply: it equals the same conversation replayed alone afterwards (no
cross-talk: a row never gets another row's character, history or memory), its request was
generated under its own character's gate row, and memory holds each session's exchanges in
that session only. Chats keep being answered while the expansion trains.

The default run has short bursts (3 turns per session); `-m slow` runs a 2-minute soak.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import openai
import pytest

from neeko_app.api.server import create_app
from neeko_app.chat.engine import ChatEngine, ContextLimits
from neeko_app.chat.prompt import Turn, character_header
from neeko_app.chat.reply import end_cleanly
from neeko_app.chat.scheduler import BatchScheduler, GenerationRequest, TokenStream, gate_row
from neeko_app.chat.session import ChatSession, SessionStore
from neeko_app.memory import MemoryStore
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import TrainingJob, add_character
from neeko_app.ui.app import build_app, launch
from tests.test_api import DECODING, running_server
from tests.test_memory import free_port
from tests.test_training import write_character
from tests.test_web_e2e import CHROMIUM, TIMEOUT_MS, browser, pick, wait_until  # noqa: F401
from tests.tiny_characters import make_tiny_runtime

CHARACTERS = {"ada": "Ada Lovelace", "newton": "Isaac Newton", "cleo": "Cleopatra",
              "galen": "Galen", "hypatia": "Hypatia", "spartacus": "Spartacus",
              "sappho": "Sappho", "zeno": "Zeno"}
SESSIONS = 16


class RecordingScheduler(BatchScheduler):
    """A scheduler that keeps every request it was given, with its stream."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[GenerationRequest, TokenStream]] = []

    def submit_many(self, requests):
        streams = super().submit_many(requests)
        self.seen += zip(requests, streams, strict=True)
        return streams


@dataclass
class Visitor:
    """One person chatting with one character in one session."""

    number: int
    character: str
    session_id: str = ""
    turns: list[Turn] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    waited: list[float] = field(default_factory=list)  # seconds per reply

    def __post_init__(self) -> None:
        self.session_id = self.session_id or f"visitor-{self.number}"

    def next_message(self) -> str:
        return f"I am visitor {self.number}; this is my message {len(self.turns) // 2 + 1}."


@pytest.fixture
def engine(tmp_path) -> Iterator[ChatEngine]:
    runtime = make_tiny_runtime(tmp_path, CHARACTERS)
    memory = MemoryStore.open(runtime.settings.memory_dir)
    scheduler = RecordingScheduler(runtime.model, runtime.base.tokenizer, max_batch=16,
                                   stop_ids=[])
    engine = ChatEngine(runtime, memory, DECODING, sessions=SessionStore(tmp_path / "sessions"),
                        limits=ContextLimits(context_tokens=1024, max_reply_tokens=16),
                        scheduler=scheduler)
    yield engine
    engine.close()


def chat(client: openai.OpenAI, visitor: Visitor, stream: bool) -> None:
    """One exchange over the API; the reply joins the visitor's history."""
    visitor.turns.append(Turn("user", visitor.next_message()))
    messages = [{"role": "user" if t.role == "user" else "assistant", "content": t.text}
                for t in visitor.turns]
    sent = time.monotonic()
    asked = dict(model=visitor.character, messages=messages, temperature=0, max_tokens=10,
                 extra_headers={"X-Session-Id": visitor.session_id})
    if stream:
        text = "".join(c.choices[0].delta.content or ""
                       for c in client.chat.completions.create(**asked, stream=True))
    else:
        text = client.chat.completions.create(**asked).choices[0].message.content
    visitor.turns.append(Turn("character", text))
    visitor.answered_at.append(time.monotonic())
    visitor.waited.append(visitor.answered_at[-1] - sent)


def expand_while_chatting(engine: ChatEngine, tmp_path) -> tuple[float, float]:
    """Train a new character's block in this thread; (start, end) times."""
    source = write_character(tmp_path / "incoming", "smith", "iron", n=24)
    started = time.monotonic()
    add_character(engine.runtime.settings, source, "expansion",
                  TrainingJob(TrainingConfig(epochs=2, batch_size=2, max_tokens=160)),
                  runtime=engine.runtime)
    return started, time.monotonic()


def api_visitors(count: int) -> list[Visitor]:
    return [Visitor(n, list(CHARACTERS)[n % len(CHARACTERS)]) for n in range(count)]


def keep_chatting(url: str, visitor: Visitor, turns: int | None, deadline: float | None
                  ) -> None:
    """Chat over the API until `turns` exchanges are done, or until `deadline`."""
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
    while len(visitor.turns) // 2 < turns if turns else time.monotonic() < deadline:
        chat(client, visitor, stream=visitor.number % 2 == 1)


def soak(engine: ChatEngine, tmp_path, turns: int | None, seconds: float | None
         ) -> tuple[list[Visitor], tuple[float, float]]:
    """16 visitors chat concurrently (half streaming) while a character is added."""
    visitors = api_visitors(SESSIONS)
    deadline = time.monotonic() + seconds if seconds else None
    with running_server(create_app(engine)) as url, ThreadPoolExecutor(SESSIONS + 1) as pool:
        training = pool.submit(expand_while_chatting, engine, tmp_path)
        chats = [pool.submit(keep_chatting, url, v, turns, deadline) for v in visitors]
        for future in chats:
            future.result()  # re-raises any error a visitor hit
        window = training.result()
    return visitors, window


def replay_alone(engine: ChatEngine, visitor: Visitor) -> list[str]:
    """The visitor's conversation again, one reply at a time, in a fresh session."""
    replies = []
    for end in range(1, len(visitor.turns), 2):
        reply = engine.reply(visitor.character, visitor.turns[:end], f"replay-{visitor.number}")
        replies.append(reply.result())
    return replies


def check_no_cross_talk(engine: ChatEngine, visitors: list[Visitor],
                        finish: Callable[[str], str] = lambda text: text) -> None:
    """Every reply equals the same conversation served alone (`finish`ed as the visitor's
    front end keeps it); memory holds each session's exchanges in that session only."""
    for visitor in visitors:
        got = [t.text for t in visitor.turns if t.role == "character"]
        alone = [finish(text) for text in replay_alone(engine, visitor)]
        assert got == alone, f"cross-talk in {visitor.session_id}"
        exchanges = engine.memory.list_session(visitor.session_id)
        asked = [t.text for t in visitor.turns if t.role == "user"]
        assert [e.user_text for e in exchanges] == asked
        assert {e.character for e in exchanges} == {visitor.character}


def check_gate_rows(engine: ChatEngine) -> None:
    """Every request ran under the gate row of the character whose header its prompt holds."""
    runtime = engine.runtime
    headers = {slug: character_header(c) for slug, c in runtime.characters.items()}
    rows = {slug: gate_row(runtime.gate_for(c)) for slug, c in runtime.characters.items()}
    decode = runtime.base.tokenizer.decode
    for request, _ in engine.scheduler.seen:
        prompt = decode(request.prompt_ids)
        [slug] = [s for s, header in headers.items() if header in prompt]
        assert request.gate == rows[slug], f"{slug}'s request ran under another gate"


def check_answered_while_training(visitors: list[Visitor], window: tuple[float, float]
                                  ) -> None:
    """Chats were answered while the new block trained (the figures are printed)."""
    started, finished = window
    during = [w for v in visitors for t, w in zip(v.answered_at, v.waited, strict=True)
              if started < t < finished]
    others = [w for v in visitors for t, w in zip(v.answered_at, v.waited, strict=True)
              if not started < t < finished]
    print(f"\n{len(during)} replies while the expansion trained ({finished - started:.1f} s), "
          f"slowest {max(during, default=0):.2f} s; {len(others)} other replies, slowest "
          f"{max(others, default=0):.2f} s")
    assert during, "no reply was given while the expansion trained"


def check_soak(engine: ChatEngine, visitors: list[Visitor], window: tuple[float, float]
               ) -> None:
    check_no_cross_talk(engine, visitors)
    check_gate_rows(engine)
    check_answered_while_training(visitors, window)
    assert "smith" in engine.runtime.model.block_names


def test_16_sessions_chat_at_once_while_a_character_is_added(engine, tmp_path):
    visitors, window = soak(engine, tmp_path, turns=3, seconds=None)
    assert all(len(v.turns) == 6 for v in visitors)
    check_soak(engine, visitors, window)
    assert max(engine.scheduler.stats.batch_sizes) > 1  # sessions shared batches


@pytest.mark.slow
def test_a_two_minute_soak_of_16_sessions(engine, tmp_path):
    visitors, window = soak(engine, tmp_path, turns=None, seconds=120)
    exchanges = sum(len(v.turns) // 2 for v in visitors)
    print(f"soak: {SESSIONS} sessions x 2 min, {exchanges} exchanges, 0 errors")
    check_soak(engine, visitors, window)


def web_session(engine: ChatEngine, marker: str) -> ChatSession | None:
    """The saved session whose first message holds `marker`."""
    for session_id in engine.sessions.list_ids():
        session = engine.sessions.load(session_id)
        if session.turns and marker in session.turns[0].text:
            return session
    return None


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (CI installs it)")
def test_web_and_api_visitors_chat_at_once(engine, browser):  # noqa: F811
    """8 people in browser tabs and 8 over the API, all at once, 3 messages each."""
    demo = build_app(engine, engine.runtime.settings)
    port = free_port()
    launch(demo, engine.runtime.settings, "127.0.0.1", port, block=False)
    names = list(CHARACTERS.items())
    pages = [browser.new_page() for _ in range(8)]
    visitors = api_visitors(8)
    try:
        with running_server(create_app(engine)) as url, ThreadPoolExecutor(8) as pool:
            chats = [pool.submit(keep_chatting, url, v, 3, None) for v in visitors]
            for page, (_, name) in zip(pages, names, strict=True):
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"http://127.0.0.1:{port}/")
                pick(page, name)
            for message in range(1, 4):
                for number, page in enumerate(pages):
                    page.fill("#message textarea", f"Web visitor {number}, message {message}.")
                    page.press("#message textarea", "Enter")
                for number in range(len(pages)):  # each tab's reply is saved
                    wait_until(lambda number=number, message=message: (
                        (s := web_session(engine, f"Web visitor {number},")) is not None
                        and len(s.turns) == 2 * message), f"reply {message} of tab {number}")
            for future in chats:
                future.result()
    finally:
        for page in pages:
            page.close()
        demo.close()
    web = []
    for number, (slug, _) in enumerate(names):
        session = web_session(engine, f"Web visitor {number},")
        web.append(Visitor(100 + number, slug, session.id, list(session.turns)))
    # a saved session keeps a reply ended at a full sentence and stripped (`add_reply`)
    check_no_cross_talk(engine, web, finish=lambda text: end_cleanly(text).strip())
    check_no_cross_talk(engine, visitors)
    check_gate_rows(engine)


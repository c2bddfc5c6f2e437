"""The chat features role-play users expect, clicked through in a real headless Chromium: edit
any message, versions of a reply ("swipes"), continue, stop, the user's persona, deleting a
character. One app is served for the module (tiny model, real Chroma memory).

The served characters: Socrates is shipped (his folder is the shipped characters folder);
Mira Vance and Tycho Brahe were added by the user (the data folder), Mira's greeting with a
`{{user}}` macro. The model behind the scheduler can be paced (`Paced`): the stop test
decides how far a reply gets before Stop, so nothing here depends on timing.
The README's screenshots of these features are taken on the real model
(`tests/test_web_real_model_features.py`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator, Sequence

import pytest

from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.scheduler import BatchScheduler, GenerationRequest, TokenStream
from neeko_app.chat.session import ChatSession
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import load_runtime
from neeko_app.user_data import TRASH_DIR
from tests.test_chat_versions import Paced
from tests.test_web_e2e import (  # noqa: F401 (fixtures)
    bot_messages,
    browser,
    page,
    pick,
    pytestmark,
    say,
    served,
    wait_until,
)
from tests.tiny_characters import make_tiny_runtime

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

# sampled, the first sentence too: each version of a reply differs; no stop tokens and no
# sentence limit: every reply meets the length cap
DECODING = DecodingSettings(max_new_tokens=12, temperature=1.0, opening_temperature=0,
                            max_sentences=0)
GREETING = "Welcome to Gull Rock, {{user}}. Tea?"


class RecordingScheduler(BatchScheduler):
    """Keeps every stream it was given, to read the prompts and see a stop arrive."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.streams: list[TokenStream] = []

    def submit_many(self, requests: Sequence[GenerationRequest]) -> list[TokenStream]:
        streams = super().submit_many(requests)
        self.streams += streams
        return streams

    def last_prompt(self) -> str:
        return self.tokenizer.decode(self.streams[-1].request.prompt_ids)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[tuple[str, ChatEngine]]:
    root = tmp_path_factory.mktemp("web-features")
    shipped = make_tiny_runtime(root, trained={"socrates": "Socrates"},
                                fused={"mira-vance": "Mira Vance", "tycho": "Tycho Brahe"})
    settings = dataclasses.replace(shipped.settings, data_dir=root / "data",
                                   memory_dir=root / "data" / "memory",
                                   sessions_dir=root / "data" / "sessions",
                                   reports_dir=root / "reports")
    settings.user_characters_dir.mkdir(parents=True)
    for slug in ("mira-vance", "tycho"):
        shutil.move(settings.characters_dir / slug, settings.user_characters_dir / slug)
    card = settings.user_characters_dir / "mira-vance" / "character.json"
    card.write_text(json.dumps(json.loads(card.read_text()) | {"greeting": GREETING}))
    runtime = load_runtime(settings, report=lambda _: None)
    memory = MemoryStore.open(settings.memory_dir)
    index_characters(memory, runtime.characters.values())
    scheduler = RecordingScheduler(Paced(runtime.model), runtime.base.tokenizer, stop_ids=[])
    with served(runtime, memory, scheduler, settings, settings.sessions_dir,
                DECODING) as (url, engine):
        try:
            yield url, engine
        finally:
            scheduler.model.free()


def shown(text: str) -> str:
    """The letters and digits of `text`: what of the tiny model's random bytes the page
    shows unchanged (Markdown, spacing and control characters may come out otherwise)."""
    return "".join(char for char in text if char.isalnum())


def current(engine: ChatEngine) -> ChatSession:
    """The newest saved session, as saved."""
    return engine.sessions.load(engine.sessions.list_ids()[0])


def remembered(engine: ChatEngine, session: ChatSession) -> list[tuple[int, str, str]]:
    return [(e.turn, e.user_text, e.reply_text) for e in engine.memory.list_session(session.id)]


def edit_message(tab, index: int, text: str) -> None:
    """Edit chat message `index` (greetings count) with the chatbot's own ✎ button."""
    tab.locator("#chat").get_by_role("button", name="Edit").nth(index).click()
    tab.locator("#chat textarea").fill(text)
    tab.locator("#chat").get_by_role("button", name="Submit").click()


def test_edit_a_message_of_either_side_and_go_on_from_there(page, app):  # noqa: F811
    url, engine = app
    pick(page, "Socrates")
    say(page, engine.sessions, "I keep bees on the hill.")
    say(page, engine.sessions, "They make thyme honey.")
    edit_message(page, 1, "I keep goats on the hill.")  # message 0 is the greeting
    wait_until(lambda: current(engine).turns[0].text == "I keep goats on the hill.",
               "the edit of the user's message to be saved")
    edit_message(page, 4, "Goats are wiser than bees.")
    wait_until(lambda: current(engine).turns[3].text == "Goats are wiser than bees.",
               "the edit of the reply to be saved")
    expect(page.locator("#chat")).to_contain_text("Goats are wiser than bees.")
    session = current(engine)
    assert [turn.text for turn in session.turns][2] == "They make thyme honey."  # kept
    expected = [(1, "I keep goats on the hill.", session.turns[1].text),
                (2, "They make thyme honey.", "Goats are wiser than bees.")]
    wait_until(lambda: remembered(engine, session) == expected,  # replaced, not added
               "memory to follow the edits")

    say(page, engine.sessions, "What do they eat?")
    assert "I keep goats on the hill." in engine.scheduler.last_prompt()
    assert "Goats are wiser than bees." in engine.scheduler.last_prompt()

    before = current(engine)
    edit_message(page, 0, "Hello!")  # the greeting belongs to the card
    expect(page.get_by_text("the greeting is part of the character's card")).to_be_visible()
    expect(bot_messages(page).first).to_have_text(engine.runtime.characters["socrates"].greeting)
    assert current(engine) == before


def test_regenerate_keeps_versions_and_arrows_browse_them(page, app):  # noqa: F811
    url, engine = app
    pick(page, "Mira Vance")
    [first] = say(page, engine.sessions, "What is in the logbook?")
    expect(page.locator("#versions")).to_have_text("")
    page.locator("#next").click()  # past the newest version: a new one
    wait_until(lambda: len(current(engine).versions_of(1).texts) == 2, "a second version")
    expect(page.locator("#versions")).to_have_text("Reply 2 of 2")
    page.get_by_role("button", name="↻ Regenerate").click()
    wait_until(lambda: len(current(engine).versions_of(1).texts) == 3, "a third version")
    expect(page.locator("#versions")).to_have_text("Reply 3 of 3")
    texts = current(engine).versions_of(1).texts
    assert texts[0] == first

    page.locator("#previous").click()
    expect(page.locator("#versions")).to_have_text("Reply 2 of 3")
    page.locator("#previous").click()
    expect(page.locator("#versions")).to_have_text("Reply 1 of 3")
    wait_until(lambda: shown(first) in shown(bot_messages(page).last.inner_text()),
               "version 1 on the page")
    session = current(engine)
    assert session.turns[1].text == first and session.versions_of(1).shown == 0
    assert remembered(engine, session) == [(1, "What is in the logbook?", first)]

    page.locator("#previous").click()
    expect(page.get_by_text("this is the first version of the reply")).to_be_visible()
    page.locator("#next").click()
    expect(page.locator("#versions")).to_have_text("Reply 2 of 3")
    wait_until(lambda: current(engine).turns[1].text == texts[1], "version 2 to be kept")


def test_continue_appends_to_a_reply_cut_off_by_the_length_cap(page, app):  # noqa: F811
    url, engine = app
    pick(page, "Socrates")
    say(page, engine.sessions, "Tell me a long story.")
    cut = current(engine).turns[1].text
    assert engine.scheduler.streams[-1].finish_reason == "length"
    page.locator("#continue").click()
    wait_until(lambda: len(current(engine).turns[1].text) > len(cut), "the continuation")
    session = current(engine)
    assert len(session.turns) == 2 and session.turns[1].text.startswith(cut.removesuffix("…"))
    expect(bot_messages(page)).to_have_count(2)
    expect(bot_messages(page).last).to_contain_text(session.turns[1].text[-10:])
    wait_until(lambda: remembered(engine, session) == [
        (1, "Tell me a long story.", session.turns[1].text)], "memory to hold the whole reply")


def test_the_reply_length_picked_reaches_the_decoder(page, app):  # noqa: F811
    url, engine = app
    pick(page, "Socrates")
    expect(page.locator("#reply-length input")).to_have_value("no limit")  # the server's
    page.locator("#reply-length input").click()
    page.get_by_role("option", name="2 sentences", exact=True).click()
    say(page, engine.sessions, "Tell me about the agora.")
    streams = engine.scheduler.streams
    sent = len(streams)
    assert streams[-1].request.settings.max_sentences == 2
    page.locator("#continue").click()
    wait_until(lambda: len(streams) > sent and streams[-1].finish_reason is not None,
               "the continuation")
    assert streams[-1].request.settings.max_sentences == 2


def test_stop_keeps_the_partial_reply(page, app):  # noqa: F811
    url, engine = app
    paced = engine.scheduler.model
    pick(page, "Socrates")
    paced.pace()
    try:
        page.fill("#message textarea", "Count to a hundred.")
        page.press("#message textarea", "Enter")
        paced.run(4)  # four tokens, then the model waits
        expect(bot_messages(page)).to_have_count(2)
        stream = engine.scheduler.streams[-1]
        page.locator("#stop").click()
        wait_until(lambda: stream.cancelled, "the stop to reach the scheduler")
        paced.run(1, then_wait=False)
    finally:
        paced.free()
    wait_until(lambda: len(current(engine).turns) == 2, "the partial reply to be saved")
    assert stream.finish_reason == "cancelled" and stream.completion_tokens == 5
    session = current(engine)
    assert session.turns[1].text == stream.text.strip() != ""
    wait_until(lambda: shown(stream.text)[:10] in shown(bot_messages(page).last.inner_text()),
               "the partial reply on the page")
    assert engine.scheduler.in_flight() == 0


def fill_and_keep(tab, selector: str, text: str) -> None:
    """Type `text` into a Gradio field. An update still in flight (the page's load, a
    just-opened accordion) can put the field's old value back: type again until it holds."""
    field = tab.locator(selector)
    for _ in range(10):
        field.fill(text)
        tab.wait_for_timeout(200)
        if field.input_value() == text:
            return
    raise AssertionError(f"{selector} did not keep {text!r}")


def test_the_persona_is_saved_fills_greetings_and_reaches_the_prompt(page, app):  # noqa: F811
    url, engine = app
    pick(page, "Mira Vance")
    expect(bot_messages(page).first).to_have_text("Welcome to Gull Rock, User. Tea?")
    page.get_by_text("Your persona").click()
    fill_and_keep(page, "#persona-name input", "Anna Berg")
    fill_and_keep(page, "#persona-description textarea", "A sailor who lost her ship.")
    page.locator("#persona-save").click()
    expect(bot_messages(page).first).to_have_text("Welcome to Gull Rock, Anna Berg. Tea?")
    saved = json.loads((engine.runtime.settings.data_dir / "persona.json").read_text())
    assert saved == {"name": "Anna Berg", "description": "A sailor who lost her ship."}
    say(page, engine.sessions, "Have you seen my ship?")
    assert "You are talking with Anna Berg: A sailor who lost her ship." in (
        engine.scheduler.last_prompt())

    page.reload()  # a new page shows the saved persona
    page.wait_for_selector("#message textarea")
    page.get_by_text("Your persona").click()
    expect(page.locator("#persona-name input")).to_have_value("Anna Berg")
    fill_and_keep(page, "#persona-name input", "\u200b")
    page.locator("#persona-save").click()
    expect(page.get_by_text("your name needs at least one letter")).to_be_visible()
    assert json.loads((engine.runtime.settings.data_dir / "persona.json").read_text()) == saved


def choose_to_delete(tab, name: str) -> None:
    tab.locator("#delete-pick input").click()
    tab.get_by_role("option", name=name, exact=True).click()
    tab.locator("#delete").click()


def test_deleting_a_character_moves_it_to_the_trash_and_its_chats_stay_readable(page, app):  # noqa: F811
    url, engine = app
    settings = engine.runtime.settings
    pick(page, "Tycho Brahe")
    say(page, engine.sessions, "What did you see in 1572?")
    tycho_session = current(engine)
    page.get_by_text("Delete a character").click()

    choose_to_delete(page, "Socrates")  # shipped: read-only
    expect(page.get_by_text("Socrates comes with the app and cannot be deleted")).to_be_visible()
    expect(page.locator("#delete-yes")).to_be_hidden()

    choose_to_delete(page, "Tycho Brahe")
    expect(page.locator("#delete-question")).to_contain_text("Delete Tycho Brahe?")
    page.locator("#delete-no").click()
    expect(page.locator("#delete-yes")).to_be_hidden()
    assert "tycho" in engine.runtime.characters

    choose_to_delete(page, "Tycho Brahe")
    page.locator("#delete-yes").click()
    expect(page.get_by_text("Tycho Brahe was moved to the trash")).to_be_visible()
    expect(page.locator("#picker")).not_to_contain_text("Tycho Brahe")
    expect(page.locator("#chat-title")).to_contain_text("(read-only)")
    assert not (settings.user_characters_dir / "tycho").exists()
    assert (settings.data_dir / TRASH_DIR / "tycho" / "character.json").is_file()
    assert (settings.characters_dir / "socrates").is_dir()

    page.fill("#message textarea", "Are you still there?")
    page.press("#message textarea", "Enter")
    expect(page.get_by_text("tycho was deleted: this chat can be read")).to_be_visible()
    assert engine.sessions.load(tycho_session.id) == tycho_session

    page.reload()  # the saved chat still opens, read-only
    page.wait_for_selector("#message textarea")
    page.get_by_text("Saved sessions").click()
    page.locator("#saved input").click()
    page.get_by_role("option", name="tycho · “What did you see in 1572?”", exact=False).click()
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#chat-title")).to_contain_text("tycho (read-only)")
    expect(page.locator("#chat")).to_contain_text("What did you see in 1572?")

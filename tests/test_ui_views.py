"""What the web app shows, without a browser: chat messages, the memory panel, saved
sessions, avatars, `--auth`, and the chat tab's streaming handler on the tiny model."""

from __future__ import annotations

import io
import time

import gradio as gr
import pytest
from PIL import Image

from neeko_app.characters.card import character_from_dict
from neeko_app.characters.registry import discover_characters
from neeko_app.chat.context import RetrievedContext
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn
from neeko_app.chat.reply import end_cleanly
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.chat.session import ChatSession, SessionStore
from neeko_app.config import PROJECT_ROOT, Settings
from neeko_app.memory import Exchange, KnowledgeChunk
from neeko_app.ui.app import launch, parse_auth
from neeko_app.ui.avatars import SHIPPED_AVATARS, avatar_path, colour, initials, monogram_png
from neeko_app.ui.cards import MAX_UPLOAD_BYTES
from neeko_app.ui.chat_tab import ChatTab
from neeko_app.ui.views import (
    MEMORY_IDLE,
    MEMORY_OFF,
    chat_messages,
    memory_markdown,
    session_choices,
)
from neeko_app.user_data import shipped_ids
from tests.tiny_characters import make_tiny_runtime


def card(slug: str, name: str, greeting: str = "Hello."):
    return character_from_dict({"name": name, "slug": slug, "description": f"{name}.",
                                "personality": "p", "scenario": "s", "greeting": greeting})


def make_settings(root) -> Settings:
    return Settings(base_model="tiny", cache_dir=root / "cache", characters_dir=root / "chars")


CAST = {"ada": card("ada", "Ada Lovelace", "Good day."), "cleo": card("cleo", "Cleopatra", "Hail.")}


def test_a_chat_shows_the_greeting_the_transcript_and_what_is_being_written():
    session = ChatSession("s1", ["ada"], [Turn("user", "Hi"), Turn("character", "Hello", "ada")])
    assert chat_messages(session, CAST, [("ada", "Wri")]) == [
        {"role": "assistant", "content": "Good day."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": "Wri"},
    ]


def test_a_group_scene_names_every_speaker():
    session = ChatSession("s2", ["ada", "cleo"], [Turn("user", "Both of you?"),
                                                  Turn("character", "Yes.", "cleo")])
    assert [m["content"] for m in chat_messages(session, CAST, [("ada", "And")])] == [
        "**Ada Lovelace:** Good day.", "**Cleopatra:** Hail.", "Both of you?",
        "**Cleopatra:** Yes.", "**Ada Lovelace:** And"]


def test_the_memory_panel_lists_knowledge_and_recalled_exchanges():
    assert memory_markdown([], memory_on=False) == MEMORY_OFF
    assert memory_markdown([], memory_on=True) == MEMORY_IDLE
    assert memory_markdown([("Ada", RetrievedContext())], True) == (
        "_Nothing retrieved for this reply._")
    context = RetrievedContext(
        (KnowledgeChunk("Ada keeps a raven. " * 30, "profile"),),
        (Exchange("s", "ada", 2, "My cat is Pixel.", "A fine name.", 0.0),))
    text = memory_markdown([("Ada", context), ("Cleopatra", RetrievedContext())], True)
    assert text.startswith("#### For Ada\n\n**Knowledge**\n\n- *profile*: Ada keeps a raven.")
    assert " …\n\n**Earlier in this chat**\n\n- turn 2: you said “My cat is Pixel.”; Ada " \
           "replied “A fine name.”\n\n#### For Cleopatra\n\n_Nothing retrieved" in text


def test_saved_sessions_list_readable_ones_newest_first(tmp_path):
    store = SessionStore(tmp_path)
    store.save(ChatSession("empty", ["ada"]))
    store.save(ChatSession("gone", ["ada", "zed"], [Turn("user", "Hi")]))
    time.sleep(0.01)
    store.save(ChatSession("old", ["ada"], [Turn("user", "First chat")], created=0.0))
    time.sleep(0.01)
    store.save(ChatSession("new", ["ada", "cleo"], [Turn("user", "A long first message " * 5)]))
    (tmp_path / "broken.json").write_text("{")
    choices = session_choices(store, CAST)
    assert [session_id for _, session_id in choices] == ["new", "old", "gone"]
    assert choices[0][0].startswith(
        "Ada Lovelace & Cleopatra · “A long first message A long first…” · ")
    assert choices[2][0].startswith("Ada Lovelace & zed · “Hi” · ")  # zed was deleted
    assert choices[2][0].endswith(" · read-only") and "read-only" not in choices[1][0]
    assert session_choices(None, CAST) == []


@pytest.mark.parametrize(("name", "letters"), [
    ("Ludwig van Beethoven", "LB"), ("Cleopatra VII Philopator", "CP"), ("Cleopatra VII", "C"),
    ("Martin Luther King Jr.", "MK"), ("Socrates", "S"), ("émile zola", "EZ"), ("神", "?")])
def test_initials(name, letters):
    assert initials(name) == letters


def test_monograms_are_square_pngs_coloured_by_id():
    image = Image.open(io.BytesIO(monogram_png("Ada Lovelace", "ada", size=64)))
    assert image.format == "PNG" and image.size == (64, 64) and image.mode == "RGBA"
    assert image.getpixel((32, 2))[:3] == pytest.approx(colour("ada"), abs=8)
    assert image.getpixel((0, 0))[3] == 0  # transparent outside the circle
    assert colour("ada") == colour("ada") != colour("newton")


def test_every_shipped_character_has_an_avatar_and_others_get_one_in_the_data_dir(tmp_path):
    characters = discover_characters(PROJECT_ROOT / "characters").characters
    shipped = {slug: characters[slug] for slug in shipped_ids(PROJECT_ROOT / "characters")}
    assert shipped, "no shipped characters found"
    for slug, character in shipped.items():
        assert avatar_path(character, tmp_path) == SHIPPED_AVATARS / f"{slug}.png"
        assert Image.open(SHIPPED_AVATARS / f"{slug}.png").size == (256, 256)
    generated = avatar_path(card("zed-added", "Zed"), tmp_path)
    assert generated == tmp_path / "avatars" / "zed-added.png" and generated.is_file()
    assert not (SHIPPED_AVATARS / "zed-added.png").exists()


def test_auth_is_user_colon_password():
    assert parse_auth("ada:s3cr:et") == ("ada", "s3cr:et")
    for bad in ("ada", ":pw", "ada:"):
        with pytest.raises(ValueError, match="USER:PASSWORD"):
            parse_auth(bad)


def test_the_chat_tab_streams_a_reply_piece_by_piece_then_saves_it(tmp_path):
    runtime = make_tiny_runtime(tmp_path, trained={"ada": "Ada Lovelace"})
    # no stop tokens: the random model must not end its reply before it has streamed
    scheduler = BatchScheduler(runtime.model, runtime.base.tokenizer, stop_ids=[])
    engine = ChatEngine(runtime, None, DecodingSettings(max_new_tokens=12, temperature=0),
                        sessions=SessionStore(tmp_path / "sessions"), scheduler=scheduler)
    try:
        with gr.Blocks():
            tab = ChatTab(engine, tmp_path / "app")
        session, chatbot, title, memory, versions = tab.open(["ada"])
        assert chatbot.value[0]["content"] == [{"text": "Hello.", "type": "text"}]
        assert title.startswith("### Ada Lovelace")
        updates = list(tab._send("Tell me about engines.", session))
    finally:
        engine.close()
    shown = [update[2] for update in updates]
    growing = [messages[-1]["content"] for messages in shown[:-1]]
    assert len(growing) >= 2 and all(a != b for a, b in zip(growing, growing[1:], strict=False))
    assert all(b.startswith(a) for a, b in zip(growing, growing[1:], strict=False))
    reply = session.turns[-1]
    assert reply.role == "character" and reply.text == end_cleanly(growing[-1])  # length cap
    assert shown[-1][-1]["content"] == reply.text and updates[-1][0] == ""
    assert engine.sessions.load(session.id) == session and memory == MEMORY_OFF
    assert versions == "" and updates[-1][5] == ""  # one version of the reply


class RecordingDemo:
    """Stands in for gr.Blocks: records how it was queued and launched."""

    def queue(self, **options):
        self.queued = options

    def launch(self, **options):
        self.launched = options


def test_launch_queues_limits_uploads_and_warns_about_an_open_host(tmp_path, caplog):
    settings = make_settings(tmp_path)
    demo = RecordingDemo()
    launch(demo, settings, "0.0.0.0", 7999, concurrency=3, block=False)
    assert demo.queued == {"default_concurrency_limit": 3}
    assert demo.launched["max_file_size"] == MAX_UPLOAD_BYTES
    assert demo.launched["server_name"] == "0.0.0.0" and demo.launched["auth"] is None
    assert "without --auth" in caplog.text
    caplog.clear()
    launch(RecordingDemo(), settings, "127.0.0.1", 7999, auth=("a", "b"), block=False)
    assert "without --auth" not in caplog.text


def test_the_reply_length_the_user_picks_reaches_every_kind_of_reply(tmp_path):
    runtime = make_tiny_runtime(tmp_path, trained={"ada": "Ada Lovelace"})
    engine = ChatEngine(runtime, None, DecodingSettings(max_new_tokens=4, temperature=0,
                                                        max_sentences=5),
                        sessions=SessionStore(tmp_path / "sessions"))
    asked = []
    for name in ("send", "regenerate", "continue_reply"):
        method = getattr(engine, name)

        def recorded(*args, _method=method, **kwargs):
            decoding = kwargs.get("decoding") or args[-1]
            asked.append(decoding.max_sentences)
            return _method(*args, **kwargs)
        setattr(engine, name, recorded)
    try:
        with gr.Blocks():
            tab = ChatTab(engine, tmp_path / "app")
        assert tab.length.value == 5 and ("5 sentences", 5) in tab.length.choices
        session = tab.open(["ada"])[0]
        list(tab._send("Tell me about engines.", session, 2))
        list(tab._regenerate(session, 0))
        list(tab._continue(session, 3))
        list(tab._send("And looms?", session))  # no choice sent: the engine's default
    finally:
        engine.close()
    assert asked == [2, 0, 3, 5]

"""Editing a chat in place, versions of replies ("swipes"), continue, stop, the user's
persona and read-only sessions: the session and memory logic, without a browser.

The engine tests run the tiny model with a real embedded Chroma memory; the stop test paces
the model's forward passes, so where generation stands when Stop comes is decided by the
test, not by timing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from collections.abc import Iterator

import pytest

from neeko_app.characters.card import CharacterError, load_character
from neeko_app.chat.engine import ChatEngine, ContextLimits
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.persona import Persona, PersonaError, load_persona, save_persona
from neeko_app.chat.prompt import Turn, character_header
from neeko_app.chat.remembered import exchanges
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.chat.session import ChatSession, SessionError, SessionStore, Versions
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.ui.views import edited_turn, versions_markdown
from neeko_app.user_data import TRASH_DIR, trash_character, user_added
from tests.conftest import write_card
from tests.test_bad_input import snapshot
from tests.tiny_characters import make_tiny_runtime

GREEDY = DecodingSettings(max_new_tokens=8, temperature=0)
SAMPLED = DecodingSettings(max_new_tokens=8, temperature=1.0)
NAMES = {"ada": "Ada Lovelace", "newton": "Isaac Newton"}


# --- sessions: versions and in-place edits (no model) ---------------------------------------


def chat(*lines: str) -> ChatSession:
    session = ChatSession("s1", ["ada"])
    for i, line in enumerate(lines):
        session.add_user(line) if i % 2 == 0 else session.add_reply("ada", line)
    return session


def test_versions_are_kept_browsed_rewritten_saved_and_cut_with_their_turns(tmp_path):
    session = chat("hi", "hello", "tea?")
    session.add_reply("ada", "no", earlier=["yes", "maybe"])
    assert session.versions_of(3) == Versions(["yes", "maybe", "no"], 2)
    assert session.versions_of(1) == Versions(["hello"], 0)  # never regenerated

    session.show_version(3, 0)
    assert session.turns[3] == Turn("character", "yes", "ada")
    session.rewrite(3, "  Yes, please.  ")  # the version shown is the one rewritten
    assert session.versions_of(3) == Versions(["Yes, please.", "maybe", "no"], 0)
    session.rewrite(0, "hello there")  # the user's line, in place: the rest stays
    assert [t.text for t in session.turns] == ["hello there", "hello", "tea?", "Yes, please."]

    store = SessionStore(tmp_path)
    store.save(session)
    saved = json.loads(store.path("s1").read_text())
    assert saved["turns"][3] | {} == {"role": "character", "text": "Yes, please.",
                                     "speaker": "ada", "versions": ["Yes, please.", "maybe", "no"],
                                     "shown": 0}
    assert "versions" not in saved["turns"][1]
    assert store.load("s1") == session

    session.undo()  # the versions go with their turn
    assert session.versions == {} and len(session.turns) == 2


@pytest.mark.parametrize(("operation", "message"), [
    (lambda s: s.rewrite(4, "x"), "there is no message 4 in this chat .it has 4.; it may have"),
    (lambda s: s.rewrite(-1, "x"), "there is no message -1"),
    (lambda s: s.rewrite("1", "x"), "there is no message '1'"),
    (lambda s: s.rewrite(1, "   "), "the new text is empty"),
    (lambda s: s.show_version(3, 3), "this reply has 3 version.s.; there is no version 3"),
    (lambda s: s.show_version(3, -1), "there is no version -1"),
    (lambda s: s.show_version(3, True), "there is no version True"),
    (lambda s: s.show_version(2, 0), "message 2 is the user's; only replies have versions"),
    (lambda s: s.show_version(9, 0), "there is no message 9"),
])
def test_edits_of_messages_or_versions_that_do_not_exist_change_nothing(operation, message):
    session = chat("hi", "hello", "tea?")
    session.add_reply("ada", "no", earlier=["yes", "maybe"])
    before = copy.deepcopy(session)
    with pytest.raises(SessionError, match=message):
        operation(session)
    assert session == before


@pytest.mark.parametrize("versions", [
    {"versions": ["a", "b"], "shown": 2},  # out of range
    {"versions": ["a", "b"], "shown": 0},  # does not hold the turn's text
    {"versions": ["b"], "shown": 0},  # one version is no versions
    {"versions": "b", "shown": 0},
    {"versions": ["a", "b"], "shown": True},
])
def test_malformed_saved_versions_are_refused(tmp_path, versions):
    data = chat("hi", "b").to_dict()
    data["turns"][1] |= versions
    (tmp_path / "s1.json").write_text(json.dumps(data))
    with pytest.raises(SessionError, match="the versions of turn 1 do not hold its text"):
        SessionStore(tmp_path).load("s1")


def test_exchanges_are_numbered_as_memory_keys_them_in_a_group_scene():
    turns = [Turn("user", "Ada and Newton?"), Turn("character", "Yes.", "ada"),
             Turn("character", "Indeed.", "newton"), Turn("user", "Ada, more."),
             Turn("character", "Gladly.", "ada")]
    assert exchanges(turns, "ada", NAMES) == {
        1: ("Ada and Newton?", "Yes."), 2: ("Isaac Newton: Indeed.\nUser: Ada, more.", "Gladly.")}
    assert exchanges(turns, "newton", NAMES) == {
        1: ("User: Ada and Newton?\nAda Lovelace: Yes.", "Indeed.")}


def test_the_view_maps_an_edited_message_to_its_turn_and_counts_versions(tmp_path):
    cast = {slug: load_character(write_card(tmp_path, slug, name))
            for slug, name in NAMES.items()}
    scene = ChatSession("g1", ["ada", "newton"], [Turn("user", "Hi both."),
                                                  Turn("character", "Hello.", "newton")])
    assert edited_turn(scene, cast, 3, "**Isaac Newton:** Good day.") == (1, "Good day.")
    assert edited_turn(scene, cast, 2, "Hi all.") == (0, "Hi all.")
    with pytest.raises(SessionError, match="the greeting is part of the character's card"):
        edited_turn(scene, cast, 1, "Welcome.")
    gone = ChatSession("g2", ["ada", "zed"], scene.turns)  # zed was deleted: no greeting
    assert edited_turn(gone, cast, 1, "Hi all.") == (0, "Hi all.")

    assert versions_markdown(scene) == ""
    scene.add_reply("ada", "Fine.", earlier=["Well.", "Good."])
    assert versions_markdown(scene) == "Reply 3 of 3"
    scene.show_version(2, 0)
    assert versions_markdown(scene) == "Reply 1 of 3"
    scene.add_user("And now?")
    assert versions_markdown(scene) == ""


# --- the persona -----------------------------------------------------------------------------


def test_the_persona_fills_macros_adds_a_line_to_the_header_and_is_saved(tmp_path):
    mira = load_character(write_card(tmp_path, "mira", "Mira",
                                     description="Keeper; {{user}} is her guest."))
    anna = Persona("  Anna   Berg ", "A sailor who lost her ship.")
    assert anna.name == "Anna Berg"
    assert anna.fill("Hello {{user}}, I am {{char}}. <USER>'s tea.", "Mira") == (
        "Hello Anna Berg, I am Mira. Anna Berg's tea.")
    assert character_header(mira, anna) == ("You are Mira: Keeper; Anna Berg is her guest.\n"
                                            "You are talking with Anna Berg: A sailor who lost "
                                            "her ship.")
    assert character_header(mira) == "You are Mira: Keeper; {{user}} is her guest."  # the API
    assert character_header(mira, Persona()) == "You are Mira: Keeper; User is her guest."
    assert Persona("Anna").prompt_note() == "You are talking with Anna."

    assert load_persona(tmp_path) == Persona()  # none saved yet
    save_persona(tmp_path, anna)
    assert load_persona(tmp_path) == anna
    (tmp_path / "persona.json").write_text("{broken")
    assert load_persona(tmp_path) == Persona()


@pytest.mark.parametrize(("name", "about", "message"), [
    ("", "", "needs at least one letter"), ("\u200b", "", "needs at least one letter"),
    ("A" * 61, "", "too long .61 characters; at most 60"),
    ("Anna", "x" * 501, "too long .501 characters; at most 500"),
    ("An\x07na", "", "control character"),
])
def test_bad_personas_are_refused(name, about, message):
    with pytest.raises(PersonaError, match=message):
        Persona(name, about)


# --- the engine: tiny model, real memory ------------------------------------------------------


class Paced:
    """The model behind a scheduler; after `pace()`, each forward pass (the scheduler's
    decoders call `hidden_states`) waits for a permit (`run`). `arrived` counts the passes
    that came to wait, `granted` the permits given."""

    def __init__(self, model) -> None:
        self._model = model
        self.permits = threading.Semaphore(0)
        self.paced = False
        self.arrived = self.granted = 0

    def hidden_states(self, *args, **kwargs):
        if self.paced:
            self.arrived += 1
            assert self.permits.acquire(timeout=60), "a forward pass waited too long"
        return self._model.hidden_states(*args, **kwargs)

    def pace(self) -> None:
        self.arrived = self.granted = 0
        self.paced = True

    def run(self, passes: int, then_wait: bool = True) -> None:
        """Let `passes` more forward passes run; with `then_wait`, return once the next one
        waits (all of them have chosen their tokens)."""
        self.granted += passes
        for _ in range(passes):
            self.permits.release()
        deadline = time.monotonic() + 60
        while then_wait and self.arrived <= self.granted:
            assert time.monotonic() < deadline, "the scheduler did not come back"
            time.sleep(0.01)

    def free(self) -> None:
        """Let every forward pass run unpaced from now on."""
        self.paced = False
        for _ in range(1000):
            self.permits.release()

    def __getattr__(self, name: str):
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return make_tiny_runtime(tmp_path_factory.mktemp("versions"), trained={"ada": "Ada Lovelace"},
                             fused={"newton": "Isaac Newton", "mira": "Mira Vance"})


@pytest.fixture(scope="module")
def memory(runtime) -> MemoryStore:
    store = MemoryStore.open(runtime.settings.memory_dir)
    index_characters(store, runtime.characters.values())
    return store


@pytest.fixture
def engine(runtime, memory, tmp_path) -> Iterator[ChatEngine]:
    """No stop tokens: every reply runs to the length cap (and is never empty)."""
    paced = Paced(runtime.model)
    engine = ChatEngine(runtime, memory, GREEDY, sessions=SessionStore(tmp_path / "sessions"),
                        limits=ContextLimits(context_tokens=1024, max_reply_tokens=64),
                        scheduler=BatchScheduler(paced, runtime.base.tokenizer, stop_ids=[]))
    engine.paced = paced
    yield engine
    paced.free()
    engine.close()


def say(engine: ChatEngine, session: ChatSession, message: str) -> str:
    """The reply to `message` as the session keeps it."""
    [reply] = engine.send(session, message)
    reply.result()
    return reply.finished_text.strip()


def remembered(memory: MemoryStore, session: ChatSession) -> list[tuple[str, int, str, str]]:
    return [(e.character, e.turn, e.user_text, e.reply_text)
            for e in memory.list_session(session.id)]


def test_a_rewritten_message_replaces_its_memory_entry(engine, memory):
    session = engine.open_session(["ada"])
    first = say(engine, session, "My cat is Pixel.")
    say(engine, session, "I sail.")
    engine.rewrite(session, 0, "My dog is Rex.")
    engine.rewrite(session, 3, "Sailing is grand.")
    assert [t.text for t in session.turns] == ["My dog is Rex.", first, "I sail.",
                                               "Sailing is grand."]
    assert remembered(memory, session) == [("ada", 1, "My dog is Rex.", first),
                                           ("ada", 2, "I sail.", "Sailing is grand.")]
    assert engine.load_session(session.id) == session


def test_regenerate_keeps_versions_and_the_one_shown_is_the_one_kept(engine, memory):
    engine.decoding = SAMPLED
    session = engine.open_session(["ada"])
    first = say(engine, session, "Tell me of engines.")
    [again] = engine.regenerate(session)
    again.result()
    second = again.finished_text.strip()
    assert session.versions_of(1) == Versions([first, second], 1)
    assert remembered(memory, session) == [("ada", 1, "Tell me of engines.", second)]

    engine.show_version(session, 1, 0)
    assert session.turns[1].text == first
    assert remembered(memory, session) == [("ada", 1, "Tell me of engines.", first)]
    assert engine.load_session(session.id) == session

    [third] = engine.regenerate(session)  # from version 1 of 2: a third version
    third.result()
    assert len(session.versions_of(1).texts) == 3 and session.versions_of(1).shown == 2
    assert len(remembered(memory, session)) == 1


def test_a_reply_continued_through_the_api_is_remembered_whole(engine, memory):
    lead = "Well met. The engines"
    reply = engine.reply("ada", [Turn("user", "Tell me of engines.")], "api-session",
                         lead=lead)
    reply.result()
    assert reply.text and not reply.text.startswith(lead)  # the new text only
    [kept] = memory.list_session("api-session")
    assert (kept.user_text, kept.reply_text) == ("Tell me of engines.",
                                                 lead + reply.finished_text)


def test_a_new_version_is_sampled_without_the_cooler_opening(engine, monkeypatch):
    """The first reply opens at the opening temperature; a new version at the temperature
    throughout, so that a one-sentence reply does not come back unchanged."""
    engine.decoding = SAMPLED
    settings = []
    submit = engine.scheduler.submit_many

    def recording(requests):
        settings.extend(request.settings for request in requests)
        return submit(requests)
    monkeypatch.setattr(engine.scheduler, "submit_many", recording)
    session = engine.open_session(["ada"])
    say(engine, session, "Tell me of engines.")
    [again] = engine.regenerate(session)
    again.result()
    assert [s.opening_temperature for s in settings] == [SAMPLED.opening_temperature, 0.0]
    assert SAMPLED.opening_temperature > 0 and settings[1].temperature == SAMPLED.temperature


def test_an_abandoned_regenerate_puts_the_reply_back_with_its_versions(engine, memory):
    session = engine.open_session(["ada"])
    say(engine, session, "Hello.")
    [again] = engine.regenerate(session)
    again.result()
    before = copy.deepcopy(session)
    [abandoned] = engine.regenerate(session)
    pieces = iter(abandoned)
    next(pieces)
    pieces.close()  # the reader went away
    assert session == before and engine.load_session(session.id) == before
    assert remembered(memory, session) == [("ada", 1, "Hello.", before.turns[1].text)]


def test_continue_appends_to_the_cut_off_reply(engine, memory):
    session = engine.open_session(["ada"])
    say(engine, session, "Tell me a long story.")
    cut = session.turns[1].text
    reply = engine.continue_reply(session)
    assert reply.prompt.text.endswith(cut.removesuffix("…"))  # the reply goes on from there
    more = reply.result()
    assert reply.finish_reason == "length" and more
    assert len(session.turns) == 2 and session.turns[1].text.startswith(cut.removesuffix("…"))
    assert len(session.turns[1].text) > len(cut)
    assert remembered(memory, session) == [("ada", 1, "Tell me a long story.",
                                            session.turns[1].text)]
    assert engine.load_session(session.id) == session

    unanswered = engine.open_session(["ada"])
    unanswered.add_user("Hello?")
    with pytest.raises(SessionError, match="the last message is not a reply of the character"):
        engine.continue_reply(unanswered)


def test_stop_ends_the_row_and_keeps_the_partial_reply(engine, memory):
    session = engine.open_session(["ada"])
    engine.paced.pace()
    [reply] = engine.send(session, "Count to a hundred.")
    engine.paced.run(3)  # three tokens chosen; the fourth pass waits
    reply.stop()
    engine.paced.run(1, then_wait=False)  # that pass sees the stop and ends the row
    pieces = list(reply)
    engine.paced.free()
    assert reply.finish_reason == "stopped" and not reply.cancelled
    assert reply.text == "".join(pieces) != "" and reply.completion_tokens == 4
    assert engine.scheduler.in_flight() == 0
    assert session.turns[1] == Turn("character", reply.text.strip(), "ada")
    assert remembered(memory, session) == [("ada", 1, "Count to a hundred.", reply.text.strip())]
    assert engine.load_session(session.id) == session


def test_a_stopped_row_leaves_the_rest_of_its_batch_as_it_would_be_alone(engine):
    turns = [Turn("user", "Tell me about engines.")]
    engine.paced.pace()
    stopped, other = engine.replies([("ada", turns), ("newton", turns)])  # one batch
    engine.paced.run(2)
    stopped.stop()
    engine.paced.free()
    stopped.result()
    other.result()
    assert engine.scheduler.stats.batch_sizes[-1] == 2
    assert stopped.finish_reason == "stopped" and stopped.completion_tokens == 3
    assert other.finish_reason == "length" and other.completion_tokens == 8
    assert other.text == engine.reply("newton", turns).result()


def test_the_persona_reaches_session_prompts_but_not_the_api(engine):
    engine.persona = Persona("Anna", "A sailor.")
    session = engine.open_session(["ada"])
    [reply] = engine.send(session, "Hello.")
    reply.result()
    assert reply.prompt.text.startswith(
        "<bos><start_of_turn>user\nYou are Ada Lovelace: Ada Lovelace, a test character.\n"
        "You are talking with Anna: A sailor.\n\n")
    assert "Anna" not in engine.reply("ada", [Turn("user", "Hello.")]).prompt.text


def test_a_session_of_a_removed_character_is_read_only_and_nothing_changes(engine, memory,
                                                                           runtime):
    session = engine.open_session(["mira"])
    say(engine, session, "Hello, Mira.")
    before = copy.deepcopy(session)
    mira = runtime.characters["mira"]
    engine.remove_character("mira")
    try:
        assert memory.search_knowledge("mira", "Mira") == []
        after_removal = snapshot(runtime.settings) | snapshot_of(engine)
        for operation in (lambda: engine.send(session, "Still there?"),
                          lambda: engine.regenerate(session), lambda: engine.undo(session),
                          lambda: engine.rewrite(session, 0, "x"),
                          lambda: engine.show_version(session, 1, 0),
                          lambda: engine.continue_reply(session), lambda: engine.reset(session)):
            with pytest.raises(SessionError, match="mira was deleted: this chat can be read"):
                operation()
        assert session == before and engine.load_session(session.id) == session
        assert snapshot(runtime.settings) | snapshot_of(engine) == after_removal
    finally:
        runtime.characters["mira"] = mira
        index_characters(memory, [mira])


def snapshot_of(engine: ChatEngine) -> dict[str, str]:
    return {f"sessions/{p.name}": p.read_text() for p in engine.sessions.directory.glob("*")}


@pytest.mark.parametrize(("operation", "message"), [
    (lambda e, s: e.rewrite(s, 7, "x"), "there is no message 7 in this chat"),
    (lambda e, s: e.show_version(s, 1, 1), "this reply has 1 version.s.; there is no version 1"),
])
def test_bad_edits_leave_the_session_file_and_memory_unchanged(engine, memory, operation,
                                                               message):
    session = engine.open_session(["ada"])
    say(engine, session, "Hi.")
    before = snapshot_of(engine), remembered(memory, session)
    with pytest.raises(SessionError, match=message):
        operation(engine, session)
    assert (snapshot_of(engine), remembered(memory, session)) == before


# --- deleting a character: to the trash --------------------------------------------------------


def test_only_user_added_characters_go_to_the_trash_and_names_never_clash(runtime, tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    settings = dataclasses.replace(runtime.settings, characters_dir=shipped,
                                   data_dir=tmp_path / "data")
    settings.user_characters_dir.mkdir(parents=True)
    socrates = load_character(write_card(shipped, "socrates", "Socrates"))
    with pytest.raises(CharacterError, match="Socrates comes with the app and cannot be deleted"):
        trash_character(socrates, settings)
    assert socrates.folder.is_dir() and not user_added(socrates, settings)

    places = []
    for _ in range(3):  # the same id added and deleted three times
        mira = load_character(write_card(settings.user_characters_dir, "mira", "Mira"))
        assert user_added(mira, settings)
        places.append(trash_character(mira, settings))
        assert not mira.folder.exists()
    trash = settings.data_dir / TRASH_DIR
    assert places == [trash / "mira", trash / "mira-2", trash / "mira-3"]
    assert all((place / "character.json").is_file() for place in places)


def test_with_one_folder_for_both_the_shipped_list_decides(runtime, tmp_path):
    settings = dataclasses.replace(runtime.settings, characters_dir=tmp_path / "characters",
                                   data_dir=tmp_path)
    settings.characters_dir.mkdir()
    (settings.characters_dir / "shipped.txt").write_text("# shipped\nsocrates\n")
    socrates = load_character(write_card(settings.characters_dir, "socrates", "Socrates"))
    mira = load_character(write_card(settings.characters_dir, "mira", "Mira"))
    assert not user_added(socrates, settings) and user_added(mira, settings)

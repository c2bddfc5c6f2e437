"""Sessions (operations, files), group-scene rules and prompt assembly: no model needed."""

from __future__ import annotations

import json

import pytest

from neeko_app.chat.context import (
    RetrievedContext,
    assemble_prompt,
    memory_header,
    user_turns,
)
from neeko_app.chat.group import addressed, next_speakers, perspective
from neeko_app.chat.prompt import Turn, render_prompt
from neeko_app.chat.session import ChatSession, SessionError, SessionStore
from neeko_app.memory import Exchange, KnowledgeChunk

NAMES = {"ada": "Ada Lovelace", "newton": "Isaac Newton", "cleo": "Cleopatra VII"}


def chat(*lines: str) -> ChatSession:
    """A one-to-one session with Ada: user and Ada alternate, starting with the user."""
    session = ChatSession("s1", ["ada"])
    for i, line in enumerate(lines):
        if i % 2 == 0:
            session.add_user(line)
        else:
            session.add_reply("ada", line)
    return session


# Session operations


def test_regenerate_undo_edit_and_reset_keep_the_transcript_consistent():
    session = chat("hi", "hello", "how are you?", "well")
    assert session.drop_replies() == ["ada"]  # regenerate: the reply goes, the question stays
    assert [t.text for t in session.turns] == ["hi", "hello", "how are you?"]
    assert session.drop_replies() == []  # nothing to drop twice

    session.add_reply("ada", "fine")
    session.undo()  # the last exchange, question and answer
    assert [t.text for t in session.turns] == ["hi", "hello"]

    session = chat("a", "b", "c", "d", "e", "f")
    session.edit(2, "  C!  ")  # rewriting a message drops everything after it
    assert session.turns == [Turn("user", "a"), Turn("character", "b", "ada"), Turn("user", "C!")]
    with pytest.raises(SessionError, match="not a message of the user"):
        session.edit(1, "x")
    with pytest.raises(SessionError, match="not a message of the user"):
        session.edit(7, "x")

    session.reset()
    assert session.turns == [] and session.id == "s1"
    with pytest.raises(SessionError, match="no message yet"):
        session.undo()
    with pytest.raises(SessionError, match="empty"):
        session.add_user("   ")
    with pytest.raises(SessionError, match="not in this session"):
        session.add_reply("newton", "hi")


def test_sessions_are_saved_atomically_and_reload_equal(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    session = chat("hi", "hello", "how are you?")
    group = ChatSession.new(["ada", "newton"])
    store.save(session)
    store.save(group)
    assert store.load("s1") == session
    assert store.load(group.id) == group and len(group.id) == 32
    assert set(store.list_ids()) == {"s1", group.id}
    assert not list((tmp_path / "sessions").glob("*.tmp"))
    saved = json.loads((tmp_path / "sessions" / "s1.json").read_text())
    assert saved["turns"][1] == {"role": "character", "text": "hello", "speaker": "ada"}
    store.delete("s1")
    assert store.list_ids() == [group.id]


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", ".hidden", "x" * 65, "a b", "a\n"])
def test_path_like_session_ids_are_refused(tmp_path, bad):
    store = SessionStore(tmp_path)
    with pytest.raises(SessionError, match="invalid session id"):
        store.load(bad)
    with pytest.raises(SessionError, match="invalid session id"):
        ChatSession(bad, ["ada"])


def test_broken_session_files_give_clear_errors(tmp_path):
    store = SessionStore(tmp_path)
    with pytest.raises(SessionError, match="no saved session 'nope'"):
        store.load("nope")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SessionError, match="not valid JSON"):
        store.load("bad")
    (tmp_path / "other.json").write_text(json.dumps(chat("hi").to_dict()))
    with pytest.raises(SessionError, match="does not hold session 'other'"):
        store.load("other")
    data = chat("hi").to_dict() | {"id": "odd", "turns": [{"role": "narrator", "text": "x"}]}
    (tmp_path / "odd.json").write_text(json.dumps(data))
    with pytest.raises(SessionError, match="unknown role"):
        store.load("odd")
    (tmp_path / "junk.json").write_text(json.dumps({"id": "junk", "turns": ["text"]}))
    with pytest.raises(SessionError, match="malformed"):
        store.load("junk")
    with pytest.raises(SessionError, match="twice"):
        ChatSession("s", ["ada", "ada"])


# Group scenes


def test_each_character_sees_the_scene_as_a_two_party_conversation():
    turns = [Turn("user", "Hello both."), Turn("character", "Greetings.", "ada"),
             Turn("character", "Salve.", "newton"), Turn("user", "Ada, what now?")]
    assert perspective(turns, "ada", NAMES) == [
        Turn("user", "Hello both."), Turn("character", "Greetings.", "ada"),
        Turn("user", "Isaac Newton: Salve.\nUser: Ada, what now?")]
    assert perspective(turns, "newton", NAMES) == [
        Turn("user", "User: Hello both.\nAda Lovelace: Greetings."),
        Turn("character", "Salve.", "newton"), Turn("user", "Ada, what now?")]
    # a one-to-one chat is unchanged; two user messages in a row become one turn
    plain = [Turn("user", "a"), Turn("character", "b", "ada"), Turn("user", "c"),
             Turn("user", "d")]
    assert perspective(plain, "ada", NAMES) == [*plain[:2], Turn("user", "c\n\nd")]


def test_speakers_are_those_named_else_the_next_in_turn():
    assert addressed("Newton, and you Ada Lovelace?", NAMES) == ["newton", "ada"]
    assert addressed("What does Cleopatra think?", NAMES) == ["cleo"]
    assert addressed("Chapter VII of the isaac story, adamant", NAMES) == []  # no name part
    turns = [Turn("user", "hi"), Turn("character", "hello", "newton")]
    assert next_speakers(turns, "and then?", NAMES) == ["cleo"]  # after newton in order
    assert next_speakers([*turns, Turn("character", "x", "cleo")], "so?", NAMES) == ["ada"]
    assert next_speakers([], "hi all", NAMES) == ["ada"]
    assert next_speakers(turns, "Ada?", NAMES) == ["ada"]


# Prompt assembly


def exchange(turn: int, text: str) -> Exchange:
    return Exchange("s1", "ada", turn, text, f"reply {turn}", 0.0)


def test_prompt_stays_within_the_budget_and_keeps_the_latest_message():
    history = []
    for i in range(1, 41):
        history += [Turn("user", f"message number {i} " * (i % 5 + 1)),
                    Turn("character", f"answer {i} " * 3, "ada")]
    knowledge = tuple(KnowledgeChunk(f"knowledge chunk {i} " * 6, "profile") for i in range(3))
    recalled = tuple(exchange(i, f"older message {i} " * 4) for i in range(1, 4))
    asked_before = []

    def retrieve(before_turn: int) -> RetrievedContext:
        asked_before.append(before_turn)
        return RetrievedContext(knowledge, recalled)

    for end in range(1, len(history), 6):  # growing conversations, ending with the user
        turns = history[:end]
        for budget, memory in ((300, 100), (600, 250), (2000, 400)):
            prompt = assemble_prompt("HEADER", "Ada", turns, retrieve, len, budget, memory)
            assert len(prompt.text) <= budget
            assert prompt.history[-1] == turns[-1]
            assert prompt.text.endswith(render_prompt("H", [turns[-1]]).split("H\n\n")[-1])
            kept = user_turns(prompt.history)
            assert prompt.first_turn == user_turns(turns) - kept + 1 == asked_before[-1]
    short = assemble_prompt("HEADER", "Ada", history[:3], retrieve, len, 2000, 400)
    assert short.context == RetrievedContext(knowledge, recalled)
    assert "What you know:\n- knowledge chunk 0" in short.text
    assert "Earlier in this conversation:\nUser: older message 1" in short.text
    assert "Ada: reply 1" in short.text
    # the notes stand just before the last message, not above the older turns
    assert short.text.startswith("<bos><start_of_turn>user\nHEADER\n\nmessage number 1")
    assert short.text.endswith(f"Ada: reply 3\n\n{history[2].text.strip()}<end_of_turn>\n"
                               "<start_of_turn>model\n")
    single = assemble_prompt("HEADER", "Ada", history[:1], retrieve, len, 2000, 400)
    assert single.text == render_prompt(memory_header("HEADER", "Ada", single.context),
                                        history[:1])


def test_lowest_ranked_memories_are_dropped_first_when_space_is_short():
    knowledge = tuple(KnowledgeChunk(f"fact {i} " * 10, "lore") for i in range(3))
    recalled = tuple(exchange(i, f"said {i} " * 10) for i in range(3))
    turns = [Turn("user", "question?")]
    full = assemble_prompt("H", "Ada", turns, lambda _: RetrievedContext(knowledge, recalled),
                           len, 5000, 1000)
    budget = len(full.text) - 60  # room for all but the last one or two items
    cut = assemble_prompt("H", "Ada", turns, lambda _: RetrievedContext(knowledge, recalled),
                          len, budget, budget - 80)
    assert len(cut.text) <= budget
    ranking = [recalled[0], knowledge[0], recalled[1], knowledge[1], recalled[2], knowledge[2]]
    used = [item for item in ranking if item in cut.context.knowledge + cut.context.recalled]
    assert used == ranking[:len(used)] and 3 <= len(used) < 6
    with pytest.raises(ValueError, match="too long"):
        assemble_prompt("H", "Ada", [Turn("user", "x" * 500)],
                        lambda _: RetrievedContext(), len, 400, 100)

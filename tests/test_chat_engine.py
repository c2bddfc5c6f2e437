"""Chat engine on the tiny model with a real embedded Chroma memory: prompts with retrieved
memory, session operations kept in step with memory, group scenes in one batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from neeko_app.chat.engine import ChatEngine, ContextLimits
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.group import perspective
from neeko_app.chat.prompt import Turn
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.chat.session import SessionStore
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from tests.test_memory import HYPATIA, SMALL_TALK
from tests.tiny_characters import make_tiny_runtime

GREEDY = DecodingSettings(max_new_tokens=8, temperature=0)
RAVEN = "Ada keeps a tame raven called Quill in her study."


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = make_tiny_runtime(tmp_path_factory.mktemp("engine"),
                                trained={"ada": "Ada Lovelace", "newton": "Isaac Newton"},
                                fused={"cleo": "Cleopatra"})
    profile = "Ada is a mathematician in London.\n\n" + RAVEN + "\n\nShe loves horses."
    (runtime.characters["ada"].folder / "profile.md").write_text(profile)
    return runtime


@pytest.fixture(scope="module")
def memory(tmp_path_factory, runtime) -> MemoryStore:
    store = MemoryStore.open(tmp_path_factory.mktemp("chroma"))
    assert index_characters(store, runtime.characters.values()) >= 5
    return store


def make_engine(runtime, tmp_path, memory=None, **limits) -> ChatEngine:
    """No stop tokens: a random model's reply could otherwise be empty (and not remembered)."""
    scheduler = BatchScheduler(runtime.model, runtime.base.tokenizer, stop_ids=[])
    return ChatEngine(runtime, memory, GREEDY, sessions=SessionStore(tmp_path / "sessions"),
                      limits=ContextLimits(**limits), scheduler=scheduler)


@pytest.fixture
def engine(runtime, memory, tmp_path) -> Iterator[ChatEngine]:
    engine = make_engine(runtime, tmp_path, memory)
    yield engine
    engine.close()


def say(engine: ChatEngine, session, message: str) -> str:
    [reply] = engine.send(session, message)
    return reply.result()


def test_a_fact_from_turn_2_is_retrieved_into_the_prompt_at_turn_30(runtime, memory, tmp_path):
    engine = make_engine(runtime, tmp_path, memory, context_tokens=900, memory_tokens=400,
                         knowledge_k=2, recall_k=3)
    try:
        session = engine.open_session(["ada"])
        for line in [SMALL_TALK[0], HYPATIA, *SMALL_TALK[1:28]]:
            say(engine, session, line)
        [reply] = engine.send(session, "What was my sister called again, the one with bees?")
        reply.result()
        [about_ada] = engine.send(session, "Tell me about your horses.")
        about_ada.result()
    finally:
        engine.close()
    prompt = reply.prompt
    assert prompt.first_turn > 2 and all(HYPATIA not in t.text for t in prompt.history)
    assert 2 in [e.turn for e in reply.context.recalled]  # came back through memory
    assert HYPATIA in prompt.text
    assert not reply.context.knowledge  # a question about the user's own sister: no notes
    assert about_ada.context.knowledge[0].text in about_ada.prompt.text
    # the same prompts without the notes, which a note contrast decodes beside them
    last_turns = prompt.text[prompt.text.rindex("What was my sister"):]
    assert prompt.without_notes.endswith(last_turns) and HYPATIA not in prompt.without_notes
    assert about_ada.context.knowledge[0].text not in about_ada.prompt.without_notes
    assert about_ada.prompt.without_notes.startswith(about_ada.prompt.text[:20])
    assert engine.count_tokens(prompt.text) == reply.prompt_tokens <= 900 - GREEDY.max_new_tokens
    remembered = memory.list_session(session.id)
    assert [e.turn for e in remembered] == list(range(1, 32))
    assert remembered[1].user_text == HYPATIA and remembered[-2].reply_text == reply.finished_text
    assert engine.sessions.load(session.id) == session and len(session.turns) == 62


def test_regenerate_undo_edit_and_reset_keep_session_and_memory_in_step(engine, memory):
    session = engine.open_session(["newton"])
    say(engine, session, "My cat is called Pixel.")
    second = say(engine, session, "I live in Lyon near the river.")
    [again] = engine.regenerate(session)
    assert again.result() == second and len(session.turns) == 4  # greedy: the same reply

    def remembered() -> list[tuple[int, str]]:
        return [(e.turn, e.user_text) for e in memory.list_session(session.id)]

    assert remembered() == [(1, "My cat is called Pixel."), (2, "I live in Lyon near the river.")]
    engine.undo(session)
    assert [t.text for t in session.turns][:1] == ["My cat is called Pixel."]
    assert len(session.turns) == 2 and remembered() == [(1, "My cat is called Pixel.")]

    [edited] = engine.edit(session, 0, "My dog is called Rex.")
    edited.result()
    assert session.turns == [Turn("user", "My dog is called Rex."),
                             Turn("character", edited.finished_text, "newton")]
    assert remembered() == [(1, "My dog is called Rex.")]
    assert engine.load_session(session.id) == session

    engine.reset(session)
    assert session.turns == [] and remembered() == []
    assert engine.load_session(session.id).turns == []


def test_a_stopped_reply_is_not_kept_and_can_be_regenerated(engine):
    session = engine.open_session(["ada"])
    [reply] = engine.send(session, "Tell me a long story.")
    pieces = iter(reply)
    next(pieces)
    pieces.close()  # the reader went away
    assert reply.cancelled and session.turns == [Turn("user", "Tell me a long story.")]
    [again] = engine.regenerate(session)
    again.result()
    assert [t.role for t in session.turns] == ["user", "character"]


def test_a_context_too_small_for_the_replies_is_refused_at_start(runtime):
    with pytest.raises(ValueError, match="replies of 160 tokens do not fit"):
        ChatEngine(runtime, limits=ContextLimits(context_tokens=256))


def test_a_message_too_long_for_the_context_leaves_the_session_unchanged(runtime, tmp_path):
    engine = make_engine(runtime, tmp_path, context_tokens=300)
    try:
        session = engine.open_session(["ada"])
        with pytest.raises(ValueError, match="too long"):
            engine.send(session, "word " * 200)
        assert session.turns == []
    finally:
        engine.close()


def test_group_scene_drafts_the_named_characters_in_one_batch(runtime, tmp_path):
    engine = make_engine(runtime, tmp_path)
    try:
        scene = engine.open_session(["ada", "newton", "cleo"])
        batches = engine.scheduler.stats.batches
        replies = engine.send(scene, "Cleopatra and Ada, which of you was braver?")
        for reply in reversed(replies):  # read out of order
            reply.result()
        texts = [reply.finished_text for reply in replies]
        assert [r.character for r in replies] == ["cleo", "ada"]
        assert engine.scheduler.stats.batches == batches + 1  # one mixed batch
        assert scene.turns[1:] == [Turn("character", texts[0], "cleo"),
                                   Turn("character", texts[1], "ada")]
        for reply in replies:  # the same request alone gives the same reply
            alone = engine.reply(reply.character, list(reply.prompt.history))
            assert alone.result() == reply.text

        [follow_up] = engine.send(scene, "And what do you think?")  # nobody named
        assert follow_up.character == "newton"  # next in order after the last speaker
        follow_up.result()
        names = {"ada": "Ada Lovelace", "newton": "Isaac Newton", "cleo": "Cleopatra"}
        assert follow_up.prompt.history == tuple(perspective(scene.turns[:-1], "newton", names))
        assert "User: Cleopatra and Ada" in follow_up.prompt.text
        assert "Cleopatra: " in follow_up.prompt.text and "Ada Lovelace: " in follow_up.prompt.text
        assert engine.load_session(scene.id) == scene
    finally:
        engine.close()


class BrokenMemory:
    """A memory whose every call fails (a Chroma server that went away)."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("memory server unreachable")
        return fail


def test_replies_still_come_when_memory_fails(runtime, tmp_path):
    engine = make_engine(runtime, tmp_path, BrokenMemory())
    try:
        session = engine.open_session(["ada"])
        [reply] = engine.send(session, "Hello there.")
        reply.result()
    finally:
        engine.close()
    assert not reply.context and len(session.turns) == 2

"""Training grounded in retrieved knowledge: each conversation gets the notes the chat app's
memory would give its opening question (real MiniLM, real Chroma, tiny tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import chromadb
import pytest

from neeko_app.characters.card import Character, load_character
from neeko_app.cli import main
from neeko_app.memory import CHROMA_URL_ENV, MemoryStore
from neeko_app.memory.client import chroma_settings
from neeko_app.memory.knowledge import index_characters
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.model.tiny import tiny_tokenizer
from neeko_app.training import workflows
from neeko_app.training.data import (
    IGNORE,
    DialogueError,
    Example,
    character_examples,
    load_dialogues,
    tokenize_conversation,
)
from neeko_app.training.grounding import grounded_examples, retrieved_knowledge
from tests.conftest import write_card

PROFILE = """## Bread
She bakes rye loaves before dawn in a clay oven behind the harbour gate.

## Ships
Her brother's ships carry salt fish to Tyre and bring back purple cloth.

## Taxes
The harbour master takes one coin in ten from every cart at the market.
"""
QUESTIONS = ["How do you bake your rye bread?", "Where do your brother's ships sail?",
             "Who collects the market tax?"]


def merchant(root: Path) -> Character:
    folder = write_card(root, "merchant", "Merchant")
    (folder / "profile.md").write_text(PROFILE)
    rows = [{"id": f"m{i}", "turns": [{"role": "user", "text": question},
                                      {"role": "character", "text": f"Answer {i}, plainly."}]}
            for i, question in enumerate(QUESTIONS)]
    (folder / "dialogues.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return load_character(folder)


def learned_text(example: Example, tokenizer) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels,
                                                   strict=True) if label != IGNORE])


def test_each_question_gets_what_the_apps_memory_finds_for_it(tmp_path, monkeypatch):
    character = merchant(tmp_path)
    monkeypatch.setenv(CHROMA_URL_ENV, "http://127.0.0.1:9")  # no server there: must not be used
    found = retrieved_knowledge(character, QUESTIONS, 2)
    assert [chunks[0].text.split("\n")[0] for chunks in found] == ["Bread", "Ships", "Taxes"]
    monkeypatch.delenv(CHROMA_URL_ENV)
    store = MemoryStore.open(tmp_path / "memory")
    index_characters(store, [character])
    assert found == [store.search_knowledge("merchant", q, 2) for q in QUESTIONS]
    assert retrieved_knowledge(character, QUESTIONS, 2) == found  # nothing left behind


def test_grounded_examples_put_the_notes_before_the_question_and_learn_the_same_words(
        tmp_path):
    character, tokenizer = merchant(tmp_path), tiny_tokenizer()
    conversations = load_dialogues(character.folder / "dialogues.jsonl")
    grounded = grounded_examples(character, conversations, tokenizer, 2000, 1)
    short = character_examples(character, conversations, tokenizer, 2000)
    for example, plain, conversation, topic in zip(grounded, short, conversations,
                                                   ["rye loaves", "salt fish", "one coin"],
                                                   strict=True):
        text = tokenizer.decode(example.input_ids)
        notes = text.index("What you know:\n- ")
        assert notes < text.index(topic) < text.index(conversation.turns[0].text)
        assert learned_text(example, tokenizer) == learned_text(plain, tokenizer)
        assert example.block == "merchant"


def test_notes_that_leave_no_room_for_the_reply_are_dropped_lowest_ranked_first(tmp_path):
    character, tokenizer = merchant(tmp_path), tiny_tokenizer()
    conversation = load_dialogues(character.folder / "dialogues.jsonl")[:1]
    with_three = grounded_examples(character, conversation, tokenizer, 2000, 3)[0]
    with_one = grounded_examples(character, conversation, tokenizer, 2000, 1)[0]
    assert len(with_one.input_ids) < len(with_three.input_ids)
    fitted = grounded_examples(character, conversation, tokenizer, len(with_one.input_ids), 3)
    assert fitted[0] == with_one  # the best note kept, the two others dropped

    bare = tokenize_conversation(conversation[0], f"You are Merchant: {character.description}",
                                 tokenizer, "merchant", 2000)
    assert grounded_examples(character, conversation, tokenizer, len(bare.input_ids), 3) == [bare]
    with pytest.raises(DialogueError, match="before any reply"):
        grounded_examples(character, conversation, tokenizer, len(bare.input_ids) - 8, 3)


def test_expansion_with_knowledge_trains_on_grounded_examples(tmp_path, monkeypatch):
    characters = tmp_path / "characters"
    characters.mkdir()
    merchant(characters)
    asked: list[int] = []

    def spy(character, conversations, tokenizer, max_tokens, k):
        asked.append(k)
        return grounded_examples(character, conversations, tokenizer, max_tokens, k)

    monkeypatch.setattr(workflows, "grounded_examples", spy)
    code = main(["add-character", str(characters / "merchant"), "--mode", "expansion",
                 "--with-knowledge", "2", "--max-tokens", "600", "--epochs", "1",
                 "--batch-size", "3", "--base-model", "tiny", "--device", "cpu",
                 "--characters-dir", str(characters), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert asked == [2]  # the training dialogues (no held-out set here)
    assert (characters / "merchant" / "block.safetensors").is_file()


def test_scratch_stores_see_only_their_own_characters_and_leave_no_collection(tmp_path):
    character = merchant(tmp_path)
    with scratch_knowledge([character]) as mine, scratch_knowledge([]) as other:
        assert mine.search_knowledge("merchant", QUESTIONS[1], 1)[0].text.startswith("Ships")
        assert other.search_knowledge("merchant", QUESTIONS[1], 1) == []
    client = chromadb.EphemeralClient(settings=chroma_settings())
    assert not [c for c in client.list_collections() if c.name.startswith("scratch-")]

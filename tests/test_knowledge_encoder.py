"""The knowledge encoder: MiniLM with a LoRA tuned on the knowledge exchanges (training,
the adapter file, its use by the memory, and the shipped adapter against plain MiniLM)."""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from langchain_core.embeddings import Embeddings

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.characters.registry import discover_characters
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.memory import KnowledgeChunk, MemoryStore, MiniLMEmbeddings, open_client
from neeko_app.memory.knowledge_encoder import (
    ENCODER_FILE,
    KnowledgeEncoderError,
    TunedMiniLMEmbeddings,
    first_note_embeddings,
)
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.storage import atomic_save_tensors
from neeko_app.training.knowledge_encoder import (
    EncoderTraining,
    encoder_pairs,
    note_batches,
    save_encoder,
    tune_encoder,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "characters"


def test_batches_never_hold_a_note_twice_and_keep_every_pair() -> None:
    pairs = [(f"question {i}", f"note {i % 5}") for i in range(23)]
    batches = note_batches(pairs, 4, random.Random(0))
    assert sorted(p for b in batches for p in b) == sorted(pairs)
    assert all(len(b) <= 4 for b in batches)
    assert all(len({note for _, note in b}) == len(b) for b in batches)


def gold_ranks(embeddings: Embeddings, pairs: list[tuple[str, str]]) -> list[int]:
    """Where each question's own note ranks among all the notes of `pairs` (0: first)."""
    notes = sorted({note for _, note in pairs})
    vectors = np.array(embeddings.embed_documents(notes))
    asked = np.array(embeddings.embed_documents([q for q, _ in pairs]))
    scores = asked @ vectors.T
    return [int((row > row[notes.index(note)]).sum()) for row, (_, note) in zip(scores, pairs,
                                                                                 strict=True)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    """An adapter tuned for one epoch on 96 of Caesar's questions, and those pairs."""
    caesar = discover_characters(SHIPPED).characters["caesar"]
    pairs = encoder_pairs([caesar])["caesar"][:96]
    training = EncoderTraining(epochs=1)
    encoder = tune_encoder({"caesar": pairs}, training)
    path = tmp_path_factory.mktemp("encoder") / ENCODER_FILE
    save_encoder(path, encoder, training, len(pairs))
    return path, pairs


def test_tuning_brings_questions_nearer_their_notes(tuned) -> None:
    path, pairs = tuned
    before = gold_ranks(MiniLMEmbeddings(), pairs)
    after = gold_ranks(TunedMiniLMEmbeddings(path), pairs)
    assert sum(r == 0 for r in after) > sum(r == 0 for r in before)
    assert np.mean(after) < np.mean(before)


def test_the_adapter_file_gives_back_the_tuned_vectors(tuned) -> None:
    path, pairs = tuned
    texts = [q for q, _ in pairs[:3]]
    loaded = np.array(TunedMiniLMEmbeddings(path).embed_documents(texts))
    plain = np.array(MiniLMEmbeddings().embed_documents(texts))
    assert np.allclose(np.linalg.norm(loaded, axis=1), 1, atol=1e-5)
    assert np.abs(loaded - plain).max() > 1e-3
    again = np.array(TunedMiniLMEmbeddings(path).embed_documents(texts))
    assert np.array_equal(loaded, again)


def test_a_broken_adapter_is_named_in_the_error(tmp_path: Path, tuned) -> None:
    text = tmp_path / "notes.safetensors"
    text.write_text("not tensors")
    foreign = tmp_path / "foreign.safetensors"
    atomic_save_tensors(foreign, {"w": torch.zeros(2)})
    wrong_rank = tmp_path / "rank.safetensors"
    wrong_rank.write_bytes(tuned[0].read_bytes().replace(b'"rank":"16"', b'"rank":"17"'))
    for path, said in ((text, "not a readable safetensors"),
                       (foreign, "not a knowledge encoder"),
                       (wrong_rank, "do not fit MiniLM at rank 17")):
        with pytest.raises(KnowledgeEncoderError, match=said) as caught:
            TunedMiniLMEmbeddings(path)
        assert str(path) in str(caught.value)


def test_settings_choose_the_encoder(tmp_path: Path, tuned,
                                     caplog: pytest.LogCaptureFixture) -> None:
    characters = tmp_path / "characters"
    characters.mkdir()
    auto = Settings(characters_dir=characters)
    assert first_note_embeddings(auto) is None  # no adapter: plain MiniLM alone
    shutil.copy(tuned[0], characters / ENCODER_FILE)
    assert isinstance(first_note_embeddings(auto), TunedMiniLMEmbeddings)
    assert first_note_embeddings(replace(auto, knowledge_encoder="plain")) is None
    (characters / ENCODER_FILE).write_text("truncated")  # a shipped adapter gone bad
    assert first_note_embeddings(auto) is None
    assert "plain MiniLM alone" in caplog.text
    named = Settings(knowledge_encoder=str(characters / ENCODER_FILE))
    with pytest.raises(KnowledgeEncoderError, match="not a readable"):
        first_note_embeddings(named)
    with pytest.raises(KnowledgeEncoderError, match="no such file"):
        first_note_embeddings(Settings(knowledge_encoder=str(tmp_path / "missing")))


class Recording(Embeddings):
    """Embeddings that keep what they embedded, under a fingerprint of their own."""

    def __init__(self, inner: Embeddings, fingerprint: str | None) -> None:
        self.inner, self.fingerprint, self.embedded = inner, fingerprint, []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded += texts
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.embedded.append(text)
        return self.inner.embed_query(text)


class Keywords(Embeddings):
    """A made-up encoder that reads "wife" as "river" (so its ranking differs from MiniLM's)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        text = text.lower()
        vector = np.array([("river" in text) + ("wife" in text), "mother" in text, 0.1])
        return (vector / np.linalg.norm(vector)).tolist()


RIVER = KnowledgeChunk("I crossed the Rubicon, a river, in 49 BC.", "fact", ("Which river?",))
MOTHER = KnowledgeChunk("My mother was Aurelia.", "fact", ("Who was your mother?",))
WIFE = KnowledgeChunk("My first wife was Cornelia.", "fact", ("Who did you marry first?",))


def test_the_first_note_comes_from_the_tuned_encoder_the_others_from_minilm(
        tmp_path: Path) -> None:
    plain = Recording(MiniLMEmbeddings(), None)
    alone = MemoryStore(open_client(tmp_path / "plain"), plain)
    alone.index_character("caesar", [RIVER, MOTHER, WIFE])
    assert alone.search_knowledge("caesar", "Who was your wife?", 3)[0].text == WIFE.text

    first = Recording(Keywords(), "keywords-1")
    store = MemoryStore(open_client(tmp_path / "both"), plain, first_note_embeddings=first)
    store.index_character("caesar", [RIVER, MOTHER, WIFE])
    found = store.search_knowledge("caesar", "Who was your wife?", 3)
    assert [c.text for c in found] == [RIVER.text, WIFE.text, MOTHER.text]
    assert [c.text for c in store.search_knowledge("caesar", "Who was your wife?", 1)] == [
        RIVER.text]
    assert first.embedded[-1] == "Who was your wife?"

    plain.embedded.clear()
    store.remember_exchange("s1", "caesar", "I keep bees.", "Good.", 1)
    store.recall("s1", "caesar", "bees?")
    assert plain.embedded == ["I keep bees.\nGood.", "bees?"]  # conversations: MiniLM
    assert first.embedded[-1] == "Who was your wife?"

    store.forget_character("caesar")  # the character deleted: both copies go
    assert store.search_knowledge("caesar", "Who was your wife?", 3) == []


def test_a_new_encoder_embeds_its_copy_of_the_knowledge_again(tmp_path: Path) -> None:
    notes = [RIVER, MOTHER]
    plain, first = Recording(MiniLMEmbeddings(), None), Recording(Keywords(), "keywords-1")
    MemoryStore(open_client(tmp_path), plain, first_note_embeddings=first).index_character(
        "caesar", notes)
    assert len(plain.embedded) == len(first.embedded) == 4
    MemoryStore(open_client(tmp_path), plain, first_note_embeddings=first).index_character(
        "caesar", notes)
    assert len(plain.embedded) == len(first.embedded) == 4  # nothing changed: none embedded
    second = Recording(Keywords(), "keywords-2")
    MemoryStore(open_client(tmp_path), plain, first_note_embeddings=second).index_character(
        "caesar", notes)
    assert len(plain.embedded) == 4  # MiniLM's copy is kept
    assert sorted(second.embedded) == sorted([RIVER.text, *RIVER.questions,
                                              MOTHER.text, *MOTHER.questions])


def test_tune_retriever_writes_an_adapter_the_app_then_uses(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    characters = tmp_path / "characters"
    shutil.copytree(SHIPPED / "socrates", characters / "socrates")
    out = tmp_path / "encoder.safetensors"
    assert main(["tune-retriever", "plato", "--characters-dir", str(characters),
                 "--data-dir", str(tmp_path / "data")]) == 2
    assert "unknown character(s) plato" in capsys.readouterr().err
    assert main(["tune-retriever", "--epochs", "1", "--out", str(out), "--characters-dir",
                 str(characters), "--data-dir", str(tmp_path / "data")]) == 0
    assert "of 1 characters (socrates)" in capsys.readouterr().out
    settings = Settings(characters_dir=characters, knowledge_encoder=str(out))
    assert isinstance(first_note_embeddings(settings), TunedMiniLMEmbeddings)


def quiz_first(settings: Settings, slugs: list[str]) -> int:
    """How many of these characters' quiz questions get their fact note ranked first by the
    app's search with the knowledge encoder of `settings`."""
    characters = [discover_characters(SHIPPED).characters[slug] for slug in slugs]
    first = 0
    with scratch_knowledge(characters, settings) as store:
        for character in characters:
            facts = {f.id: f for f in load_facts(character.folder / FACTS_FILE)}
            for question in load_quiz(character.folder / QUIZ_FILE, list(facts.values())):
                found = store.search_knowledge(character.slug, question.question, 1)[0]
                first += found.text.strip() == facts[question.fact].fact.strip()
    return first


def test_the_shipped_encoder_finds_quiz_notes_better_than_plain_minilm() -> None:
    """The quiz's questions were never tuned on: the adapter must generalise to them."""
    slugs = ["caesar", "beethoven"]
    shipped = Settings(knowledge_encoder=str(SHIPPED / ENCODER_FILE))
    assert quiz_first(shipped, slugs) > quiz_first(Settings(knowledge_encoder="plain"), slugs)

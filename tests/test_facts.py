"""Fact sheets, fact quizzes and knowledge data: formats, clear errors, and the shipped files."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from neeko_app.characters.card import load_character
from neeko_app.characters.facts import (
    FACTS_FILE,
    PARAPHRASES_FILE,
    QUIZ_FILE,
    FactSheetError,
    fact_questions,
    load_facts,
    load_quiz,
)
from neeko_app.characters.registry import check_character
from neeko_app.evaluation.overlap import words
from neeko_app.evaluation.recall import PROBES
from neeko_app.memory import KnowledgeChunk
from neeko_app.memory.knowledge import character_chunks
from neeko_app.training.data import DialogueError, load_dialogues
from neeko_app.training.knowledge_data import KNOWLEDGE_FILE, RECALL_FILE, load_recall
from tests.conftest import write_card

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent for p in (ROOT / "characters").glob(f"*/{QUIZ_FILE}"))
REFERENCE = ROOT.parent / "shared" / "reference" / "profiles"
REFERENCE_FILES = {"beethoven": "Beethoven", "caesar": "Caesar", "cleopatra": "Cleopatra",
                   "martin-luther-king": "Martin", "newton": "Newton", "socrates": "Socrates",
                   "spartacus": "Spartacus"}
FACT = {"id": "x-f001", "fact": "X was born in Rome.", "topic": "places",
        "source": "born in Rome", "after_now": False}
QUESTION = {"id": "x-q01", "fact": "x-f001", "question": "Which city saw your birth?",
            "answer": r"\brome\b"}


def write_lines(path: Path, *records: object) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records)
                    + "\n")
    return path


@pytest.mark.parametrize(("record", "message"), [
    ("{broken", "facts.jsonl line 2: not JSON"),
    ({**FACT, "topic": "gossip"}, "facts.jsonl line 2: topic 'gossip'"),
    ({**FACT, "fact": ""}, "facts.jsonl line 2: 'fact' must be a non-empty string"),
    ({**FACT, "source": " ".join(["word"] * 13)}, "facts.jsonl line 2: the source quote"),
    ({**FACT, "after_now": "no"}, "facts.jsonl line 2: 'after_now' must be true or false"),
    ([1, 2], "facts.jsonl line 2: expected a JSON object"),
])
def test_a_broken_fact_line_names_the_file_and_line(tmp_path, record, message):
    path = write_lines(tmp_path / FACTS_FILE, {**FACT, "id": "x-f000"}, record)
    with pytest.raises(FactSheetError, match=re.escape(message)):
        load_facts(path)


def test_duplicate_ids_and_empty_files_are_refused(tmp_path):
    with pytest.raises(FactSheetError, match="'x-f001' appears twice"):
        load_facts(write_lines(tmp_path / FACTS_FILE, FACT, FACT))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(FactSheetError, match="holds no entries"):
        load_facts(tmp_path / "empty.jsonl")
    with pytest.raises(FactSheetError, match="does not exist"):
        load_facts(tmp_path / "missing.jsonl")


def test_a_broken_quiz_line_names_the_file_and_line(tmp_path):
    path = write_lines(tmp_path / QUIZ_FILE, QUESTION, {**QUESTION, "id": "x-q02",
                                                        "answer": "(unclosed"})
    with pytest.raises(FactSheetError, match=r"quiz.jsonl line 2: 'answer' is not a valid"):
        load_quiz(path)


def test_quiz_questions_must_ask_a_fact_the_character_knows(tmp_path):
    facts = [load_facts(write_lines(tmp_path / FACTS_FILE, FACT))[0]]
    later = [load_facts(write_lines(tmp_path / "later.jsonl", {**FACT, "after_now": True}))[0]]
    path = write_lines(tmp_path / QUIZ_FILE, QUESTION)
    assert load_quiz(path, facts)[0].fact == "x-f001"
    with pytest.raises(FactSheetError, match="not a fact the character knows"):
        load_quiz(path, later)
    with pytest.raises(FactSheetError, match="not a fact the character knows"):
        load_quiz(write_lines(tmp_path / "q.jsonl", {**QUESTION, "fact": "x-f999"}), facts)


def test_the_answer_pattern_scores_a_reply_case_insensitively(tmp_path):
    question = load_quiz(write_lines(tmp_path / QUIZ_FILE, QUESTION))[0]
    assert question.is_answered_by("I was born in ROME, by the Tiber.")
    assert not question.is_answered_by("I was born in Romeo's house.")
    assert not question.is_answered_by("A city of hills.")


def test_a_broken_recall_line_names_the_file_and_line(tmp_path):
    turns = [{"role": "user", "text": "My dog?"}, {"role": "character", "text": "Pip."}]
    good = {"id": "r1", "earlier": [{"user": "My dog is Pip.", "character": "A fine name."}],
            "turns": turns}
    assert load_recall(write_lines(tmp_path / RECALL_FILE, good))[0].earlier == (
        ("My dog is Pip.", "A fine name."),)
    with pytest.raises(DialogueError, match="recall.jsonl line 2: 'earlier' must be"):
        load_recall(write_lines(tmp_path / RECALL_FILE, good, {**good, "earlier": []}))
    with pytest.raises(DialogueError, match="line 1: earlier exchange 1 needs"):
        load_recall(write_lines(tmp_path / RECALL_FILE, {**good, "earlier": [{"user": "x"}]}))


def _exchange(facts: list[str], *user_texts: str) -> dict:
    turns = [turn for text in user_texts
             for turn in ({"role": "user", "text": text}, {"role": "character", "text": "Rome."})]
    return {"id": "k", "facts": facts, "turns": turns}


def test_a_fact_note_carries_the_questions_that_ask_for_it(tmp_path, caplog):
    folder = write_card(tmp_path, "ada", "Ada")
    write_lines(folder / FACTS_FILE, FACT, {**FACT, "id": "x-f002", "fact": "X left for Gaul."})
    write_lines(folder / KNOWLEDGE_FILE, _exchange(["x-f001"], "Where were you born?"),
                _exchange(["x-f001", "x-f002"], "Good day.", "Your birthplace, and then?"))
    chunks = character_chunks(load_character(folder))
    assert chunks[:2] == [
        KnowledgeChunk(FACT["fact"], "fact",
                       ("Where were you born?", "Your birthplace, and then?")),
        KnowledgeChunk("X left for Gaul.", "fact", ("Your birthplace, and then?",))]

    write_lines(folder / KNOWLEDGE_FILE, _exchange(["x-f001"], "Where were you born?"),
                {**_exchange([], "Hi"), "facts": None})
    with pytest.raises(FactSheetError, match="knowledge.jsonl line 2: 'facts' must be a list"):
        fact_questions(folder)
    assert any("knowledge.jsonl line 2: 'facts'" in issue
               for issue in check_character(load_character(folder)))
    with caplog.at_level("WARNING"):
        chunks = character_chunks(load_character(folder))
    assert chunks[0] == KnowledgeChunk(FACT["fact"], "fact")  # found by its text alone
    assert "knowledge.jsonl line 2" in caplog.text


# ---- the shipped characters' files ------------------------------------------------------


def test_every_shipped_character_has_a_fact_sheet_and_quiz():
    assert {p.name for p in SHIPPED} == set(REFERENCE_FILES)


def _user_turns(folder: Path) -> list[str]:
    return [turn.text for name in ("dialogues.jsonl", KNOWLEDGE_FILE, PARAPHRASES_FILE)
            if (folder / name).is_file() for conversation in load_dialogues(folder / name)
            for turn in conversation.turns if turn.role == "user"]


def _runs(text: str, size: int) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_facts_are_augmented_and_the_quiz_is_held_out(folder):
    facts = load_facts(folder / FACTS_FILE)
    quiz = load_quiz(folder / QUIZ_FILE, facts)
    assert len(facts) >= 80 and len(quiz) >= 40
    assert any(fact.after_now for fact in facts)
    taught = Counter(fact_id for line in (folder / KNOWLEDGE_FILE).read_text().splitlines()
                     if line.strip() for fact_id in json.loads(line)["facts"])
    assert {fact.id: taught[fact.id] for fact in facts if taught[fact.id] < 5} == {}
    assert len(load_recall(folder / RECALL_FILE)) >= 40
    by_id = {fact.id: fact for fact in facts}
    trained = set().union(*(_runs(text, 4) for text in _user_turns(folder)))
    for question in quiz:
        assert question.is_answered_by(by_id[question.fact].fact), question.id
        assert not _runs(question.question, 4) & trained, question.id


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_the_recall_probes_answers_are_in_no_training_file(folder):
    """The memory probes of `neeko eval-recall` must be answerable only from memory."""
    training = " ".join((folder / name).read_text(encoding="utf-8")
                        for name in ("dialogues.jsonl", KNOWLEDGE_FILE, RECALL_FILE))
    leaked = [probe.answer for probe in PROBES if re.search(probe.answer, training, re.I)]
    assert leaked == []


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is not beside the repo")
@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_facts_are_checked_against_the_reference_and_not_copied(folder):
    reference = " ".join((REFERENCE / f"wiki_{REFERENCE_FILES[folder.name]}.txt")
                         .read_text(encoding="utf-8").split())
    facts = load_facts(folder / FACTS_FILE)
    assert [f.id for f in facts if " ".join(f.source.split()) not in reference] == []
    quiz = load_quiz(folder / QUIZ_FILE, facts)
    assert [q.id for q in quiz if not q.is_answered_by(reference)] == []
    copied = _runs(reference, 8)
    written = [f.fact for f in facts] + [turn.text for name in (KNOWLEDGE_FILE, PARAPHRASES_FILE)
                                         if (folder / name).is_file()
                                         for c in load_dialogues(folder / name)
                                         for turn in c.turns]
    assert [text for text in written if _runs(text, 8) & copied] == []


def test_the_registry_check_reports_broken_knowledge_files(tmp_path):
    folder = write_card(tmp_path, "ada", "Ada")
    write_lines(folder / FACTS_FILE, FACT)
    write_lines(folder / QUIZ_FILE, QUESTION, {**QUESTION, "id": "x-q02", "fact": "x-f404"})
    write_lines(folder / KNOWLEDGE_FILE, {"id": "k1", "turns": [{"role": "user", "text": "Hi"}]})
    write_lines(folder / RECALL_FILE, "{broken")
    write_lines(folder / PARAPHRASES_FILE, {"id": "p1", "turns": []})
    issues = check_character(load_character(folder))
    assert any("quiz.jsonl: question x-q02 names 'x-f404'" in issue for issue in issues)
    assert any("knowledge.jsonl line 1: the last turn must be the character's" in issue
               for issue in issues)
    assert any("recall.jsonl line 1: not JSON" in issue for issue in issues)
    assert any("paraphrases.jsonl line 1: expected an object with a non-empty 'turns'" in issue
               for issue in issues)

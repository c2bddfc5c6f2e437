"""A character's fact sheet (`facts.jsonl`) and held-out fact quiz (`quiz.jsonl`).

    facts.jsonl  {"id": "caesar-f001", "fact": "...", "topic": "dates",
                  "source": "<= 12 words quoted from the reference", "after_now": false}
    quiz.jsonl   {"id": "caesar-q01", "fact": "caesar-f012", "question": "...",
                  "answer": "<regular expression, matched case-insensitively>"}

A fact marked `after_now` happens after the moment the card sets the scene (the
character's own death, for most): it is kept for checking but never given to the character
as something it knows, and the quiz does not ask it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from neeko_app.chat.sentences import kept_sentences
from neeko_app.jsonl import jsonl_records

FACTS_FILE = "facts.jsonl"
QUIZ_FILE = "quiz.jsonl"
KNOWLEDGE_FILE = "knowledge.jsonl"  # the training exchanges that teach the facts
# more wordings of the same facts (twelve styles a fact), trained on but not indexed: their
# questions would more than triple the notes memory searches
PARAPHRASES_FILE = "paraphrases.jsonl"
FACT_TOPICS = ("family", "places", "dates", "works", "people", "beliefs", "death", "life")
MAX_SOURCE_WORDS = 12


class FactSheetError(ValueError):
    """A fact sheet or quiz file is missing or malformed; the message names file and line."""


@dataclass(frozen=True)
class Fact:
    id: str
    fact: str
    topic: str
    source: str
    after_now: bool = False


@dataclass(frozen=True)
class QuizQuestion:
    id: str
    fact: str  # the id of the fact it asks about
    question: str
    answer: re.Pattern

    def is_answered_by(self, reply: str) -> bool:
        """Whether `reply` holds the answer."""
        return self.answer.search(reply) is not None

    def is_answered_first_by(self, reply: str) -> bool:
        """Whether the first sentence of `reply` holds the answer, the sentence ended as the
        chat app ends one (`chat.sentences`: "Op. 84" and "J. S. Bach" go on)."""
        return self.is_answered_by(kept_sentences(reply.strip(), 1))


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FactSheetError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _object(raw: object, where: str) -> dict:
    if not isinstance(raw, dict):
        raise FactSheetError(f"{where}: expected a JSON object")
    return raw


def parse_fact(raw: object, where: str) -> Fact:
    """One facts.jsonl record -> Fact; FactSheetError says what is wrong and where."""
    raw = _object(raw, where)
    topic = _text(raw, "topic", where)
    if topic not in FACT_TOPICS:
        raise FactSheetError(f"{where}: topic {topic!r} is not one of {', '.join(FACT_TOPICS)}")
    source = _text(raw, "source", where)
    if len(source.split()) > MAX_SOURCE_WORDS:
        raise FactSheetError(f"{where}: the source quote has more than {MAX_SOURCE_WORDS} words")
    after_now = raw.get("after_now", False)
    if not isinstance(after_now, bool):
        raise FactSheetError(f"{where}: 'after_now' must be true or false")
    return Fact(_text(raw, "id", where), _text(raw, "fact", where), topic, source, after_now)


def parse_quiz_question(raw: object, where: str) -> QuizQuestion:
    """One quiz.jsonl record -> QuizQuestion; FactSheetError for a bad field or regex."""
    raw = _object(raw, where)
    pattern = _text(raw, "answer", where)
    try:
        answer = re.compile(pattern, re.IGNORECASE)
    except re.error as err:
        raise FactSheetError(f"{where}: 'answer' is not a valid regular expression ({err})"
                             ) from None
    return QuizQuestion(_text(raw, "id", where), _text(raw, "fact", where),
                        _text(raw, "question", where), answer)


def _unique(items: list, path: Path) -> list:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise FactSheetError(f"{path.name}: the id {item.id!r} appears twice")
        seen.add(item.id)
    if not items:
        raise FactSheetError(f"{path} holds no entries")
    return items


def load_facts(path: str | Path) -> list[Fact]:
    """Read a facts.jsonl file."""
    return _unique([parse_fact(raw, where) for where, raw in jsonl_records(path, FactSheetError)],
                   Path(path))


def load_quiz(path: str | Path, facts: list[Fact] | None = None) -> list[QuizQuestion]:
    """Read a quiz.jsonl file; with `facts`, every question must name one of them that the
    character can know (not `after_now`)."""
    questions = _unique([parse_quiz_question(raw, where)
                         for where, raw in jsonl_records(path, FactSheetError)], Path(path))
    if facts is not None:
        known = {fact.id for fact in facts if not fact.after_now}
        for question in questions:
            if question.fact not in known:
                raise FactSheetError(f"{Path(path).name}: question {question.id} names "
                                     f"{question.fact!r}, not a fact the character knows")
    return questions


def known_facts(folder: Path) -> list[Fact]:
    """The facts of the character in `folder` that it knows at its "now" ([] without a sheet)."""
    path = folder / FACTS_FILE
    return [fact for fact in load_facts(path) if not fact.after_now] if path.is_file() else []


def fact_questions(folder: Path) -> dict[str, list[str]]:
    """For each fact id, the questions that ask for it in the character's knowledge
    exchanges (each exchange's last user message); {} without a knowledge file."""
    path = folder / KNOWLEDGE_FILE
    if not path.is_file():
        return {}
    questions: dict[str, list[str]] = {}
    for where, raw in jsonl_records(path, FactSheetError):
        raw = _object(raw, where)
        facts = raw.get("facts")
        if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
            raise FactSheetError(f"{where}: 'facts' must be a list of fact ids")
        question = _last_user_text(raw.get("turns"))
        if not question:
            raise FactSheetError(f"{where}: the exchange needs a user message")
        for fact_id in facts:
            questions.setdefault(fact_id, []).append(question)
    return questions


def _last_user_text(turns: object) -> str:
    """The text of the last user turn in a record's `turns` ("" if there is none)."""
    texts = [turn["text"].strip() for turn in turns if isinstance(turn, dict)
             and turn.get("role") == "user" and isinstance(turn.get("text"), str)
             ] if isinstance(turns, list) else []
    return texts[-1] if texts else ""

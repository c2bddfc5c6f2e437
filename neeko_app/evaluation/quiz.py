"""`neeko quiz`: the held-out fact quiz, and the headline measures of every reply.

Each character answers its `quiz.jsonl` questions, one fresh conversation per question,
through each system of `evaluation.systems`. A reply is scored on

- **accuracy**: the question's answer pattern is found in it;
- **answered first**: the pattern is found in its first sentence, the stricter reading (a
  reply that names many things, or the answer late after a wrong one, does not count);
- **in role**: it is identified as its own character by the nearest-profile test, *and*
  it speaks in the first person, *and* it copies no run of `COPY_WORDS` words of the card
  (reciting the card wins the identification test but is not role-play);
- **relevance**: the cosine of the question's and the reply's MiniLM embeddings;
- **role identification** alone, as a secondary column.

Blocks trained before may be compared by loading them in place of the current ones
(`replace_blocks`); their systems are reported under a label, e.g. `blocks@before`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from neeko_app.characters.card import Character
from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, QuizQuestion, load_facts, load_quiz
from neeko_app.chat.generation import DecodingSettings
from neeko_app.evaluation import QUIZ_SYSTEMS
from neeko_app.evaluation.heldout import decoding_of_reply, generated_replies
from neeko_app.evaluation.in_role import copied_card_words, in_role
from neeko_app.evaluation.overlap import COPY_WORDS
from neeko_app.evaluation.role_identification import (
    identification_cast,
    identify,
    profile_embedding,
)
from neeko_app.evaluation.systems import system_request
from neeko_app.evaluation.text_metrics import relevance
from neeko_app.evaluation.voice import speaks_in_first_person
from neeko_app.memory import MemoryStore
from neeko_app.moelora.persistence import load_block
from neeko_app.runtime import Runtime

ProgressCallback = Callable[[str, int, int], None]
GREEDY = DecodingSettings(max_new_tokens=64, temperature=0.0)  # reproducible; answers come first


@dataclass
class QuizAnswer:
    character: str
    system: str
    question_id: str
    question: str
    reply: str
    correct: bool
    identified_as: str | None
    first_person: bool
    copied_card_words: int
    relevance: float
    answered_first: bool | None = None  # None in reports written before 2026-12-05

    @property
    def in_role(self) -> bool:
        return in_role(self.character, self.identified_as, self.first_person,
                       self.copied_card_words)


@dataclass
class QuizReport:
    characters: list[str]
    answers: list[QuizAnswer] = field(default_factory=list)
    decoding: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def systems(self) -> list[str]:
        return list(dict.fromkeys(a.system for a in self.answers))

    def _picked(self, system: str, character: str | None) -> list[QuizAnswer]:
        return [a for a in self.answers
                if a.system == system and character in (None, a.character)]

    def accuracy(self, system: str, character: str | None = None) -> float | None:
        """Share of quiz questions answered right."""
        return _mean([a.correct for a in self._picked(system, character)])

    def answered_first_rate(self, system: str, character: str | None = None) -> float | None:
        """Share of quiz questions answered in the reply's first sentence (None for a
        report written before this was recorded)."""
        picked = self._picked(system, character)
        if any(a.answered_first is None for a in picked):
            return None
        return _mean([a.answered_first for a in picked])

    def in_role_rate(self, system: str, character: str | None = None) -> float | None:
        """Share of replies in role (see the module docstring)."""
        return _mean([a.in_role for a in self._picked(system, character)])

    def relevance(self, system: str, character: str | None = None) -> float | None:
        """Mean question-reply cosine."""
        return _mean([a.relevance for a in self._picked(system, character)])

    def role_identification(self, system: str, character: str | None = None
                            ) -> float | None:
        """Share of replies nearest their own profile (secondary: reciting games it)."""
        return _mean([a.identified_as == a.character for a in self._picked(system, character)])

    def to_dict(self) -> dict:
        measures = {"accuracy": self.accuracy, "answered_first": self.answered_first_rate,
                    "in_role": self.in_role_rate,
                    "relevance": self.relevance, "role_identification": self.role_identification}
        return {
            "characters": self.characters,
            "systems": self.systems,
            **{name: {s: {"overall": measure(s), **{c: measure(s, c) for c in self.characters}}
                      for s in self.systems}
               for name, measure in measures.items()},
            "decoding": self.decoding,
            "seconds": self.seconds,
            "answers": [asdict(a) for a in self.answers],
        }

    @classmethod
    def from_dict(cls, data: dict) -> QuizReport:
        return cls(list(data["characters"]), [QuizAnswer(**a) for a in data["answers"]],
                   dict(data.get("decoding") or {}), float(data.get("seconds") or 0.0))


def _mean(values: Sequence[bool | float]) -> float | None:
    """The mean, or None where a system did not answer (a character left out of a run)."""
    return sum(values) / len(values) if values else None


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def character_quiz(character: Character) -> list[QuizQuestion]:
    """The character's quiz, checked against its fact sheet; ValueError if it has none."""
    return [question for question, _ in asked_notes(character)]


def asked_notes(character: Character) -> list[tuple[QuizQuestion, str]]:
    """Each question of the character's quiz, checked against its fact sheet, with the note
    memory holds for the fact it asks about; ValueError if it has no quiz."""
    path = character.folder / QUIZ_FILE if character.folder else None
    if path is None or not path.is_file():
        raise ValueError(f"{character.slug} has no {QUIZ_FILE}")
    facts = load_facts(character.folder / FACTS_FILE)
    notes = {fact.id: fact.fact for fact in facts}
    return [(question, notes[question.fact]) for question in load_quiz(path, facts)]


def replace_blocks(runtime: Runtime, directory: Path, slugs: Sequence[str]) -> None:
    """Play `slugs` with the blocks saved in `directory/<slug>/block.safetensors` (blocks
    trained earlier, to compare) instead of their current ones, in this runtime only."""
    for slug in slugs:
        path = directory / slug / "block.safetensors"
        if not path.is_file():
            raise ValueError(f"{path} does not exist")
        if slug in runtime.model.block_names:
            runtime.model.remove_block(slug)
        load_block(runtime.model, path, name=slug)


def run_quiz(runtime: Runtime, slugs: Sequence[str], systems: Sequence[str] = QUIZ_SYSTEMS,
             decoding: DecodingSettings = GREEDY,
             memory: MemoryStore | None = None, label: str = "", batch_size: int = 8,
             progress: ProgressCallback = lambda stage, done, total: None) -> QuizReport:
    """Every quiz question of `slugs` answered by each of `systems` (the names of those
    that use blocks get `@label`)."""
    started = time.perf_counter()
    characters = [runtime.character(slug) for slug in slugs]
    quizzes = [(c, q, note) for c in characters for q, note in asked_notes(c)]
    cast = identification_cast(runtime.characters, slugs)
    profiles = torch.stack([profile_embedding(c) for c in cast])
    report = QuizReport([c.slug for c in characters], decoding=asdict(decoding))
    for system in systems:
        replies = _replies(runtime, quizzes, system, decoding, memory, batch_size, progress)
        nearest = identify(replies, profiles)
        scores = relevance([q.question for _, q, _ in quizzes], replies)
        # the card-prompted baseline has no blocks: another set of blocks does not change it
        name = f"{system}@{label}" if label and system != "profile-prompt" else system
        report.answers += [
            QuizAnswer(c.slug, name, q.id, q.question, reply, q.is_answered_by(reply),
                       cast[k].slug if k >= 0 else None, speaks_in_first_person(reply),
                       copied_card_words(reply, c), score,
                       q.is_answered_first_by(reply))
            for (c, q, _), reply, k, score in zip(quizzes, replies, nearest, scores,
                                                  strict=True)]
    report.seconds = time.perf_counter() - started
    return report


def _replies(runtime: Runtime, quizzes: list[tuple[Character, QuizQuestion, str]],
             system: str, decoding: DecodingSettings, memory: MemoryStore | None,
             batch_size: int, progress: ProgressCallback) -> list[str]:
    """Each question answered by `system` in a fresh conversation, batched (reply k seeded
    with seed + k when sampling, as in `eval-heldout`); blocks+other-notes withholds the
    note of the fact asked about."""
    requests = [system_request(system, runtime, c, [], q.question, memory,
                               decoding_of_reply(decoding, k), withheld=note)[1]
                for k, (c, q, note) in enumerate(quizzes)]
    return generated_replies(runtime, requests, batch_size,
                             lambda done: progress(f"quiz ({system})", done, len(requests)))[0]


def format_quiz_report(report: QuizReport) -> str:
    """Markdown: accuracy per character and system, then the overall headline measures."""
    systems = report.systems

    def head(first: str) -> list[str]:
        return [f"| {first} | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]

    lines = ["Fact quiz accuracy", "", *head("character")]
    for name in [*report.characters, None]:
        lines.append(f"| {name or '**overall**'} | "
                     + " | ".join(_cell(report.accuracy(s, name)) for s in systems) + " |")
    lines += ["", "Headline measures (all quiz replies)", "", *head("measure")]
    for title, measure in (("fact quiz accuracy", report.accuracy),
                           ("answered in the first sentence", report.answered_first_rate),
                           (f"in role (identified, first person, < {COPY_WORDS} card words)",
                            report.in_role_rate),
                           ("relevance (question-reply cosine)", report.relevance),
                           ("role identification (secondary)", report.role_identification)):
        lines.append(f"| {title} | " + " | ".join(_cell(measure(s)) for s in systems) + " |")
    return "\n".join(lines)

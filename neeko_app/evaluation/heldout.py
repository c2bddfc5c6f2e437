"""`neeko eval-heldout`: perplexity matrix and role identification on the held-out sets.

The systems of `evaluation.systems` answer the held-out questions. Each reply also records
the longest word run it copies from its prompt, since a reply that recites its profile is
identified easily but is not role-play, whether it speaks in the first person (as the
character, not about them), and whether it ended its turn before the length cap. Each reply
is identified twice: against the profiles (the issue's measure) and against the mean of
each character's training replies. The `written` system is the held-out set's own replies,
scored the same way: what a block that imitated its data perfectly would score.

Decoding is greedy by default (reproducible); `HeldoutOptions.decoding` with a temperature
and a seed samples like the chat app, reply k with seed `seed + k`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from neeko_app.characters.card import HELDOUT_FILE, Character
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.reply import kept_text
from neeko_app.chat.scheduler import GenerationRequest
from neeko_app.evaluation import HELDOUT_DEFAULT_SYSTEMS, WRITTEN
from neeko_app.evaluation.in_role import copied_card_words, in_role
from neeko_app.evaluation.overlap import COPY_WORDS, longest_shared_run
from neeko_app.evaluation.perplexity import diagonal_is_row_minimum, perplexity_matrix
from neeko_app.evaluation.report import PerplexityMatrix, perplexity_markdown
from neeko_app.evaluation.role_identification import (
    identification_cast,
    identify_each,
    profile_embedding,
    training_lines_embedding,
)
from neeko_app.evaluation.scheduling import evaluation_scheduler
from neeko_app.evaluation.systems import system_request
from neeko_app.evaluation.text_metrics import relevance
from neeko_app.evaluation.voice import speaks_in_first_person
from neeko_app.memory import MemoryStore
from neeko_app.runtime import Runtime
from neeko_app.training.data import Conversation, character_examples, load_dialogues

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class HeldoutOptions:
    """How much to evaluate and how to decode (greedy by default: reproducible)."""

    limit: int | None = None  # held-out conversations per character (None: all)
    batch_size: int = 8
    max_tokens: int = 384
    perplexity: bool = True
    systems: tuple[str, ...] = HELDOUT_DEFAULT_SYSTEMS
    decoding: DecodingSettings = DecodingSettings(max_new_tokens=64, temperature=0.0)


@dataclass
class Answer:
    character: str
    system: str
    question: str
    reply: str
    identified_as: str | None  # nearest profile
    identified_by_lines: str | None  # nearest mean of training replies
    copied_words: int  # longest word run the reply shares with its prompt's header
    ended_turn: bool  # False: cut by the length cap
    copied_card_words: int = 0  # longest word run the reply shares with the card
    relevance: float = 0.0  # cosine of the question's and the reply's embeddings

    @property
    def in_role(self) -> bool:
        return in_role(self.character, self.identified_as, speaks_in_first_person(self.reply),
                       self.copied_card_words)


@dataclass(frozen=True)
class CharacterVectors:
    """One unit vector per character of the cast (whom a reply is told apart from) for each
    way of identifying a reply."""

    slugs: list[str]
    profiles: torch.Tensor
    training_lines: torch.Tensor

    @classmethod
    def of(cls, characters: Sequence[Character]) -> CharacterVectors:
        return cls([c.slug for c in characters],
                   torch.stack([profile_embedding(c) for c in characters]),
                   torch.stack([training_lines_embedding(c) for c in characters]))


@dataclass
class HeldoutReport:
    characters: list[str]
    perplexity: list[list[float]] | None = None
    identified_among: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    decoding: dict = field(default_factory=dict)
    seconds: float = 0.0

    def accuracy(self, system: str, character: str | None = None,
                 by_training_lines: bool = False) -> float:
        """Share of `system`'s replies identified as their own character (nearest profile,
        or nearest mean of training replies)."""
        picked = [a for a in self.answers
                  if a.system == system and character in (None, a.character)]
        hits = sum((a.identified_by_lines if by_training_lines else a.identified_as)
                   == a.character for a in picked)
        return hits / max(1, len(picked))

    def copy_rate(self, system: str) -> float:
        """Share of `system`'s replies that copy COPY_WORDS or more words from the prompt."""
        picked = [a for a in self.answers if a.system == system]
        return sum(a.copied_words >= COPY_WORDS for a in picked) / max(1, len(picked))

    def first_person_rate(self, system: str) -> float:
        """Share of `system`'s replies spoken in the first person (as the character)."""
        picked = [a.reply for a in self.answers if a.system == system]
        return sum(map(speaks_in_first_person, picked)) / max(1, len(picked))

    def in_role_rate(self, system: str) -> float:
        """Share of `system`'s replies in role (identified, first person, no recited card)."""
        picked = [a.in_role for a in self.answers if a.system == system]
        return sum(picked) / max(1, len(picked))

    def relevance(self, system: str) -> float:
        """Mean cosine of `system`'s replies with their questions."""
        picked = [a.relevance for a in self.answers if a.system == system]
        return sum(picked) / max(1, len(picked))

    def ended_turn_rate(self, system: str) -> float:
        """Share of `system`'s replies that ended their turn before the length cap."""
        picked = [a.ended_turn for a in self.answers if a.system == system]
        return sum(picked) / max(1, len(picked))

    def accuracy_table(self, by_training_lines: bool) -> dict[str, dict[str, float]]:
        """Per system: overall accuracy and each character's."""
        systems = sorted({a.system for a in self.answers})
        return {system: {"overall": self.accuracy(system, None, by_training_lines),
                         **{c: self.accuracy(system, c, by_training_lines)
                            for c in self.characters}}
                for system in systems}

    def to_dict(self) -> dict:
        systems = sorted({a.system for a in self.answers})
        return {
            "characters": self.characters,
            "identified_among": self.identified_among,
            "perplexity": self.perplexity,
            "diagonal_is_row_minimum": (diagonal_is_row_minimum(torch.tensor(self.perplexity))
                                        if self.perplexity else None),
            "role_identification": self.accuracy_table(by_training_lines=False),
            "role_identification_by_training_lines": self.accuracy_table(by_training_lines=True),
            f"copy_rate_{COPY_WORDS}_words": {s: self.copy_rate(s) for s in systems},
            "first_person_rate": {s: self.first_person_rate(s) for s in systems},
            "in_role_rate": {s: self.in_role_rate(s) for s in systems},
            "relevance": {s: self.relevance(s) for s in systems},
            "ended_turn_rate": {s: self.ended_turn_rate(s) for s in systems},
            "decoding": self.decoding,
            "seconds": self.seconds,
            "answers": [vars(a) for a in self.answers],
        }


def heldout_conversations(character: Character, limit: int | None) -> list[Conversation]:
    """The held-out set, or `limit` conversations spread evenly over it (files are grouped
    by topic, so the first few would all be about one thing)."""
    conversations = load_dialogues(character.folder / HELDOUT_FILE)
    if not limit or limit >= len(conversations):
        return conversations
    return [conversations[i * len(conversations) // limit] for i in range(limit)]


def _openers(heldout: dict[Character, list[Conversation]]
             ) -> list[tuple[Character, Conversation]]:
    """Every held-out conversation with its character, in the order of `heldout`."""
    return [(character, conversation) for character, conversations in heldout.items()
            for conversation in conversations]


def _scored(heldout: dict[Character, list[Conversation]], system: str, replies: list[str],
            copied: list[int], ended: list[bool], vectors: CharacterVectors) -> list[Answer]:
    """One answer per opener of `heldout`: its reply identified against `vectors`."""
    def named(indices: list[int]) -> list[str | None]:
        return [vectors.slugs[k] if k >= 0 else None for k in indices]

    by_profile, by_lines = identify_each(replies, [vectors.profiles, vectors.training_lines])
    openers = _openers(heldout)
    scores = relevance([conversation.turns[0].text for _, conversation in openers], replies)
    return [Answer(c.slug, system, conversation.turns[0].text, reply, profile, lines,
                   words, ended_turn, copied_card_words(reply, c), score)
            for (c, conversation), reply, profile, lines, words, ended_turn, score
            in zip(openers, replies, named(by_profile), named(by_lines), copied, ended,
                   scores, strict=True)]


def _written_answers(heldout: dict[Character, list[Conversation]],
                     vectors: CharacterVectors) -> list[Answer]:
    """The held-out set's own first reply to each opening question, identified like a
    generated one (it copies nothing: it has no prompt; it always ends its turn)."""
    replies = [next(t.text for t in conversation.turns if t.role == "character")
               for _, conversation in _openers(heldout)]
    return _scored(heldout, WRITTEN, replies, [0] * len(replies), [True] * len(replies),
                   vectors)


def decoding_of_reply(decoding: DecodingSettings, k: int) -> DecodingSettings:
    """Reply k's decoding: its own seed when sampling with one, so every reply differs and
    the whole run repeats."""
    return decoding if decoding.seed is None else replace(decoding, seed=decoding.seed + k)


def generated_replies(runtime: Runtime, requests: Sequence[GenerationRequest], batch_size: int,
                      progress: Callable[[int], None] = lambda done: None
                      ) -> tuple[list[str], list[bool]]:
    """Each request's reply as the app keeps it (ended at a full sentence when cut), and
    whether it ended its turn before the length cap; batched, `progress(done)` per reply."""
    replies: list[str] = []
    ended: list[bool] = []
    with evaluation_scheduler(runtime, batch_size) as scheduler:
        for stream in scheduler.submit_many(requests):
            replies.append(kept_text("".join(stream).strip(), stream.finish_reason))
            ended.append(stream.finish_reason != "length")
            progress(len(replies))
    return replies, ended


def _answer_all(runtime: Runtime, heldout: dict[Character, list[Conversation]],
                vectors: CharacterVectors, system: str, options: HeldoutOptions,
                progress: ProgressCallback, memory: MemoryStore | None) -> list[Answer]:
    """Every held-out opening question answered by `system`, batched across characters;
    each reply identified against `vectors` (the whole cast, not only `heldout`'s)."""
    openers = _openers(heldout)
    headers, requests = zip(*(system_request(system, runtime, character, [],
                                             conversation.turns[0].text, memory,
                                             decoding_of_reply(options.decoding, k))
                              for k, (character, conversation) in enumerate(openers)),
                            strict=True)
    replies, ended = generated_replies(runtime, requests, options.batch_size,
                                       lambda done: progress(f"replies ({system})", done,
                                                             len(requests)))
    copied = [longest_shared_run(reply, header)
              for reply, header in zip(replies, headers, strict=True)]
    return _scored(heldout, system, replies, copied, ended, vectors)


def run_heldout_evaluation(
    runtime: Runtime, slugs: Sequence[str], options: HeldoutOptions = HeldoutOptions(),
    progress: ProgressCallback = lambda stage, done, total: None,
    memory: MemoryStore | None = None,
) -> HeldoutReport:
    """Score `slugs` on their held-out sets: perplexity matrix, then role identification
    (`memory`, holding the characters' knowledge, is needed for the blocks+memory system)."""
    started = time.perf_counter()
    characters = [runtime.character(slug) for slug in slugs]
    report = HeldoutReport([c.slug for c in characters], decoding=asdict(options.decoding))
    heldout = {c: heldout_conversations(c, options.limit) for c in characters}
    if options.perplexity:
        missing = [c.slug for c in characters if c.slug not in runtime.model.block_names]
        if missing:
            raise ValueError(f"the perplexity matrix needs a trained block for: {missing}")
        tokenizer = runtime.base.tokenizer
        examples = {c.slug: character_examples(c, conversations, tokenizer, options.max_tokens)
                    for c, conversations in heldout.items()}
        total = sum(-(-len(e) // options.batch_size) for e in examples.values()) * len(slugs)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            progress("perplexity", done, total)

        matrix = perplexity_matrix(runtime.model, examples, report.characters,
                                   tokenizer.pad_token_id, options.batch_size, tick)
        report.perplexity = matrix.tolist()
    if options.systems:
        vectors = CharacterVectors.of(identification_cast(runtime.characters, slugs))
        report.identified_among = vectors.slugs
        for system in options.systems:
            report.answers += (_written_answers(heldout, vectors) if system == WRITTEN else
                               _answer_all(runtime, heldout, vectors, system, options,
                                           progress, memory))
    report.seconds = time.perf_counter() - started
    return report


def format_report(report: HeldoutReport) -> str:
    """Markdown tables: the perplexity matrix and role-identification accuracy."""
    lines = []
    names = report.characters
    if report.perplexity:
        lines.append(perplexity_markdown(PerplexityMatrix(names, report.perplexity)))
    systems = sorted({a.system for a in report.answers})
    if not systems:
        return "\n".join(lines)

    def row(label: str, values: Iterable[float]) -> str:
        return f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + " |"

    def head(first: str) -> list[str]:
        return [f"| {first} | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]

    among = ", ".join(report.identified_among)
    for title, by_lines in (("reply nearest its own profile", False),
                            ("reply nearest the mean of its own training replies", True)):
        lines += ["", f"Role identification accuracy ({title}; among {among})", "",
                  *head("character")]
        lines += [row(name or "**overall**", (report.accuracy(s, name, by_lines)
                                              for s in systems)) for name in [*names, None]]
    lines += ["", "Share of replies that", "", *head("measure"),
              row(f"copy ≥{COPY_WORDS} words of their prompt", map(report.copy_rate, systems)),
              row("speak in the first person", map(report.first_person_rate, systems)),
              row(f"are in role (identified, first person, < {COPY_WORDS} card words)",
                  map(report.in_role_rate, systems)),
              row("end their turn before the length cap", map(report.ended_turn_rate, systems)),
              "", *head("measure"),
              row("relevance (question-reply cosine)", map(report.relevance, systems))]
    return "\n".join(lines)

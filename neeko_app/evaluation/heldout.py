"""`neeko eval-heldout`: perplexity matrix and role identification on the held-out sets.

The systems of `evaluation.systems` answer the held-out questions. Each reply also records
the longest word run it copies from its prompt, since a reply that recites its profile is
identified easily but is not role-play, and whether it speaks in the first person (as the
character, not about them). The `written` system is the held-out set's own replies, scored
the same way: what a block that imitated its data perfectly would score.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from neeko_app.characters.card import HELDOUT_FILE, Character
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.reply import kept_text
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.evaluation import HELDOUT_DEFAULT_SYSTEMS, WRITTEN
from neeko_app.evaluation.overlap import COPY_WORDS, longest_shared_run
from neeko_app.evaluation.perplexity import diagonal_is_row_minimum, perplexity_matrix
from neeko_app.evaluation.report import PerplexityMatrix, perplexity_markdown
from neeko_app.evaluation.role_identification import identify, profile_embedding
from neeko_app.evaluation.systems import system_request
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
    identified_as: str | None
    copied_words: int  # longest word run the reply shares with its prompt's header


@dataclass
class HeldoutReport:
    characters: list[str]
    perplexity: list[list[float]] | None = None
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0

    def accuracy(self, system: str, character: str | None = None) -> float:
        """Share of `system`'s replies identified as their own character."""
        picked = [a for a in self.answers
                  if a.system == system and character in (None, a.character)]
        return sum(a.identified_as == a.character for a in picked) / max(1, len(picked))

    def copy_rate(self, system: str) -> float:
        """Share of `system`'s replies that copy COPY_WORDS or more words from the prompt."""
        picked = [a for a in self.answers if a.system == system]
        return sum(a.copied_words >= COPY_WORDS for a in picked) / max(1, len(picked))

    def first_person_rate(self, system: str) -> float:
        """Share of `system`'s replies spoken in the first person (as the character)."""
        picked = [a.reply for a in self.answers if a.system == system]
        return sum(map(speaks_in_first_person, picked)) / max(1, len(picked))

    def to_dict(self) -> dict:
        systems = sorted({a.system for a in self.answers})
        return {
            "characters": self.characters,
            "perplexity": self.perplexity,
            "diagonal_is_row_minimum": (diagonal_is_row_minimum(torch.tensor(self.perplexity))
                                        if self.perplexity else None),
            "role_identification": {
                system: {"overall": self.accuracy(system),
                         **{c: self.accuracy(system, c) for c in self.characters}}
                for system in systems},
            f"copy_rate_{COPY_WORDS}_words": {s: self.copy_rate(s) for s in systems},
            "first_person_rate": {s: self.first_person_rate(s) for s in systems},
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
            copied: list[int], profiles: torch.Tensor) -> list[Answer]:
    """One answer per opener of `heldout`: its reply identified against `profiles`."""
    slugs = [c.slug for c in heldout]
    return [Answer(c.slug, system, conversation.turns[0].text, reply,
                   slugs[k] if k >= 0 else None, words)
            for (c, conversation), reply, k, words
            in zip(_openers(heldout), replies, identify(replies, profiles), copied,
                   strict=True)]


def _written_answers(heldout: dict[Character, list[Conversation]],
                     profiles: torch.Tensor) -> list[Answer]:
    """The held-out set's own first reply to each opening question, identified like a
    generated one (it copies nothing: it has no prompt)."""
    replies = [next(t.text for t in conversation.turns if t.role == "character")
               for _, conversation in _openers(heldout)]
    return _scored(heldout, WRITTEN, replies, [0] * len(replies), profiles)


def _answer_all(runtime: Runtime, heldout: dict[Character, list[Conversation]],
                profiles: torch.Tensor, system: str, options: HeldoutOptions,
                progress: ProgressCallback, memory: MemoryStore | None) -> list[Answer]:
    """Every held-out opening question answered by `system`, batched across characters;
    each reply identified against `profiles` (one row per character of `heldout`)."""
    openers = _openers(heldout)
    headers, requests = zip(*(system_request(system, runtime, character, [],
                                             conversation.turns[0].text, memory,
                                             options.decoding)
                              for character, conversation in openers), strict=True)
    scheduler = BatchScheduler(runtime.model, runtime.base.tokenizer,
                               max_batch=options.batch_size)
    try:
        replies = []
        for stream in scheduler.submit_many(requests):
            replies.append(kept_text("".join(stream).strip(), stream.finish_reason))
            progress(f"replies ({system})", len(replies), len(openers))
    finally:
        scheduler.close()
    copied = [longest_shared_run(reply, header)
              for reply, header in zip(replies, headers, strict=True)]
    return _scored(heldout, system, replies, copied, profiles)


def run_heldout_evaluation(
    runtime: Runtime, slugs: Sequence[str], options: HeldoutOptions = HeldoutOptions(),
    progress: ProgressCallback = lambda stage, done, total: None,
    memory: MemoryStore | None = None,
) -> HeldoutReport:
    """Score `slugs` on their held-out sets: perplexity matrix, then role identification
    (`memory`, holding the characters' knowledge, is needed for the blocks+memory system)."""
    started = time.perf_counter()
    characters = [runtime.character(slug) for slug in slugs]
    report = HeldoutReport([c.slug for c in characters])
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
        profiles = torch.stack([profile_embedding(c) for c in characters])
        for system in options.systems:
            report.answers += (_written_answers(heldout, profiles) if system == WRITTEN else
                               _answer_all(runtime, heldout, profiles, system, options,
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
    if systems:
        lines += ["Role identification accuracy (reply nearest its own profile)", "",
                  "| character | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1)
                  + "|"]
        for name in [*names, None]:
            cells = [f"{report.accuracy(s, name):.2f}" for s in systems]
            lines.append(f"| {name or '**overall**'} | " + " | ".join(cells) + " |")
        cells = [f"{report.copy_rate(s):.2f}" for s in systems]
        lines.append(f"| copies ≥{COPY_WORDS} words of its prompt | " + " | ".join(cells) + " |")
        cells = [f"{report.first_person_rate(s):.2f}" for s in systems]
        lines.append("| speaks in the first person | " + " | ".join(cells) + " |")
    return "\n".join(lines)

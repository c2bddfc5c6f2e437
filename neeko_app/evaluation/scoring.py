"""Scores of a scripted run, per system (overall and per character), from its replies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from neeko_app.evaluation.role_identification import identify
from neeko_app.evaluation.runner import ScriptedReply
from neeko_app.evaluation.text_metrics import distinct_n, looping_rate, mean_length, relevance
from neeko_app.evaluation.voice import speaks_in_first_person


@dataclass(frozen=True)
class Scores:
    """Metrics of one group of replies (see the README's evaluation section)."""

    replies: int
    role_identification: float  # share nearest their own character's profile
    relevance: float  # mean question-reply cosine similarity
    expectation_pass_rate: float | None  # None when no reply had an expectation
    first_person: float
    distinct_1: float
    distinct_2: float
    looping: float
    mean_words: float
    tokens_per_second: float  # per reply, averaged

    def to_dict(self) -> dict:
        return asdict(self)


def score(replies: Sequence[ScriptedReply], profiles: dict[str, torch.Tensor]
          ) -> dict[str, dict[str, Scores]]:
    """{system: {"overall" | character: Scores}}; role identification chooses among the
    characters of `profiles` (unit profile embeddings, one per evaluated character)."""
    slugs = list(profiles)
    matrix = torch.stack([profiles[s] for s in slugs])
    nearest = identify([r.reply for r in replies], matrix)
    related = relevance([r.question for r in replies], [r.reply for r in replies])
    rows = list(zip(replies, nearest, related, strict=True))
    table: dict[str, dict[str, Scores]] = {}
    for system in dict.fromkeys(r.system for r in replies):
        mine = [row for row in rows if row[0].system == system]
        table[system] = {"overall": _scores(mine, slugs)}
        for character in dict.fromkeys(row[0].character for row in mine):
            table[system][character] = _scores([row for row in mine
                                                if row[0].character == character], slugs)
    return table


def _scores(rows: Sequence[tuple[ScriptedReply, int, float]], slugs: list[str]) -> Scores:
    replies = [reply for reply, _, _ in rows]
    texts = [r.reply for r in replies]
    judged = [r for r in replies if r.failures is not None]
    return Scores(
        replies=len(replies),
        role_identification=_mean([k >= 0 and slugs[k] == r.character for r, k, _ in rows]),
        relevance=_mean([similarity for _, _, similarity in rows]),
        expectation_pass_rate=_mean([not r.failures for r in judged]) if judged else None,
        first_person=_mean([speaks_in_first_person(t) for t in texts]),
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        looping=looping_rate(texts),
        mean_words=mean_length(texts),
        tokens_per_second=_mean([r.tokens / r.seconds for r in replies if r.seconds > 0]),
    )


def _mean(values: Sequence[float | bool]) -> float:
    return sum(values) / len(values) if values else 0.0

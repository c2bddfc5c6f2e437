"""Offline metrics of a set of replies: variety (distinct-n), looping, length, relevance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from neeko_app.embedding import embed_texts
from neeko_app.evaluation.overlap import words

LOOP_NGRAM = 4  # a reply loops when one 4-gram of words ...
LOOP_REPEATS = 3  # ... occurs three or more times in it


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(replies: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all replies (0 when there are none)."""
    grams = [g for reply in replies for g in ngrams(words(reply), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def loops(reply: str) -> bool:
    """True when some 4-gram of words occurs three or more times in the reply."""
    counts = Counter(ngrams(words(reply), LOOP_NGRAM))
    return bool(counts) and max(counts.values()) >= LOOP_REPEATS


def looping_rate(replies: Sequence[str]) -> float:
    return sum(map(loops, replies)) / len(replies) if replies else 0.0


def mean_length(replies: Sequence[str]) -> float:
    """Mean reply length in words."""
    return sum(len(words(r)) for r in replies) / len(replies) if replies else 0.0


def relevance(questions: Sequence[str], replies: Sequence[str]) -> list[float]:
    """Cosine similarity of each question with its reply (MiniLM); 0 for an empty reply."""
    if len(questions) != len(replies):
        raise ValueError("one reply per question is needed")
    if not questions:
        return []
    vectors = embed_texts([*questions, *(r or " " for r in replies)])
    asked, answered = vectors[:len(questions)], vectors[len(questions):]
    scores = (asked * answered).sum(-1).tolist()
    return [score if reply.strip() else 0.0 for score, reply in zip(scores, replies, strict=True)]

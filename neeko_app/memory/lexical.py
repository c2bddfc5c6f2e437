"""Shared rare words: a lexical signal beside the embeddings' cosine.

MiniLM places "Which scholar from Chios thought up the killing of Pompey?" near every note
about Pompey; the word "Chios" points at one. `overlap` scores a note by the rarity-weighted
share of the query's words it holds, rarity being the inverse document frequency among the
notes searched (a word in every note weighs nothing).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable

WORD = re.compile(r"[^\W_]+")


@functools.lru_cache(maxsize=16384)
def words(text: str) -> frozenset[str]:
    """The lower-cased words of two or more letters or digits in `text` (so the "s" of a
    possessive falls away)."""
    return frozenset(word for word in WORD.findall(text.lower()) if len(word) > 1)


def rarity(documents: Iterable[frozenset[str]]) -> dict[str, float]:
    """Inverse document frequency of every word of `documents`: log(N / df)."""
    documents = list(documents)
    counts = Counter(word for document in documents for word in document)
    return {word: math.log(len(documents) / count) for word, count in counts.items()}


def overlap(query: frozenset[str], document: frozenset[str], weights: dict[str, float]
            ) -> float:
    """The share, in [0, 1], of the query's word weight (words the notes know) that
    `document` holds."""
    known = sum(weights.get(word, 0.0) for word in query)
    return sum(weights.get(word, 0.0) for word in query & document) / known if known else 0.0

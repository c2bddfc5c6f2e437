"""How much of a reply is copied from its prompt: the longest run of words they share."""

from __future__ import annotations

import re

COPY_WORDS = 8  # a shared run this long counts as copying, not as using the same facts

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped."""
    return _WORD.findall(text.lower())


def longest_shared_run(reply: str, source: str) -> int:
    """Length in words of the longest word sequence found in both `reply` and `source`."""
    a, b = words(reply), words(source)
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best

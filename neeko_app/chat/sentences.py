"""Where a reply's sentences end, read while it is still being written.

A sentence ends at '.', '!', '?' or '…' (closing quotes or brackets may follow) once
whitespace and the next word have come, unless that word begins with a small letter or a
digit ("Op. 84", "well… perhaps") or the word before the stop is an initial or a common
abbreviation ("J. S. Bach", "St. Paul"). A line break always ends one. The end of a text
being written is not an end: the next word may still continue the sentence.
"""

from __future__ import annotations

import re

STOP = r"[.!?…][\"'”’)\]*]*"  # a full stop, question or exclamation mark or ellipsis, closed
# a stop, then the whitespace before the next word; or a line break (with what precedes it)
_BOUNDARY = re.compile(rf"(?P<stop>{STOP})(?P<gap>\s+)(?=\S)|(?P<line>[ \t]*\n)\s*(?=\S)")
_WORD_BEFORE = re.compile(r"(\w+)$")
# titles before a name (and Rome's "Cn."); "No.", "Op." and "vol." need none: a number
# follows them
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "mt", "rev", "gen", "col", "capt",
                           "lt", "prof", "hon", "vs", "cf", "cn"})


def sentence_ends(text: str) -> list[int]:
    """The offsets in `text` just past each sentence that has ended (its stop included,
    the whitespace after it not)."""
    ends = []
    for match in _BOUNDARY.finditer(text):
        if match.group("line") is not None:
            end = match.start()
        elif "\n" in match.group("gap") or _starts_sentence(text, match):
            end = match.end("stop")
        else:
            continue
        if text[:end].strip() and (not ends or end > ends[-1]):
            ends.append(end)
    return ends


def _starts_sentence(text: str, match: re.Match) -> bool:
    """Whether the word after `match`'s stop begins a new sentence."""
    following = text[match.end()]
    if following.islower() or following.isdigit():
        return False
    word_before = _WORD_BEFORE.search(text, 0, match.start("stop"))
    if not (match.group("stop").startswith(".") and word_before):
        return True
    word = word_before.group(1)
    initial = len(word) == 1 and word.isupper()  # "J. S. Bach", "M. Licinius Crassus"
    return not initial and word.casefold() not in ABBREVIATIONS


def cut_after_sentences(text: str, count: int) -> int | None:
    """Where `text` should end to hold `count` sentences, once the sentence after them has
    begun; None while it holds no more than `count`."""
    ends = sentence_ends(text)
    return ends[count - 1] if len(ends) >= count else None


def kept_sentences(text: str, count: int) -> str:
    """What a limit of `count` sentences keeps of the finished `text`."""
    cut = cut_after_sentences(text, count)
    return text if cut is None else text[:cut]


class SentenceLimit:
    """Ends a stream of text pieces after `count` sentences (0: never), for a server that
    cannot: each piece is handed on up to the cut, trailing whitespace waiting for the next
    word."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.received = ""
        self.sent = 0  # characters of `received` handed on

    def take(self, piece: str) -> tuple[str, bool]:
        """What of `piece` to hand on, and whether the reply ends there."""
        if not self.count:
            return piece, False
        self.received += piece
        cut = cut_after_sentences(self.received, self.count)
        end = cut if cut is not None else len(self.received.rstrip())
        handed = self.received[self.sent:end]
        self.sent = max(self.sent, end)
        return handed, cut is not None

"""Who speaks next in a scene, and the transcript as one character sees it.

The model was trained on two-party conversations, so a character is always shown one:
its own lines are its turns, and everything the others said between them (the user and
the other characters, each line labelled with its speaker) is folded into one user turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from neeko_app.chat.prompt import Turn

USER_LABEL = "User"
ROMAN_NUMERAL = re.compile(r"[IVXLCDM]+")
TITLES = frozenset({"Jr", "Sr", "Dr", "Mr", "Mrs", "Ms", "St", "The"})


def perspective(turns: Sequence[Turn], speaker: str, names: Mapping[str, str]) -> list[Turn]:
    """The transcript as `speaker` (a slug) sees it; `names` maps slugs to display names."""
    seen: list[Turn] = []
    heard: list[Turn] = []
    for turn in turns:
        if turn.role == "character" and turn.speaker == speaker:
            if heard:
                seen.append(Turn("user", _fold(heard, names)))
                heard = []
            seen.append(turn)
        else:
            heard.append(turn)
    if heard:
        seen.append(Turn("user", _fold(heard, names)))
    return seen


def _fold(turns: list[Turn], names: Mapping[str, str]) -> str:
    """Several lines as one user message; labelled by speaker when others than the user speak."""
    if all(turn.role == "user" for turn in turns):
        return "\n\n".join(turn.text for turn in turns)
    return "\n".join(
        f"{USER_LABEL if turn.role == 'user' else names.get(turn.speaker or '', turn.speaker)}: "
        f"{turn.text}"
        for turn in turns
    )


def addressed(message: str, names: Mapping[str, str]) -> list[str]:
    """Slugs of the characters named in `message`, in the order they are first named.

    A character is named by its full name or by a capitalised part of it ("Newton",
    "Isaac"; not numerals like "VII" nor titles like "Jr"), as a whole word, case-sensitive.
    """
    found = []
    for slug, name in names.items():
        parts = [name] + [w for w in re.findall(r"[A-Z][A-Za-z]+", name)
                          if w not in TITLES and not ROMAN_NUMERAL.fullmatch(w)]
        positions = [m.start() for part in parts
                     for m in re.finditer(rf"(?<!\w){re.escape(part)}(?!\w)", message)]
        if positions:
            found.append((min(positions), slug))
    return [slug for _, slug in sorted(found)]


def next_speakers(turns: Sequence[Turn], message: str, names: Mapping[str, str]) -> list[str]:
    """Who answers `message`: the characters it names, else the next one in turn order
    after the last character who spoke (the first one if nobody has spoken yet)."""
    named = addressed(message, names)
    if named:
        return named
    order = list(names)
    last = next((t.speaker for t in reversed(turns) if t.role == "character"), None)
    if last not in order:
        return order[:1]
    return [order[(order.index(last) + 1) % len(order)]]

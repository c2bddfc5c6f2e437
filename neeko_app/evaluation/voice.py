"""Whether a reply speaks as the character: in the first person, not about them."""

from __future__ import annotations

import re

_FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|I'll|me|my|mine|myself)\b")


def speaks_in_first_person(reply: str) -> bool:
    """True when the reply says I/me/my (a role-play answer), false for a third-person
    account such as "You are Caesar, a Roman general..." written about the character."""
    return bool(_FIRST_PERSON.search(reply))

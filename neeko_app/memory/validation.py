"""Input checks shared by the memory modules; every failure is a `ValueError`."""

from __future__ import annotations

import re

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
COLLECTION_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9._-]{1,510})[a-zA-Z0-9]")


def validate_text(text: str, what: str) -> str:
    """`text` stripped, or ValueError if it is not a string or is blank."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what} must be non-empty text")
    return text.strip()


def validate_session_id(session_id: str, what: str = "session id") -> str:
    """`session_id` if it is 1-128 characters of [A-Za-z0-9_.:-], else ValueError."""
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ValueError(
            f"invalid {what} {session_id!r}: use 1-128 letters, digits or any of '_.:-'"
        )
    return session_id


def validate_collection_name(name: str) -> str:
    """`name` if Chroma accepts it: 3-512 of [a-zA-Z0-9._-], alphanumeric at both ends."""
    if not isinstance(name, str) or not COLLECTION_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid collection name {name!r}: use 3-512 letters, digits or '._-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_count(value: int, what: str, minimum: int) -> int:
    """`value` if it is an int (not a bool) of at least `minimum`, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value

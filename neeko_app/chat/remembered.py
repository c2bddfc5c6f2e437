"""The exchanges conversation memory holds for a transcript, and bringing memory back in
line with a transcript changed in place (a message rewritten, another version of a reply
shown, a reply continued).

Memory keys an exchange by session, character and turn number, so storing a changed
exchange again replaces its entry instead of adding a second one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from neeko_app.chat.context import user_turns
from neeko_app.chat.group import perspective
from neeko_app.chat.prompt import Turn
from neeko_app.memory import MemoryStore


def exchanges(turns: Sequence[Turn], slug: str,
              names: Mapping[str, str]) -> dict[int, tuple[str, str]]:
    """Turn number -> (what the character heard, its reply) for each of `slug`'s replies,
    numbered as the engine remembers them (the user turns of the character's perspective)."""
    seen = perspective(turns, slug, names)
    return {user_turns(seen[:i]): (seen[i - 1].text, turn.text)
            for i, turn in enumerate(seen) if i and turn.role == "character"
            and seen[i - 1].role == "user" and turn.text.strip()}


def sync_memory(memory: MemoryStore, session_id: str, turns: Sequence[Turn],
                names: Mapping[str, str]) -> int:
    """Store again each exchange of the transcript that memory holds differently (or not at
    all); returns how many were written. Only changed exchanges are embedded again."""
    stored = {(e.character, e.turn): (e.user_text, e.reply_text)
              for e in memory.list_session(session_id)}
    written = 0
    for slug in names:
        for turn, (heard, reply) in exchanges(turns, slug, names).items():
            if stored.get((slug, turn)) != (heard.strip(), reply.strip()):
                memory.remember_exchange(session_id, slug, heard, reply, turn)
                written += 1
    return written

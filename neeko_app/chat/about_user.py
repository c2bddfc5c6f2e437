"""Which messages ask about the user, and so get none of the character's knowledge notes.

"What is my son's name?" or "Who did I say is getting married?" asks for something the user
said earlier, which the recalled exchanges hold. The character's own notes answer a near
question ("Who was your son?") and the small base model then answers with them: with the
notes in the prompt, Caesar named Octavius as the user's son and Spartacus named the richest
man in Rome as the user's sister. The recall exchanges the blocks were trained on have no
knowledge notes either (`training.knowledge_data.recalled_context`).

A message asks about the user when it speaks of "my" things or asks what "I" did or said,
and names nothing of the character's ("your"). Quiz-style questions ("Tell me about your
father", "Give me the day of Thapsus") are not caught: none of the 342 quiz questions is.
"""

from __future__ import annotations

import re

from neeko_app.memory import KnowledgeChunk, MemoryStore

_USERS_OWN = re.compile(
    r"\bmy\b|\b(?:did|do|am|was|have|had) I\b|\bI (?:told|said|mentioned|promised)\b", re.I)
_CHARACTERS_OWN = re.compile(r"\b(?:your|yours|yourself)\b", re.I)


def asks_about_user(message: str) -> bool:
    """True when `message` asks about the user's own life or words, not the character's."""
    return bool(_USERS_OWN.search(message)) and not _CHARACTERS_OWN.search(message)


def character_knowledge(memory: MemoryStore, slug: str, message: str, k: int
                        ) -> list[KnowledgeChunk]:
    """The `k` knowledge notes of character `slug` for `message`, none when the message
    asks about the user (`asks_about_user`)."""
    return [] if asks_about_user(message) else memory.search_knowledge(slug, message, k)

"""What the chat shows, as plain data: chatbot messages, the memory panel, session labels."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Mapping, Sequence

from neeko_app.characters.card import Character
from neeko_app.chat.context import RetrievedContext
from neeko_app.chat.session import ChatSession, SessionError, SessionStore

SNIPPET_CHARS = 280
MAX_SESSION_FILES = 200  # saved sessions looked at when listing (newest first)

MEMORY_OFF = "_Memory is off: replies see the character's card and the recent chat only._"
MEMORY_IDLE = "_What memory retrieves for a reply (knowledge, earlier exchanges) shows here._"


def chat_messages(session: ChatSession, characters: Mapping[str, Character],
                  pending: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """Chatbot messages: each character's greeting, the transcript, then the replies still
    being generated (`pending`: speaker slug and text so far). In a group scene every
    character line starts with the speaker's name."""
    def said(slug: str, text: str) -> dict:
        name = characters[slug].name if slug in characters else slug
        return {"role": "assistant",
                "content": f"**{name}:** {text}" if session.is_group else text}

    messages = [said(slug, characters[slug].greeting) for slug in session.characters
                if slug in characters]
    for turn in session.turns:
        messages.append({"role": "user", "content": turn.text} if turn.role == "user"
                        else said(turn.speaker or session.character, turn.text))
    return messages + [said(slug, text) for slug, text in pending]


def title_markdown(session: ChatSession, characters: Mapping[str, Character]) -> str:
    """The heading above the chat: who is in it and what they are."""
    cast = [characters[slug] for slug in session.characters if slug in characters]
    if not session.is_group:
        return f"### {cast[0].name}\n{cast[0].description}" if cast else ""
    names = ", ".join(c.name for c in cast)
    return (f"### Group scene: {names}\nName characters in your message to choose who "
            "answers; otherwise they take turns.")


def _snippet(text: str) -> str:
    return textwrap.shorten(text, SNIPPET_CHARS, placeholder=" …")


def memory_markdown(contexts: Sequence[tuple[str, RetrievedContext]], memory_on: bool) -> str:
    """The memory panel for the last replies: (speaker name, what memory retrieved) each."""
    if not memory_on:
        return MEMORY_OFF
    if not contexts:
        return MEMORY_IDLE
    parts = []
    for name, context in contexts:
        if len(contexts) > 1:
            parts.append(f"#### For {name}")
        if not context:
            parts.append("_Nothing retrieved for this reply._")
        if context.knowledge:
            parts.append("**Knowledge**\n\n" + "\n".join(
                f"- *{chunk.kind}*: {_snippet(chunk.text)}" for chunk in context.knowledge))
        if context.recalled:
            parts.append("**Earlier in this chat**\n\n" + "\n".join(
                f"- turn {e.turn}: you said “{_snippet(e.user_text)}”; {name} replied "
                f"“{_snippet(e.reply_text)}”" for e in sorted(context.recalled,
                                                              key=lambda e: e.turn)))
    return "\n\n".join(parts)


def session_label(session: ChatSession, characters: Mapping[str, Character]) -> str:
    """One line naming a saved session: who, how it started, when."""
    names = " & ".join(characters[slug].name for slug in session.characters)
    first = next((t.text for t in session.turns if t.role == "user"), "")
    when = time.strftime("%d %b %H:%M", time.localtime(session.created))
    return f"{names} · “{textwrap.shorten(first, 40, placeholder='…')}” · {when}"


def session_choices(store: SessionStore | None, characters: Mapping[str, Character],
                    limit: int = 30) -> list[tuple[str, str]]:
    """(label, id) of the newest saved sessions that can be resumed: not empty, readable,
    and with characters that still exist."""
    if store is None:
        return []
    choices = []
    for session_id in store.list_ids()[:MAX_SESSION_FILES]:
        try:
            session = store.load(session_id)
        except SessionError:
            continue
        if session.turns and all(slug in characters for slug in session.characters):
            choices.append((session_label(session, characters), session_id))
            if len(choices) == limit:
                break
    return choices

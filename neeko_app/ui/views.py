"""What the chat shows, as plain data: chatbot messages, the memory panel, session labels,
the versions of the last reply."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Mapping, Sequence

from neeko_app.characters.card import Character
from neeko_app.chat.context import RetrievedContext
from neeko_app.chat.persona import Persona
from neeko_app.chat.session import ChatSession, SessionError, SessionStore

SNIPPET_CHARS = 280
MAX_SESSION_FILES = 200  # saved sessions looked at when listing (newest first)

MEMORY_OFF = "_Memory is off: replies see the character's card and the recent chat only._"
MEMORY_IDLE = "_What memory retrieves for a reply (knowledge, earlier exchanges) shows here._"


def display_name(slug: str, characters: Mapping[str, Character]) -> str:
    """The character's name, or its id once it was deleted."""
    return characters[slug].name if slug in characters else slug


def greetings(session: ChatSession, characters: Mapping[str, Character]) -> list[str]:
    """The slugs whose greetings open the chat view (the characters that still exist)."""
    return [slug for slug in session.characters if slug in characters]


def speaker_prefix(session: ChatSession, name: str) -> str:
    """What a character line starts with in the view: its name in a group scene."""
    return f"**{name}:** " if session.is_group else ""


def chat_messages(session: ChatSession, characters: Mapping[str, Character],
                  pending: Sequence[tuple[str, str]] = (), persona: Persona | None = None,
                  upto: int | None = None) -> list[dict]:
    """Chatbot messages: each character's greeting (its macros filled for `persona`), the
    transcript up to turn `upto`, then the replies still being generated (`pending`: speaker
    slug and text so far). In a group scene every character line starts with the speaker's
    name."""
    def said(slug: str, text: str) -> dict:
        return {"role": "assistant",
                "content": speaker_prefix(session, display_name(slug, characters)) + text}

    persona = persona or Persona()
    messages = [said(slug, persona.fill(characters[slug].greeting, characters[slug].name))
                for slug in greetings(session, characters)]
    for turn in session.turns[:upto]:
        messages.append({"role": "user", "content": turn.text} if turn.role == "user"
                        else said(turn.speaker or session.character, turn.text))
    return messages + [said(slug, text) for slug, text in pending]


def edited_turn(session: ChatSession, characters: Mapping[str, Character], message: int,
                value: str) -> tuple[int, str]:
    """The turn index and new text of an edit of chat message `message`: the greetings
    before the transcript are counted off, and a group line's speaker prefix is removed.
    SessionError for a greeting, which is part of the character's card."""
    index = message - len(greetings(session, characters))
    if index < 0:
        raise SessionError("the greeting is part of the character's card and is not edited "
                           "here; edit a message of the chat")
    if 0 <= index < len(session.turns) and session.turns[index].role == "character":
        speaker = session.turns[index].speaker or session.character
        value = value.removeprefix(speaker_prefix(session, display_name(speaker, characters)))
    return index, value


def versions_markdown(session: ChatSession) -> str:
    """"Reply k of n" for a last reply with several versions, else ""."""
    if not session.turns or session.turns[-1].role != "character":
        return ""
    versions = session.versions_of(len(session.turns) - 1)
    if len(versions.texts) < 2:
        return ""
    return f"Reply {versions.shown + 1} of {len(versions.texts)}"


def title_markdown(session: ChatSession, characters: Mapping[str, Character]) -> str:
    """The heading above the chat: who is in it and what they are."""
    gone = [slug for slug in session.characters if slug not in characters]
    if gone:
        names = ", ".join(display_name(slug, characters) for slug in session.characters)
        return (f"### {names} (read-only)\n{', '.join(gone)} was deleted (its files are in "
                "the trash folder): this chat can be read but not continued.")
    cast = [characters[slug] for slug in session.characters]
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
    names = " & ".join(display_name(slug, characters) for slug in session.characters)
    first = next((t.text for t in session.turns if t.role == "user"), "")
    when = time.strftime("%d %b %H:%M", time.localtime(session.created))
    deleted = "" if all(s in characters for s in session.characters) else " · read-only"
    return f"{names} · “{textwrap.shorten(first, 40, placeholder='…')}” · {when}{deleted}"


def session_choices(store: SessionStore | None, characters: Mapping[str, Character],
                    limit: int = 30) -> list[tuple[str, str]]:
    """(label, id) of the newest saved sessions: not empty and readable (those with a
    deleted character open read-only)."""
    if store is None:
        return []
    choices = []
    for session_id in store.list_ids()[:MAX_SESSION_FILES]:
        try:
            session = store.load(session_id)
        except SessionError:
            continue
        if session.turns:
            choices.append((session_label(session, characters), session_id))
            if len(choices) == limit:
                break
    return choices

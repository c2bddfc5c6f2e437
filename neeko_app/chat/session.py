"""Chat sessions: the transcript of one conversation, its edits, the other versions of its
replies ("swipes"), and its JSON file."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from neeko_app.characters.card import validate_slug
from neeko_app.chat.prompt import Turn
from neeko_app.storage import atomic_write_json

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FORMAT_VERSION = 1


class SessionError(ValueError):
    """A session id, file or operation is invalid (the message says what to do)."""


@dataclass
class Versions:
    """Every version of one reply (a regenerated reply keeps the earlier ones) and the one
    the transcript shows."""

    texts: list[str]
    shown: int


def validate_session_file_id(session_id: str) -> str:
    """`session_id` if it is safe as a file name (1-64 letters, digits, '_' or '-')."""
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise SessionError(
            f"invalid session id {session_id!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return session_id


@dataclass
class ChatSession:
    """A conversation of the user with one character, or with several (a group scene)."""

    id: str
    characters: list[str]
    turns: list[Turn] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    # turn index -> the versions of that reply, for replies with more than one; the turn's
    # text is always the version shown
    versions: dict[int, Versions] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_session_file_id(self.id)
        if not self.characters:
            raise SessionError("a session needs at least one character")
        for slug in self.characters:
            validate_slug(slug)
        if len(set(self.characters)) != len(self.characters):
            raise SessionError(f"a character appears twice in {self.characters}")

    @classmethod
    def new(cls, characters: list[str]) -> ChatSession:
        """A fresh, empty session with a random id."""
        return cls(uuid.uuid4().hex, list(characters))

    @property
    def character(self) -> str:
        """The character of a one-to-one chat (the first one of a group)."""
        return self.characters[0]

    @property
    def is_group(self) -> bool:
        return len(self.characters) > 1

    def add_user(self, text: str) -> None:
        """Append the user's message (blank messages are refused)."""
        if not isinstance(text, str) or not text.strip():
            raise SessionError("the message is empty")
        self.turns.append(Turn("user", text.strip()))

    def add_reply(self, speaker: str, text: str, earlier: list[str] | None = None) -> None:
        """Append a character's reply; `earlier` are the versions it replaces (regenerated),
        kept to browse back to."""
        if speaker not in self.characters:
            raise SessionError(f"{speaker!r} is not in this session ({self.characters})")
        self.turns.append(Turn("character", text.strip(), speaker))
        if earlier:
            self.versions[len(self.turns) - 1] = Versions([*earlier, text.strip()], len(earlier))

    def put_back(self, speaker: str, versions: Versions) -> None:
        """Append a reply as it was, with its versions (a regenerate that gave nothing)."""
        self.add_reply(speaker, versions.texts[versions.shown])
        if len(versions.texts) > 1:
            self.versions[len(self.turns) - 1] = versions

    def versions_of(self, index: int) -> Versions:
        """The versions of reply `index` (one, its text, when it was never regenerated)."""
        self._check_index(index)
        return self.versions.get(index) or Versions([self.turns[index].text], 0)

    def last_reply_index(self) -> int:
        """Index of the last turn if it is a character's reply, else SessionError."""
        if not self.turns or self.turns[-1].role != "character":
            raise SessionError("the last message is not a reply of the character")
        return len(self.turns) - 1

    def rewrite(self, index: int, text: str) -> None:
        """Replace the text of turn `index` (the user's or a character's) in place; the rest
        of the conversation stays. A reply's shown version is the one rewritten."""
        self._check_index(index)
        if not isinstance(text, str) or not text.strip():
            raise SessionError("the new text is empty")
        turn = self.turns[index]
        self.turns[index] = Turn(turn.role, text.strip(), turn.speaker)
        if index in self.versions:
            versions = self.versions[index]
            versions.texts[versions.shown] = text.strip()

    def show_version(self, index: int, number: int) -> None:
        """Show version `number` (0-based) of reply `index`: the transcript keeps it."""
        self._check_index(index)
        if self.turns[index].role != "character":
            raise SessionError(f"message {index} is the user's; only replies have versions")
        versions = self.versions_of(index)
        if isinstance(number, bool) or not isinstance(number, int) or not (
                0 <= number < len(versions.texts)):
            raise SessionError(f"this reply has {len(versions.texts)} version(s); there is no "
                               f"version {number!r} (count from 0)")
        versions.shown = number
        if len(versions.texts) > 1:
            self.versions[index] = versions
        turn = self.turns[index]
        self.turns[index] = Turn(turn.role, versions.texts[number], turn.speaker)

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not (
                0 <= index < len(self.turns)):
            raise SessionError(f"there is no message {index!r} in this chat (it has "
                               f"{len(self.turns)}); it may have been undone or cleared")

    def _cut(self, index: int) -> None:
        """Remove the turns from `index` on, with their versions."""
        del self.turns[index:]
        self.versions = {i: v for i, v in self.versions.items() if i < index}

    def last_user_index(self) -> int:
        """Index of the last user turn; SessionError when the user has said nothing yet."""
        for index in range(len(self.turns) - 1, -1, -1):
            if self.turns[index].role == "user":
                return index
        raise SessionError("the conversation has no message yet")

    def drop_replies(self) -> list[str]:
        """Remove the replies after the last user message; the speakers removed, in order."""
        keep = self.last_user_index() + 1
        speakers = [turn.speaker for turn in self.turns[keep:]]
        self._cut(keep)
        return [s for s in speakers if s is not None]

    def last_replies(self) -> list[Versions]:
        """The versions of each reply after the last user message, in order."""
        return [self.versions_of(i) for i in range(self.last_user_index() + 1, len(self.turns))]

    def undo(self) -> None:
        """Remove the last exchange: the last user message and every reply to it."""
        self._cut(self.last_user_index())

    def edit(self, index: int, text: str) -> None:
        """Replace user turn `index` by `text` and drop everything after it."""
        if not 0 <= index < len(self.turns) or self.turns[index].role != "user":
            raise SessionError(f"turn {index} is not a message of the user")
        self._cut(index)
        self.add_user(text)

    def reset(self) -> None:
        """Forget the whole transcript (the session keeps its id and characters)."""
        self._cut(0)

    def to_dict(self) -> dict:
        turns = [{"role": t.role, "text": t.text} | ({"speaker": t.speaker} if t.speaker else {})
                 for t in self.turns]
        for index, versions in self.versions.items():
            turns[index] |= {"versions": versions.texts, "shown": versions.shown}
        return {"format_version": FORMAT_VERSION, "id": self.id, "characters": self.characters,
                "created": self.created, "turns": turns}

    @classmethod
    def from_dict(cls, data: dict) -> ChatSession:
        """Rebuild a session from `to_dict` output; SessionError says what is wrong."""
        try:
            turns = [Turn(t["role"], str(t["text"]), t.get("speaker")) for t in data["turns"]]
            session = cls(str(data["id"]), list(data["characters"]), [],
                          float(data["created"]))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise SessionError(f"malformed session data: {err}") from None
        if any(t.role not in ("user", "character") for t in turns):
            raise SessionError("malformed session data: a turn has an unknown role")
        session.turns = turns
        for index, turn in enumerate(data["turns"]):
            if "versions" in turn:
                session.versions[index] = _versions(turn, turns[index], index)
        return session


def _versions(data: dict, turn: Turn, index: int) -> Versions:
    """The versions saved with turn `index`; SessionError unless they hold its text."""
    texts, shown = data["versions"], data.get("shown")
    if (turn.role != "character" or not isinstance(texts, list) or len(texts) < 2
            or not all(isinstance(t, str) for t in texts) or isinstance(shown, bool)
            or not isinstance(shown, int) or not 0 <= shown < len(texts)
            or texts[shown] != turn.text):
        raise SessionError(f"malformed session data: the versions of turn {index} do not hold "
                           "its text")
    return Versions(list(texts), shown)


class SessionStore:
    """Sessions as `<directory>/<id>.json`, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).expanduser()

    def path(self, session_id: str) -> Path:
        return self.directory / f"{validate_session_file_id(session_id)}.json"

    def save(self, session: ChatSession) -> None:
        atomic_write_json(self.path(session.id), session.to_dict())

    def load(self, session_id: str) -> ChatSession:
        """The saved session `session_id`; SessionError if missing or unreadable."""
        path = self.path(session_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SessionError(f"no saved session {session_id!r} in {self.directory}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SessionError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(data, dict) or data.get("id") != session_id:
            raise SessionError(f"{path} does not hold session {session_id!r}")
        return ChatSession.from_dict(data)

    def list_ids(self) -> list[str]:
        """Ids of the saved sessions, newest file first."""
        if not self.directory.is_dir():
            return []
        files = [p for p in self.directory.glob("*.json")
                 if SESSION_ID_PATTERN.fullmatch(p.stem)]
        return [p.stem for p in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)]

    def delete(self, session_id: str) -> None:
        self.path(session_id).unlink(missing_ok=True)

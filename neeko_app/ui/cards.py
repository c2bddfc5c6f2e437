"""The add-character wizard without the UI: read uploads, check the edits, install, export.

Every problem with what the user gave is raised as a CharacterError or DialogueError whose
message the UI can show as is; nothing is stored until `install_draft` succeeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from neeko_app.characters.card import (
    DIALOGUES_FILE,
    MAX_FIELD_CHARS,
    MAX_PROFILE_BYTES,
    Character,
    CharacterError,
    character_from_dict,
)
from neeko_app.characters.card_text import first_sentence
from neeko_app.characters.lorebook import load_lorebook, save_lorebook
from neeko_app.characters.png_chunks import MAX_CARD_BYTES
from neeko_app.characters.portrait import AVATAR_FILE
from neeko_app.characters.registry import named
from neeko_app.characters.tavern import LoreEntry, card_to_json, card_to_png, parse_card_bytes
from neeko_app.characters.transcript import parse_transcript
from neeko_app.chat.engine import ChatEngine
from neeko_app.config import Settings
from neeko_app.memory.knowledge import index_characters
from neeko_app.storage import atomic_write_bytes, atomic_write_json, atomic_write_text
from neeko_app.training.data import DialogueError, parse_conversation
from neeko_app.training.trainer import Progress
from neeko_app.training.workflows import TrainingJob, add_character

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = MAX_CARD_BYTES
CARD_SUFFIXES = (".png", ".json")
PROFILE_SUFFIXES = (".txt", ".md")
DIALOGUE_SUFFIXES = (".jsonl", ".txt")
EDITABLE_FIELDS = ("name", "slug", "description", "personality", "speaking_style", "scenario",
                   "greeting", "example_lines")
MAX_NAME_LINE = 100
MIN_EXPANSION_DIALOGUES = 50

Mode = Literal["fusion", "expansion"]


@dataclass
class CharacterDraft:
    """What step 1 read: the card fields (edited in step 2) and what goes along with them:
    the card's example chats (`examples`, dialogues.jsonl records), its picture (`portrait`,
    a PNG) and an uploaded dialogues file (`dialogues_text`)."""

    fields: dict[str, object]
    profile: str = ""
    lorebook: list[LoreEntry] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    portrait: bytes | None = None
    dialogues_text: str = ""
    dialogues_format: Literal["", "jsonl", "transcript"] = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.fields["name"])


def read_upload(path: Path, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an uploaded file, refused (before reading) when larger than `limit`."""
    size = path.stat().st_size
    if size > limit:
        raise CharacterError(f"{path.name} is {size / 2**20:.1f} MiB; uploads may be at most "
                             f"{limit / 2**20:.0f} MiB")
    return path.read_bytes()


def _text(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CharacterError(f"{filename} is not UTF-8 text") from None


def draft_from_file(path: Path) -> CharacterDraft:
    """A draft from a Tavern card (.png, .json) or a profile (.txt, .md)."""
    suffix = path.suffix.lower()
    if suffix not in CARD_SUFFIXES + PROFILE_SUFFIXES:
        raise CharacterError(f"{path.name}: unsupported file type; upload a Tavern card (.png or "
                             ".json) or a profile (.txt or .md)")
    data = read_upload(path)
    if suffix in PROFILE_SUFFIXES:
        return draft_from_profile(_text(data, path.name), path.name)
    parsed = parse_card_bytes(data, path.name)
    return CharacterDraft(card_fields(parsed.character), profile=parsed.profile,
                          lorebook=parsed.lorebook, examples=parsed.dialogues,
                          portrait=parsed.portrait, warnings=parsed.warnings)


def draft_from_profile(text: str, filename: str) -> CharacterDraft:
    """A draft from a profile: the first line is the name (`# Name` or `Name`), the rest is
    the profile; its first sentence becomes the description. The other fields get the
    defaults an imported card without them gets."""
    lines = text.strip().splitlines()
    if not lines:
        raise CharacterError(f"{filename} is empty")
    name = lines[0].strip().lstrip("#").strip()
    if not name or len(name) > MAX_NAME_LINE:
        raise CharacterError(f"{filename}: the first line must be the character's name, "
                             "e.g. '# Ada Lovelace'")
    body = "\n".join(lines[1:]).strip()
    if len(body.encode()) > MAX_PROFILE_BYTES:
        raise CharacterError(f"{filename}: the profile is too long ({len(body.encode())} bytes; "
                             f"at most {MAX_PROFILE_BYTES})")
    minimal_card = {"name": name, "description": first_sentence(body)}
    parsed = parse_card_bytes(json.dumps(minimal_card).encode(), filename)
    fields = card_fields(parsed.character) | {"source": f"Profile uploaded as {filename}"}
    return CharacterDraft(fields, profile=body, warnings=parsed.warnings)


def card_fields(character: Character) -> dict[str, object]:
    """The `character.json` fields of `character`."""
    fields = dataclasses.asdict(character)
    del fields["folder"]
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in fields.items()}


def with_dialogues(draft: CharacterDraft, path: Path) -> tuple[CharacterDraft, int]:
    """`draft` with the example dialogues of `path` (.jsonl in our format, or a .txt
    transcript), and how many conversations they hold."""
    suffix = path.suffix.lower()
    if suffix not in DIALOGUE_SUFFIXES:
        raise DialogueError(f"{path.name}: unsupported file type; upload dialogues as .jsonl "
                            "(one conversation a line) or a .txt transcript ('Name: line')")
    fmt = "jsonl" if suffix == ".jsonl" else "transcript"
    text = _text(read_upload(path), path.name)
    count = len(dialogue_records(text, fmt, draft.name))
    return dataclasses.replace(draft, dialogues_text=text, dialogues_format=fmt), count


def dialogue_records(text: str, fmt: str, name: str) -> list[dict]:
    """The conversations of a dialogues upload as `dialogues.jsonl` records (checked, each
    turn at most MAX_FIELD_CHARS long)."""
    records = parse_transcript(text, name) if fmt == "transcript" else _jsonl_records(text)
    for number, record in enumerate(records, start=1):
        for turn_number, turn in enumerate(record["turns"], start=1):
            length = sum(len(str(turn.get(key) or "")) for key in ("text", "action"))
            if length > MAX_FIELD_CHARS:
                raise DialogueError(f"conversation {number}, turn {turn_number} is too long "
                                    f"({length} characters; at most {MAX_FIELD_CHARS})")
    return records


def _jsonl_records(text: str) -> list[dict]:
    """The records of a dialogues.jsonl upload, each checked as a conversation."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise DialogueError(f"line {number} is not JSON ({err.msg})") from None
        parse_conversation(raw, f"line {number}")
        records.append(raw)
    if not records:
        raise DialogueError("the dialogues file holds no conversations")
    return records


def edited_fields(draft: CharacterDraft, edits: Mapping[str, str]) -> dict[str, object]:
    """The draft's fields with the step-2 edits (example lines: one per line)."""
    fields = dict(draft.fields)
    for key, value in edits.items():
        if key not in EDITABLE_FIELDS:
            raise ValueError(f"{key!r} is not an editable field")
        if key == "example_lines":
            fields[key] = [line.strip() for line in value.splitlines() if line.strip()]
        elif key == "name":
            fields[key] = " ".join(value.split())
        else:
            fields[key] = value.strip()
    return fields


def check_new_character(fields: Mapping[str, object], characters_dir: Path,
                        characters: Mapping[str, Character]) -> Character:
    """The character `fields` describe, if it is valid and neither its id nor its name is
    taken; else CharacterError saying what to change."""
    name = str(fields.get("name") or "")
    if any(sign in name for sign in "/\\") or name in (".", ".."):
        raise CharacterError(f"the name {name!r} looks like a path; a name cannot contain "
                             "'/' or '\\'")
    character = character_from_dict(dict(fields))
    if (characters_dir / character.slug).exists() or character.slug in characters:
        raise CharacterError(f"the id {character.slug!r} is taken by another character; "
                             "choose another id")
    same = named(characters.values(), character.name)
    if same is not None:
        raise CharacterError(f"a character named {same.name!r} already exists ({same.slug}); "
                             "give this one another name")
    return character


def write_character_folder(draft: CharacterDraft, fields: Mapping[str, object],
                           folder: Path) -> Path:
    """Write a character folder (card, profile, dialogues, lorebook, avatar) for
    `add_character`; the dialogues are the card's examples and the uploaded ones."""
    folder.mkdir(parents=True)
    atomic_write_json(folder / "character.json", dict(fields))
    if draft.profile:
        atomic_write_text(folder / "profile.md", draft.profile + "\n")
    records = list(draft.examples)
    if draft.dialogues_text:
        records += dialogue_records(draft.dialogues_text, draft.dialogues_format,
                                    str(fields["name"]))
    if records:
        atomic_write_text(folder / DIALOGUES_FILE,
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    save_lorebook(folder, draft.lorebook)
    if draft.portrait:
        atomic_write_bytes(folder / AVATAR_FILE, draft.portrait)
    return folder


def install_draft(engine: ChatEngine, settings: Settings, draft: CharacterDraft,
                  edits: Mapping[str, str], mode: Mode, job: TrainingJob,
                  staging_root: Path) -> Character:
    """Add the edited draft to the running app (fusion or expansion) and index its
    knowledge, lore included. The folder is built in a staging directory under
    `staging_root` and installed by `add_character`; on any error nothing is kept."""
    fields = edited_fields(draft, edits)
    check_new_character(fields, settings.user_characters_dir, engine.runtime.characters)
    if mode == "expansion" and not (draft.dialogues_text or draft.examples):
        raise CharacterError("expansion trains a block on example dialogues: upload some in "
                             "step 1, or choose fusion")
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="draft-", dir=staging_root))
    try:
        folder = write_character_folder(draft, fields, staging / str(fields["slug"]))
        character = add_character(settings, folder, mode, job, runtime=engine.runtime)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if engine.memory is not None:
        try:
            index_characters(engine.memory, [character])
        except Exception:  # the character works without retrieval; the log says why
            log.exception("knowledge of %s was not indexed", character.slug)
    return character


def export_card(character: Character, image_png: bytes, out_dir: Path) -> list[Path]:
    """Write `<slug>.png` (the image with the card in its chunks) and `<slug>.json` (a V2
    card), lorebook included; the paths written."""
    lore = load_lorebook(character)
    png, card = out_dir / f"{character.slug}.png", out_dir / f"{character.slug}.json"
    atomic_write_bytes(png, card_to_png(character, image_png, lore))
    atomic_write_json(card, card_to_json(character, lore))
    return [png, card]


def draft_summary(draft: CharacterDraft, source: str, conversations: int) -> str:
    """Markdown telling what step 1 read (`conversations`: how many the uploaded dialogues
    file holds), with the importer's warnings."""
    parts = [f"Read **{draft.name}** from {source}."]
    if draft.lorebook:
        count = len(draft.lorebook)
        parts.append(f"{count} lorebook {'entry goes' if count == 1 else 'entries go'} into "
                     "the character's memory.")
    if draft.portrait:
        parts.append("The card's picture becomes the character's portrait.")
    total = conversations + len(draft.examples)
    found = (f"{total} example conversation{'' if total == 1 else 's'}"
             + (f" ({len(draft.examples)} from the card)" if draft.examples else ""))
    if total >= MIN_EXPANSION_DIALOGUES:
        parts.append(f"{found}: enough to train its own block (expansion).")
    elif total:
        parts.append(f"{found}: expansion works, but a block trained on fewer than "
                     f"{MIN_EXPANSION_DIALOGUES} learns little.")
    if draft.warnings:
        parts.append("\n".join(f"- {warning}" for warning in draft.warnings))
    return "\n\n".join(parts)


def describe_progress(progress: Progress) -> str:
    """One line for a progress bar: step, epoch, loss and time left."""
    minutes, seconds = divmod(round(progress.eta_seconds), 60)
    return (f"step {progress.step}/{progress.total} · epoch {progress.epoch} · "
            f"loss {progress.loss:.3f} · about {minutes}:{seconds:02d} left")

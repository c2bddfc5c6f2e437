"""The bad-input corpus: broken or hostile input through every entry point — the card parser,
the wizard (uploads, edits, install), `add_character` and `neeko add-character`, the HTTP API
and the CLI's arguments.

Every case must be refused with a clear message (an error naming the problem; HTTP 4xx with
a JSON error; exit code 2 with a `neeko ...: error:` last line and no traceback) and must leave
every stored character, memory and session file byte-identical: the data dir is hashed
before and after each case (`unchanged`). Two concurrent adds of one character end with
exactly one installed, whole, and a clear error for the other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from neeko_app.api import create_app
from neeko_app.characters.card import (
    MAX_CARD_FILE_BYTES,
    MAX_FIELD_CHARS,
    MAX_PROFILE_BYTES,
    CharacterError,
    validate_slug,
)
from neeko_app.characters.png_chunks import MAX_CARD_BYTES
from neeko_app.characters.tavern import parse_card_bytes, slugify
from neeko_app.chat.engine import ChatEngine, ContextLimits
from neeko_app.chat.session import ChatSession, SessionError, SessionStore
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.training import workflows
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import STAGING_DIR, TrainingJob, add_character
from neeko_app.ui.cards import CharacterDraft, draft_from_file, install_draft, with_dialogues
from tests.conftest import write_card
from tests.test_api import DECODING, endless_scheduler
from tests.test_tavern_cards import chunk, png, text_chunk, v2
from tests.tiny_characters import make_tiny_runtime

TRAINED, FUSED = {"ada": "Ada Lovelace"}, {"cleo": "Cleopatra"}
JOB = TrainingJob(TrainingConfig(epochs=1, batch_size=2, max_tokens=64))
EXCHANGE = {"id": "x1", "turns": [{"role": "user", "text": "Hi"},
                                  {"role": "character", "text": "Tea?"}]}
SPARSE_200_MB = 200 * 2**20  # an int as a file's content: a sparse file of that many bytes
LONG_USER_LINE = json.dumps({"id": "long", "turns": [
    {"role": "user", "text": "word " * 400}, {"role": "character", "text": "Yes."}]})
LONG_TURN_LINE = json.dumps({"id": "long", "turns": [
    {"role": "user", "text": "Hi"}, {"role": "character", "text": "w" * (MAX_FIELD_CHARS + 1)}]})
# names without a visible letter or digit: zero-width spaces, a Hangul filler, control signs
INVISIBLE, FILLER, CONTROL = "\u200b\u200b", "\u3164", "\x01"
NO_VISIBLE, HAS_CONTROL = "has no visible letter or digit", "contains a control character"


# --- the data dir --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[ChatEngine]:
    """Characters (one with a block), their knowledge in memory, one saved session."""
    runtime = make_tiny_runtime(tmp_path_factory.mktemp("bad-input"), TRAINED, FUSED)
    memory = MemoryStore.open(runtime.settings.memory_dir)
    index_characters(memory, runtime.characters.values())
    sessions = SessionStore(runtime.settings.sessions_dir)
    sessions.save(ChatSession.new(["ada"]))
    engine = ChatEngine(runtime, memory, DECODING, sessions=sessions,
                        limits=ContextLimits(context_tokens=1024, max_reply_tokens=16),
                        scheduler=endless_scheduler(runtime))
    yield engine
    engine.close()


def snapshot(settings: Settings) -> dict[str, str]:
    """The sha256 of every file and the name of every folder under the characters, memory
    and sessions dirs (the staging folder itself, made by the first add, is left out)."""
    found = {}
    staging = settings.characters_dir / STAGING_DIR
    for top in (settings.characters_dir, settings.memory_dir, settings.sessions_dir):
        for path in top.rglob("*"):
            key = str(path.relative_to(top.parent))
            if path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path != staging:
                found[key] = "folder"
    return found


def state(engine: ChatEngine) -> tuple:
    runtime = engine.runtime
    return snapshot(runtime.settings), dict(runtime.characters), list(runtime.model.block_names)


@pytest.fixture
def unchanged(engine) -> Iterator[None]:
    """Fails the test if it changed a stored file, the characters or the loaded blocks."""
    before = state(engine)
    assert len(before[0]) > 10, "the data dir should hold characters, memory and a session"
    yield
    assert state(engine) == before, "bad input changed the data dir"


def write(path: Path, content: bytes | str | int) -> Path:
    """Write `content` to `path`; an int makes a sparse file of that size (cheap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, int):
        with path.open("wb") as handle:
            handle.truncate(content)
    else:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- card bytes -----------------------------------------------------------------------------


def card_json(**fields: object) -> bytes:
    return json.dumps(v2(**fields), ensure_ascii=False).encode()


def deflate_bomb(size: int = 4 * MAX_CARD_BYTES) -> bytes:
    """`size` zero bytes, deflated (a few KiB)."""
    squeezer, zeros = zlib.compressobj(9), bytes(2**20)
    parts = [squeezer.compress(zeros) for _ in range(size // len(zeros))]
    return b"".join(parts) + squeezer.flush()


def corrupt_crc(data: bytes) -> bytes:
    at = data.index(b"chara") + 10  # a byte inside the card chunk's base64
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


def nested(depth: int) -> bytes:
    return b'{"name": "Mira", "extensions": ' + b"[" * depth + b"]" * depth + b"}"


PNG_CARD = png(text_chunk("chara", v2()))
LATIN1_CARD = card_json(name="Mira").replace(b"Mira", "Mîra".encode("latin-1"))
MIXED_CARD = card_json(name="Mîra", description="café").replace("café".encode(),
                                                                  "café".encode("cp1252"))

CARD_CASES = [  # (file name, bytes or a function making them, the message)
    ("truncated.png", PNG_CARD[:len(PNG_CARD) // 2], "PNG is truncated"),
    ("magic-only.png", PNG_CARD[:8], "PNG is truncated"),
    ("bad-crc.png", corrupt_crc(PNG_CARD), "PNG is corrupt: bad CRC in chunk 'tEXt'"),
    ("no-card.png", png(), "PNG holds no character card"),
    ("not-base64.png", png(chunk(b"tEXt", b"chara\0%%%not base64%%%")), "is not valid base64"),
    ("ztxt-bomb.png", lambda: png(chunk(b"zTXt", b"chara\0\0" + deflate_bomb())),
     f"compressed card is larger than {MAX_CARD_BYTES} bytes"),
    ("itxt-bomb.png", lambda: png(chunk(b"iTXt", b"chara\0\1\0\0\0" + deflate_bomb())),
     f"compressed card is larger than {MAX_CARD_BYTES} bytes"),
    ("spec.json", json.dumps({**v2(), "spec": "chara_card_v9"}).encode(),
     "unknown card spec 'chara_card_v9'"),
    ("no-data.json", b'{"spec": "chara_card_v2"}', "chara_card_v2 card has no 'data' object"),
    ("no-name.json", json.dumps({"spec": "chara_card_v2", "data": {"description": "x"}}).encode(),
     "card has no name"),
    ("blank-name.json", card_json(name=" \n\t "), "card has no name"),
    ("long-name.json", card_json(name="N" * 10_000), "name is too long (10000 characters"),
    ("invisible-name.json", card_json(name=INVISIBLE), NO_VISIBLE),
    ("filler-name.json", card_json(name=FILLER), NO_VISIBLE),
    ("control-name.json", card_json(name=CONTROL), HAS_CONTROL),
    ("format-name.json", card_json(name="\u202e\u2066"), NO_VISIBLE),
    ("name-number.json", card_json(name=7), "field 'name' must be text, not int"),
    ("latin1.json", LATIN1_CARD, "card is not valid UTF-8 (bad byte at offset"),
    ("mixed.json", MIXED_CARD, "card is not valid UTF-8 (bad byte at offset"),
    ("latin1.png", png(chunk(b"tEXt", b"chara\0" + base64.b64encode(LATIN1_CARD))),
     "card is not valid UTF-8"),
    ("utf16.json", json.dumps(v2()).encode("utf-16"), "not a character card"),
    ("empty.json", b"", "not a character card: expected a PNG image or a JSON file"),
    ("huge.json", lambda: card_json(description="a" * (MAX_CARD_BYTES + 1)), "file is too large"),
    ("long-field.json", card_json(description="d" * 50_000), "field 'description' is too long"),
    ("deep.json", nested(100_000), "card JSON is nested too deeply"),
    ("deep-65.json", nested(65), "card JSON is nested too deeply (limit 64)"),
    ("array.json", b"[1, 2, 3]", "card JSON must be an object"),
    ("bad-lorebook.json", card_json(character_book={"entries": "x"}),
     "character_book must be an object with a list of entries"),
]


def card_bytes(content: bytes | int | Callable[[], bytes]) -> bytes | int:
    return content() if callable(content) else content


@pytest.mark.parametrize(("filename", "content", "message"), CARD_CASES,
                         ids=[case[0] for case in CARD_CASES])
def test_card_parser(unchanged, filename, content, message):
    with pytest.raises(CharacterError) as error:
        parse_card_bytes(card_bytes(content), filename)
    assert str(error.value).startswith(f"{filename}: ") and message in str(error.value)


@pytest.mark.parametrize(("name", "slug"), [
    ("../../etc/passwd", "etc-passwd"), ("CON", "con-character"), ("lpt1", "lpt1-character"),
    ("😀", "char-"), ("مريم", "char-"), ("\u202eevil", "evil"), ("N" * 100, "n" * 40),
])
def test_hostile_names_get_safe_ids(unchanged, name, slug):
    made = slugify(name)
    assert validate_slug(made) == made and made.startswith(slug)


# --- the wizard: uploads --------------------------------------------------------------------


def mira_draft(tmp_path: Path) -> CharacterDraft:
    """Mira's card without example messages: no dialogues unless a case uploads some."""
    return draft_from_file(write(tmp_path / "mira.json", card_json(mes_example="")))


UPLOAD_CASES = [  # (what is read, file name, content, the message)
    ("card", "huge.png", SPARSE_200_MB, "huge.png is 200.0 MiB; uploads may be at most 8 MiB"),
    ("card", "huge.md", SPARSE_200_MB, "huge.md is 200.0 MiB"),
    ("card", "truncated.png", PNG_CARD[:-30], "truncated.png: PNG is truncated"),
    ("card", "no-card.png", png(), "no-card.png: PNG holds no character card"),
    ("card", "bomb.png", lambda: png(chunk(b"zTXt", b"chara\0\0" + deflate_bomb())),
     "compressed card is larger than"),
    ("card", "spec.json", json.dumps({**v2(), "spec": "tavern_v0"}).encode(),
     "unknown card spec 'tavern_v0'"),
    ("card", "no-name.json", card_json(name=""), "no-name.json: card has no name"),
    ("card", "deep.json", nested(100_000), "nested too deeply"),
    ("card", "latin1.json", LATIN1_CARD, "latin1.json: card is not valid UTF-8"),
    ("card", "card.zip", b"PK\3\4", "card.zip: unsupported file type"),
    ("card", "latin1.md", "# Zoë\nA painter.".encode("latin-1"), "latin1.md is not UTF-8 text"),
    ("card", "mixed.txt", "# Zoë\nCafé".encode() + " – ".encode("cp1252"),
     "mixed.txt is not UTF-8 text"),
    ("card", "empty.md", b"\n \n", "empty.md is empty"),
    ("card", "long.md", "N" * 10_000 + "\nA painter.", "the first line must be the character's"),
    ("card", "invisible.md", f"# {INVISIBLE}\nA painter.", NO_VISIBLE),
    ("card", "long-profile.md", "# Zoe\n" + "p" * (MAX_PROFILE_BYTES + 1),
     "the profile is too long"),
    ("dialogues", "long-turn.jsonl", LONG_TURN_LINE, "conversation 1, turn 2 is too long"),
    ("dialogues", "long-turn.txt", "You: Hi\nMira: " + "w" * (MAX_FIELD_CHARS + 1),
     "conversation 1, turn 2 is too long"),
    ("dialogues", "huge.jsonl", SPARSE_200_MB, "huge.jsonl is 200.0 MiB"),
    ("dialogues", "empty.jsonl", b"", "the dialogues file holds no conversations"),
    ("dialogues", "blank.jsonl", b"\n\n  \n", "the dialogues file holds no conversations"),
    ("dialogues", "one-line.txt", "Mira: Tea?", "no exchange found in the transcript"),
    ("dialogues", "user-only.jsonl", json.dumps({"turns": [{"role": "user", "text": "Hi"}]}),
     "line 1: the last turn must be the character's"),
    ("dialogues", "broken.jsonl", json.dumps(EXCHANGE) + "\n{oops\n", "line 2 is not JSON"),
    ("dialogues", "array.jsonl", "[1, 2]", "line 1: expected an object"),
    ("dialogues", "roles.jsonl", json.dumps({"turns": [{"role": "character", "text": "Hi"}]}),
     "line 1: turn 1 must have role 'user'"),
    ("dialogues", "latin1.txt", "You: Olá\nMira: Olá".encode("latin-1"), "is not UTF-8 text"),
    ("dialogues", "d.csv", "a,b", "d.csv: unsupported file type"),
]


@pytest.mark.parametrize(("kind", "filename", "content", "message"), UPLOAD_CASES,
                         ids=[f"{case[0]}-{case[1]}" for case in UPLOAD_CASES])
def test_wizard_uploads(unchanged, tmp_path, monkeypatch, kind, filename, content, message):
    draft = mira_draft(tmp_path)
    path = write(tmp_path / "upload" / filename, card_bytes(content))
    if isinstance(content, int):  # an oversized upload is refused by its size, unread
        monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self}"))
    with pytest.raises(ValueError) as error:
        draft_from_file(path) if kind == "card" else with_dialogues(draft, path)
    assert message in str(error.value)


# --- the wizard: edits and install ----------------------------------------------------------


INSTALL_CASES = [  # (edits, mode, dialogues, the message)
    ({"name": "../../etc/passwd"}, "fusion", "", "looks like a path"),
    ({"name": "a\\b"}, "fusion", "", "looks like a path"),
    ({"slug": "../../etc/passwd"}, "fusion", "", "invalid character id '../../etc/passwd'"),
    ({"slug": "CON"}, "fusion", "", "invalid character id 'CON'"),
    ({"slug": "con"}, "fusion", "", "'con': a reserved device name"),
    ({"slug": "a" * 10_000}, "fusion", "", "invalid character id"),
    ({"slug": "😀"}, "fusion", "", "invalid character id '😀'"),
    ({"slug": ""}, "fusion", "", "lacks required fields: slug"),
    ({"name": ""}, "fusion", "", "lacks required fields: name"),
    ({"name": "N" * 10_000}, "fusion", "", "name is too long (10000 characters; at most 100)"),
    ({"name": INVISIBLE}, "fusion", "", NO_VISIBLE),
    ({"name": FILLER}, "fusion", "", NO_VISIBLE),
    ({"name": f"Mira{CONTROL}"}, "fusion", "", HAS_CONTROL),
    ({"description": "d" * (MAX_FIELD_CHARS + 1)}, "fusion", "", "description is too long"),
    ({"greeting": "  "}, "fusion", "", "lacks required fields: greeting"),
    ({"name": "CLEOPATRA"}, "fusion", "", "a character named 'Cleopatra' already exists (cleo)"),
    ({"name": "ada lovelace", "slug": "ada-2"}, "fusion", "", "named 'Ada Lovelace' already"),
    ({"slug": "cleo"}, "fusion", "", "the id 'cleo' is taken"),
    ({"folder": "/etc"}, "fusion", "", "'folder' is not an editable field"),
    ({}, "expansion", "", "expansion trains a block on example dialogues"),
    ({}, "expansion", LONG_USER_LINE, "longer than 64 tokens before any reply"),
    ({}, "merge", "", "mode must be 'fusion' or 'expansion'"),
]


@pytest.mark.parametrize(("edits", "mode", "dialogues", "message"), INSTALL_CASES)
def test_wizard_install(unchanged, engine, tmp_path, edits, mode, dialogues, message):
    draft = mira_draft(tmp_path)
    if dialogues:
        draft, _ = with_dialogues(draft, write(tmp_path / "d.jsonl", dialogues))
    staging = tmp_path / "staging"
    with pytest.raises(ValueError) as error:
        install_draft(engine, engine.runtime.settings, draft, edits, mode, JOB, staging)
    assert message in str(error.value)
    assert not staging.exists() or list(staging.iterdir()) == []


# --- add_character --------------------------------------------------------------------------


def folder(root: Path, dirname: str = "newcomer", name: str = "Newcomer",
           dialogues: bytes | str | int | None = None, **fields: object) -> Path:
    """A character folder to add (its id is `dirname` unless `fields` give a slug): a valid
    card, `fields` overriding, and optional dialogues."""
    root.mkdir(parents=True, exist_ok=True)
    made = write_card(root, dirname, name, **fields)
    if dialogues is not None:
        write(made / "dialogues.jsonl", dialogues)
    return made


def with_card(content: bytes) -> Callable[[Path], Path]:
    return lambda root: write(folder(root) / "character.json", content).parent


ADD_CASES = [  # (id, the source folder made under a root, mode, the message)
    ("missing", lambda root: root / "nowhere", "fusion",
     "nowhere is not a character folder (no character.json)"),
    ("empty-folder", lambda root: (root / "empty").mkdir(parents=True) or root / "empty",
     "fusion", "is not a character folder (no character.json)"),
    ("card-file", lambda root: folder(root) / "character.json", "fusion",
     "is not a character folder (no character.json)"),
    ("card-is-folder", lambda root: (root / "odd" / "character.json").mkdir(parents=True)
     or root / "odd", "fusion", "is not a character folder (no character.json)"),
    ("not-json", with_card(b"{oops"), "fusion", "is not valid UTF-8 JSON"),
    ("latin1", with_card('{"name": "Zoë"}'.encode("latin-1")), "fusion", "not valid UTF-8"),
    ("array", with_card(b"[]"), "fusion", "a character card must be a JSON object"),
    ("no-name", lambda root: folder(root, name=""), "fusion", "lacks required fields: name"),
    ("long-name", lambda root: folder(root, name="N" * 10_000), "fusion", "name is too long"),
    ("invisible-name", lambda root: folder(root, name=INVISIBLE), "fusion", NO_VISIBLE),
    ("control-name", lambda root: folder(root, name=CONTROL), "fusion", HAS_CONTROL),
    ("long-field", lambda root: folder(root, scenario="s" * (MAX_FIELD_CHARS + 1)), "fusion",
     "scenario is too long"),
    ("long-line", lambda root: folder(root, example_lines=["l" * (MAX_FIELD_CHARS + 1)]),
     "fusion", "example_lines[0] is too long"),
    ("huge-card", with_card(b" " * (MAX_CARD_FILE_BYTES + 1)), "fusion",
     "character.json is too large"),
    ("huge-profile", lambda root: write(folder(root) / "profile.md", MAX_PROFILE_BYTES + 1).parent,
     "fusion", "profile.md is too large"),
    ("traversal", lambda root: folder(root, slug="../../etc/passwd"), "fusion",
     "invalid character id '../../etc/passwd'"),
    ("reserved", lambda root: folder(root, "con"), "fusion", "a reserved device name"),
    ("emoji-id", lambda root: folder(root, name="😀", slug="😀"),
     "fusion", "invalid character id '😀'"),
    ("other-folder", lambda root: folder(root, slug="someone"),
     "fusion", "slug 'someone' differs from folder 'newcomer'"),
    ("id-taken", lambda root: folder(root, "ada", "Another Ada"), "fusion",
     "a character with the id 'ada' already exists"),
    ("name-taken", lambda root: folder(root, "ada-2", "ADA LOVELACE"), "fusion",
     "a character named 'Ada Lovelace' already exists (ada)"),
    ("no-dialogues", lambda root: folder(root), "expansion", "dialogues.jsonl does not exist"),
    ("empty-dialogues", lambda root: folder(root, dialogues=""), "expansion",
     "holds no conversations"),
    ("one-line", lambda root: folder(root, dialogues='{"turns": [{"role": "user", "text": "Hi"}]}'),
     "expansion", "line 1: the last turn must be the character's"),
    ("broken-line", lambda root: folder(root, dialogues=json.dumps(EXCHANGE) + "\n{oops"),
     "expansion", "dialogues.jsonl line 2: not JSON"),
    ("latin1-dialogues", lambda root: folder(root, dialogues="Olá".encode("latin-1")),
     "expansion", "is not UTF-8 text"),
    ("huge-dialogues", lambda root: folder(root, dialogues=21 * 2**20), "expansion",
     "is larger than 20 MiB"),
    ("too-long", lambda root: folder(root, dialogues=LONG_USER_LINE), "expansion",
     "longer than 64 tokens before any reply"),
    ("bad-mode", lambda root: folder(root), "merge", "mode must be 'fusion' or 'expansion'"),
]


@pytest.mark.parametrize(("make", "mode", "message"), [case[1:] for case in ADD_CASES],
                         ids=[case[0] for case in ADD_CASES])
def test_add_character(unchanged, engine, tmp_path, make, mode, message):
    source = make(tmp_path / "incoming")
    with pytest.raises(ValueError) as error:
        add_character(engine.runtime.settings, source, mode, JOB, runtime=engine.runtime)
    assert message in str(error.value)


# --- the CLI --------------------------------------------------------------------------------


def sources(root: Path) -> dict[str, str]:
    """Folders the CLI cases add, by the name their arguments use."""
    made = {"good": folder(root / "a"), "traversal": folder(root / "b", slug="../../etc/passwd"),
            "twin": folder(root / "c", "ada-2", "ada LOVELACE"),
            "taken": folder(root / "d", "ada", "Ada Again"),
            "empty": folder(root / "e", dialogues=""),
            "invisible": folder(root / "f", "invisible", INVISIBLE)}
    return {key: str(path) for key, path in made.items()} | {
        "card": str(made["good"] / "character.json"), "nowhere": str(root / "nowhere")}


MODEL = ["--base-model", "tiny", "--device", "cpu", "--characters-dir", "{chars}",
         "--data-dir", "{data}"]
CLI_CASES = [  # (arguments, the message; usage errors come from argparse)
    (["add-character", "{nowhere}"], "is not a character folder (no character.json)"),
    (["add-character", "{card}"], "is not a character folder (no character.json)"),
    (["add-character", "{traversal}"], "invalid character id '../../etc/passwd'"),
    (["add-character", "{twin}"], "a character named 'Ada Lovelace' already exists (ada)"),
    (["add-character", "{taken}"], "a character with the id 'ada' already exists"),
    (["add-character", "{empty}", "--mode", "expansion"], "holds no conversations"),
    (["add-character", "{invisible}"], NO_VISIBLE),
    (["api", "--no-memory", "--max-request-bytes", "0"], "--max-request-bytes: expected a whole"),
    (["add-character", "{good}", "--mode", "merge"], "argument --mode: invalid choice: 'merge'"),
    (["add-character", "{good}", "--batch-size", "0"], "--batch-size: expected a whole number"),
    (["add-character", "{good}", "--epochs", "-1"], "--epochs: expected a whole number"),
    (["add-character", "{good}", "--max-tokens", "lots"], "got 'lots'"),
    (["add-character", "{good}", "--lr", "nan"], "--lr: expected a number above 0, got 'nan'"),
    (["chat", "nobody"], "unknown character 'nobody'; available: ada, cleo"),
    (["chat", "../../etc/passwd"], "unknown character '../../etc/passwd'"),
    (["chat", "ada", "--max-new-tokens", "0"], "--max-new-tokens: expected a whole number"),
    (["chat", "ada", "--temperature", "-1"], "--temperature: expected a number of at least 0"),
    (["serve", "--top-p", "0"], "--top-p: expected a number above 0 and at most 1"),
    (["api", "--no-memory", "--no-prompt-echo", "1"],
     "--no-prompt-echo: expected 0 (off) or a whole number of at least 2"),
    (["api", "--no-memory", "--repetition-penalty", "inf"], "--repetition-penalty: expected a "
     "number above 0"),
    (["api", "--no-memory", "--max-new-tokens", str(10**12)],
     f"replies of {10**12} tokens do not fit"),
    (["api", "--no-memory", "--port", "70000"], "--port: expected a port number (1-65535)"),
    (["api", "--no-memory", "--port", "http"], "--port: expected a port number"),
    (["serve", "--concurrency", "0"], "--concurrency: expected a whole number of at least 1"),
    (["train", "../../etc"], "invalid character id '../../etc'"),
    (["train", "nobody"], "unknown character 'nobody'"),
    (["export", "nobody", "--peft", "{out}"], "unknown character 'nobody'"),
    (["eval-heldout", "nobody"], "unknown character 'nobody'"),
    (["eval-heldout", "ada", "--limit", "0"], "--limit: expected a whole number"),
    # an abbreviated flag is not taken for a longer one (--characters is not --characters-dir)
    (["eval-heldout", "--characters", "ada"], "unrecognized arguments: --characters"),
    (["chat", "ada", "--script-guard", "yes"], "--script-guard: expected on or off, got 'yes'"),
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]
ERROR_LINE = re.compile(r"neeko(?: [a-z-]+)?: error: ")  # ours, or argparse's usage error


def server_must_not_start(*args: object, **kwargs: object) -> None:
    pytest.fail("bad arguments started a server")


@pytest.mark.parametrize(("arguments", "message"), CLI_CASES,
                         ids=[" ".join(case[0][:2]) + f"-{i}" for i, case in enumerate(CLI_CASES)])
def test_cli(unchanged, engine, tmp_path, monkeypatch, capsys, arguments, message):
    settings = engine.runtime.settings
    for name in ("memory_dir", "sessions_dir", "cache_dir"):
        monkeypatch.setenv(f"NEEKO_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setattr("neeko_app.api.server.serve", server_must_not_start)
    monkeypatch.setattr("neeko_app.ui.cli_serve.run_serve_command", server_must_not_start)
    names = sources(tmp_path) | {"chars": str(settings.characters_dir),
                                 "data": str(settings.data_dir), "out": str(tmp_path)}
    model = MODEL if arguments and arguments != ["frobnicate"] else []
    argv = [part.format(**names) for part in [*arguments, *model]]
    try:
        code = main(argv)
    except SystemExit as stop:  # a usage error: argparse prints it and exits
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert ERROR_LINE.match(last) and message in last, err


# --- the API --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(engine) -> TestClient:
    return TestClient(create_app(engine), raise_server_exceptions=False)


def user(text: str = "Hi") -> list[dict]:
    return [{"role": "user", "content": text}]


def asks(**fields: object) -> dict:
    return {"model": "ada", "messages": user(), **fields}


API_CASES = [  # (path, JSON body or raw bytes, headers, status, code, the message)
    ("chat", asks(max_tokens=0), {}, 400, "invalid_max_tokens", "between 1 and 1024"),
    ("chat", asks(max_tokens=-1), {}, 400, "invalid_max_tokens", "got -1"),
    ("chat", asks(max_tokens=10**12), {}, 400, "invalid_max_tokens", f"got {10**12}"),
    ("chat", asks(max_tokens="lots"), {}, 400, "invalid_request", "max_tokens"),
    ("chat", asks(max_tokens="16"), {}, 400, "invalid_request", "max_tokens"),
    ("chat", asks(max_tokens=True), {}, 400, "invalid_request", "max_tokens"),
    ("chat", asks(max_tokens=1.5), {}, 400, "invalid_request", "max_tokens"),
    ("chat", asks(max_completion_tokens=-1), {}, 400, "invalid_max_tokens", "got -1"),
    ("chat", asks(seed=10**30), {}, 400, "invalid_request", "seed"),
    ("chat", asks(n=True), {}, 400, "invalid_request", "n"),
    ("chat", asks(model="nobody"), {}, 404, "model_not_found", "'nobody' does not exist"),
    ("chat", asks(model="../../etc/passwd"), {}, 404, "model_not_found", "does not exist"),
    ("chat", asks(model="CON"), {}, 404, "model_not_found", "'CON' does not exist"),
    ("chat", asks(model="ADA"), {}, 404, "model_not_found", "'ADA' does not exist"),
    ("chat", asks(model=""), {}, 404, "model_not_found", "'' does not exist"),
    ("chat", asks(model="😀"), {}, 404, "model_not_found", "does not exist"),
    ("chat", asks(model="\u202eada"), {}, 404, "model_not_found", "does not exist"),
    ("chat", asks(model="a" * 10_000), {}, 404, "model_not_found", "does not exist"),
    ("chat", asks(model=7), {}, 400, "invalid_request", "model"),
    ("chat", asks(messages=user("word " * 5000)), {}, 400, "context_length_exceeded",
     "too long"),
    ("chat", asks(messages=user(" \n ")), {}, 400, "empty_message", "has no text"),
    ("chat", asks(messages=[]), {}, 400, "invalid_request", "messages"),
    ("chat", asks(user="../../etc/passwd"), {}, 400, "invalid_session_id", "invalid session id"),
    ("chat", asks(), {"X-Session-Id": "x" * 10_000}, 400, "invalid_session_id", "session id"),
    ("chat", asks(temperature=-1), {}, 400, "invalid_request", "temperature"),
    ("chat", asks(stop=["a", "b", "c", "d", "e"]), {}, 400, "invalid_stop", "at most 4"),
    ("chat", asks(stop=["a", ""]), {}, 400, "invalid_stop", "must not be empty"),
    ("chat", asks(frequency_penalty=2.01), {}, 400, "invalid_request", "frequency_penalty"),
    ("chat", asks(presence_penalty=-9), {}, 400, "invalid_request", "presence_penalty"),
    ("completions", {"model": "ada", "prompt": "Hi", "stop": [""]}, {}, 400, "invalid_stop",
     "must not be empty"),
    ("chat", b'{"model": "ada", "messages": [' + b"[" * 100_000, {}, 400, None,
     "error parsing the body"),
    ("chat", '{"model": "ada", "content": "Olá"}'.encode("latin-1"), {}, 400, None,
     "error parsing the body"),
    ("chat", b"[1, 2]", {}, 400, "invalid_request", "invalid request"),
    ("chat", b"", {}, 400, "invalid_request", "invalid request"),
    ("completions", {"model": "ada", "prompt": [-1]}, {}, 400, "invalid_token_id",
     "token ids must be between 0"),
    ("completions", {"model": "ada", "prompt": []}, {}, 400, "invalid_request", "prompt"),
    ("completions", {"model": "ada", "prompt": [5] * 5000}, {}, 400,
     "context_length_exceeded", "exceed the 1024-token context"),
    ("completions", {"model": "ada", "prompt": "x" * 2_000_000}, {}, 400,
     "context_length_exceeded", "is longer than the 1024-token context can hold"),
    ("completions", {"model": "ada", "prompt": "Hi", "max_tokens": "lots"}, {}, 400,
     "invalid_request", "max_tokens"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "code", "message"), API_CASES)
def test_api(unchanged, http, path, body, headers, status, code, message):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post(f"/v1/{path.replace('chat', 'chat/completions')}", content=content,
                         headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/models/nobody", "/v1/models/..%2F..%2Fetc%2Fpasswd",
                                  "/v1/models/%E2%80%AEada", "/v1/nothing"])
def test_api_unknown_models_and_routes(unchanged, http, path):
    response = http.get(path)
    assert response.status_code == 404 and response.json()["error"]["message"]


def test_api_refuses_a_200_mb_body_unread(unchanged, http):
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(200):
            sent.append(1)
            yield bytes(2**20)

    response = http.post("/v1/chat/completions", content=body(),
                         headers={"Content-Type": "application/json",
                                  "Content-Length": str(200 * 2**20)})
    assert response.status_code == 413 and sent == []
    assert response.json()["error"]["code"] == "request_too_large"


def test_api_a_message_that_cannot_fit_is_refused_untokenized(unchanged, engine, http,
                                                            monkeypatch):
    monkeypatch.setattr(engine, "count_tokens", lambda text: pytest.fail("tokenized"))
    response = http.post("/v1/chat/completions",
                         json={"model": "ada", "messages": user("x" * 2_000_000)})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_api_a_history_far_beyond_the_context_is_cut_cheaply(unchanged, engine, http,
                                                             monkeypatch):
    counted: list[int] = []
    count_tokens = engine.count_tokens
    monkeypatch.setattr(engine, "count_tokens", lambda text: counted.append(1) or
                        count_tokens(text))
    history = [{"role": role, "content": f"message number {i}"}
               for i in range(2000) for role in ("user", "assistant")][:-1]
    response = http.post("/v1/chat/completions",
                         json={"model": "ada", "messages": history, "max_tokens": 2})
    assert response.status_code == 200 and len(counted) < 40


# --- chat edits and versions of replies ----------------------------------------------------


@pytest.fixture(scope="module")
def answered(engine) -> ChatSession:
    """A saved session with one exchange (its reply remembered), made before `unchanged`."""
    session = engine.open_session(["ada"])
    engine.send(session, "Hello?")[0].result()
    return session


EDIT_CASES = [
    ("an edit of a message that no longer exists", lambda e, s: e.rewrite(s, 5, "x"),
     "there is no message 5 in this chat .it has 2.; it may have been undone or cleared"),
    ("a swipe index out of range", lambda e, s: e.show_version(s, 1, 3),
     "this reply has 1 version.s.; there is no version 3"),
]


@pytest.mark.parametrize(("operation", "message"), [case[1:] for case in EDIT_CASES],
                         ids=[case[0] for case in EDIT_CASES])
def test_chat_edits(answered, unchanged, engine, operation, message):
    before = answered.to_dict()
    with pytest.raises(SessionError, match=message):
        operation(engine, answered)
    assert answered.to_dict() == before


# --- concurrent adds of one character -------------------------------------------------------


@pytest.fixture
def fresh(tmp_path) -> Iterator[ChatEngine]:
    """An engine of its own (these tests do install a character), without memory."""
    engine = ChatEngine(make_tiny_runtime(tmp_path / "data", TRAINED, FUSED))
    yield engine
    engine.close()


def race(calls: list[Callable[[], object]]) -> list[object]:
    """Run `calls` at once in threads; each one's result or exception."""
    results: list[object] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def slow_embedding(monkeypatch) -> None:
    """Make each add take a while, so that two adds started together overlap."""
    embed = workflows.role_embedding
    monkeypatch.setattr(workflows, "role_embedding",
                        lambda text: time.sleep(0.3) or embed(text))


def winner_and_loser(results: list[object]):
    [winner] = [r for r in results if not isinstance(r, Exception)]
    [loser] = [r for r in results if isinstance(r, Exception)]
    assert isinstance(loser, CharacterError), repr(loser)
    assert re.search(r"is being added right now|already exists|is taken", str(loser))
    return winner, loser


def added_files(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert all(after.get(key) == value for key, value in before.items())
    return set(after) - set(before)


def test_concurrent_add_character_of_one_id(fresh, tmp_path, slow_embedding):
    settings = fresh.runtime.settings
    twins = [folder(tmp_path / f"upload-{i}", "twin", f"Twin {i}") for i in range(2)]
    before = snapshot(settings)
    winner, _ = winner_and_loser(race([
        lambda source=source: add_character(settings, source, "fusion", runtime=fresh.runtime)
        for source in twins]))
    assert added_files(before, snapshot(settings)) == {
        "characters/twin", "characters/twin/character.json", "characters/twin/role.safetensors"}
    source = twins[int(winner.name[-1])]
    assert (settings.characters_dir / "twin" / "character.json").read_bytes() == \
        (source / "character.json").read_bytes()
    assert fresh.runtime.characters["twin"] == winner
    assert list((settings.characters_dir / STAGING_DIR).iterdir()) == []


def test_concurrent_wizard_installs_of_one_name(fresh, tmp_path, slow_embedding):
    settings = fresh.runtime.settings
    drafts = [mira_draft(tmp_path / f"upload-{i}") for i in range(2)]
    staging = tmp_path / "staging"
    before = snapshot(settings)
    winner, _ = winner_and_loser(race([
        lambda draft=draft: install_draft(fresh, settings, draft, {}, "fusion", JOB, staging)
        for draft in drafts]))
    slug = winner.slug
    assert added_files(before, snapshot(settings)) == {
        f"characters/{slug}", f"characters/{slug}/character.json",
        f"characters/{slug}/profile.md", f"characters/{slug}/role.safetensors"}
    assert fresh.runtime.characters[slug] == winner and list(staging.iterdir()) == []

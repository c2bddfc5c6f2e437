"""The add-character wizard's logic without the UI: uploads, edits, checks, install, export."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from neeko_app.characters.card import CharacterError, character_from_dict, load_character
from neeko_app.characters.lorebook import load_lorebook
from neeko_app.characters.png_chunks import MAX_CARD_BYTES
from neeko_app.characters.tavern import LoreEntry, card_to_json, card_to_png, parse_card_bytes
from neeko_app.chat.engine import ChatEngine
from neeko_app.memory import MemoryStore
from neeko_app.training.data import DialogueError, load_dialogues
from neeko_app.training.trainer import Progress, TrainingCancelled, TrainingConfig
from neeko_app.training.workflows import TrainingJob
from neeko_app.ui.cards import (
    check_new_character,
    describe_progress,
    draft_from_file,
    draft_summary,
    edited_fields,
    export_card,
    install_draft,
    with_dialogues,
    write_character_folder,
)
from tests.tiny_characters import make_tiny_runtime

MIRA = {"name": "Mira Vance", "slug": "mira-vance",
        "description": "A lighthouse keeper on a storm-beaten island.",
        "personality": "Calm, wry.", "scenario": "A stormy night.", "greeting": "Tea?"}
LORE = [LoreEntry(("lighthouse", "tower"), "The lighthouse has exactly 132 steps.", "Tower")]
PROFILE = "# Tycho Brahe\n\nA Danish astronomer with a metal nose. He measures stars.\n"
TRANSCRIPT = "You: What do you measure?\nTycho: The stars, night after night.\n"


@pytest.fixture
def mira_png(tmp_path):
    path = tmp_path / "mira.png"
    path.write_bytes(card_to_png(character_from_dict(MIRA), lorebook=LORE))
    return path


@pytest.fixture(scope="module")
def memory(tmp_path_factory) -> MemoryStore:
    return MemoryStore.open(tmp_path_factory.mktemp("chroma"))


@pytest.fixture
def engine(tmp_path, memory) -> Iterator[ChatEngine]:
    runtime = make_tiny_runtime(tmp_path, trained={"ada": "Ada Lovelace"},
                                fused={"cleo": "Cleopatra"})
    engine = ChatEngine(runtime, memory)
    yield engine
    engine.close()


def test_a_png_card_gives_editable_fields_and_its_lorebook(mira_png):
    draft = draft_from_file(mira_png)
    assert draft.name == "Mira Vance" and draft.fields["slug"] == "mira-vance"
    assert draft.fields["greeting"] == "Tea?" and draft.lorebook == LORE
    assert draft.dialogues_text == "" and draft.profile == ""


def test_a_json_card_is_read_the_same_way(tmp_path, mira_png):
    path = tmp_path / "mira.json"
    path.write_text(json.dumps(card_to_json(character_from_dict(MIRA), LORE)))
    draft, from_png = draft_from_file(path), draft_from_file(mira_png)
    assert draft.fields | {"source": ""} == from_png.fields | {"source": ""}
    assert draft.lorebook == LORE and draft.fields["source"].endswith("(spec chara_card_v2)")


def test_a_profile_gives_name_description_and_defaults(tmp_path):
    path = tmp_path / "tycho.md"
    path.write_text(PROFILE)
    draft = draft_from_file(path)
    assert draft.name == "Tycho Brahe" and draft.fields["slug"] == "tycho-brahe"
    assert draft.fields["description"] == "A Danish astronomer with a metal nose."
    assert draft.profile == "A Danish astronomer with a metal nose. He measures stars."
    assert draft.fields["greeting"] == "Hello, I am Tycho Brahe."
    assert draft.fields["source"] == "Profile uploaded as tycho.md"
    assert "greeting was missing; filled with a default" in draft.warnings


@pytest.mark.parametrize(("name", "data", "message"), [
    ("card.exe", b"MZ", "card.exe: unsupported file type; upload a Tavern card"),
    ("card.png", b"\x89PNG\r\n\x1a\nshort", "card.png: PNG is truncated"),
    ("card.json", b"{not json", "card.json: card is not valid JSON"),
    ("card.json", b'{"spec": "chara_card_v2", "data": {}}', "card.json: card has no name"),
    ("notes.md", b"", "notes.md is empty"),
    ("notes.txt", b"\xff\xfe\x00", "notes.txt is not UTF-8 text"),
    ("notes.txt", b"x" * 200 + b"\nmore", "the first line must be the character's name"),
])
def test_bad_uploads_are_clear_errors(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CharacterError) as error:
        draft_from_file(path)
    assert message in str(error.value)


def test_uploads_over_the_limit_are_refused_before_reading(tmp_path):
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:
        handle.truncate(MAX_CARD_BYTES + 1)
    with pytest.raises(CharacterError, match=r"huge.png is 8.0 MiB; uploads may be at most 8"):
        draft_from_file(path)


def test_dialogues_from_jsonl_or_a_transcript(tmp_path, mira_png):
    draft = draft_from_file(mira_png)
    jsonl = tmp_path / "d.jsonl"
    record = {"id": "m1", "turns": [{"role": "user", "text": "Hi"},
                                    {"role": "character", "text": "Tea?"}]}
    jsonl.write_text(json.dumps(record) + "\n\n" + json.dumps(record) + "\n")
    with_jsonl, count = with_dialogues(draft, jsonl)
    assert count == 2 and with_jsonl.dialogues_format == "jsonl"
    transcript = tmp_path / "d.txt"
    transcript.write_text("You: Hi\nMira: Tea?\n")
    with_text, count = with_dialogues(draft, transcript)
    assert count == 1 and with_text.dialogues_format == "transcript"
    assert draft.dialogues_text == ""  # the draft itself is unchanged


@pytest.mark.parametrize(("name", "text", "message"), [
    ("d.csv", "a,b", "d.csv: unsupported file type; upload dialogues as .jsonl"),
    ("d.jsonl", '{"turns": [{"role": "user", "text": "Hi"}]}',
     "line 1: the last turn must be the character's"),
    ("d.jsonl", "{oops", "line 1 is not JSON"),
    ("d.txt", "Narrator: nobody answers", "no exchange found in the transcript"),
])
def test_bad_dialogues_are_clear_errors(tmp_path, mira_png, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DialogueError) as error:
        with_dialogues(draft_from_file(mira_png), path)
    assert message in str(error.value)


def test_edits_replace_fields(mira_png):
    fields = edited_fields(draft_from_file(mira_png), {
        "name": "  Mira   Vance ", "example_lines": "One.\n\n  Two. \n", "greeting": " Hi. "})
    assert fields["name"] == "Mira Vance" and fields["greeting"] == "Hi."
    assert fields["example_lines"] == ["One.", "Two."]
    with pytest.raises(ValueError, match="'folder' is not an editable field"):
        edited_fields(draft_from_file(mira_png), {"folder": "/etc"})


@pytest.mark.parametrize(("edits", "message"), [
    ({"name": "../../etc"}, "looks like a path"),
    ({"name": "a\\b"}, "looks like a path"),
    ({"slug": "../mira"}, "invalid character id '../mira'"),
    ({"slug": "Mira"}, "invalid character id 'Mira'"),
    ({"slug": "ada"}, "the id 'ada' is taken"),
    ({"slug": "old"}, "the id 'old' is taken"),  # a folder, even one that does not load
    ({"name": "ADA LOVELACE"}, "a character named 'Ada Lovelace' already exists (ada)"),
    ({"greeting": " "}, "lacks required fields: greeting"),
])
def test_new_characters_must_be_valid_and_unique(engine, mira_png, edits, message):
    settings = engine.runtime.settings
    (settings.characters_dir / "old").mkdir()
    fields = edited_fields(draft_from_file(mira_png), edits)
    with pytest.raises(CharacterError) as error:
        check_new_character(fields, settings.characters_dir, engine.runtime.characters)
    assert message in str(error.value)


def test_the_folder_holds_card_profile_dialogues_and_lorebook(tmp_path):
    (tmp_path / "tycho.md").write_text(PROFILE)
    (tmp_path / "tycho.txt").write_text(TRANSCRIPT)
    draft, _ = with_dialogues(draft_from_file(tmp_path / "tycho.md"), tmp_path / "tycho.txt")
    draft.lorebook = LORE
    fields = edited_fields(draft, {"name": "Tycho"})  # the transcript's label still matches
    folder = write_character_folder(draft, fields, tmp_path / "out" / "tycho-brahe")
    character = load_character(folder)
    assert character.name == "Tycho" and load_lorebook(character) == LORE
    assert character.profile_text() == draft.profile + "\n"
    [conversation] = load_dialogues(folder / "dialogues.jsonl")
    assert [t.text for t in conversation.turns] == ["What do you measure?",
                                                    "The stars, night after night."]


def test_fusion_install_indexes_the_lore_and_leaves_no_staging(engine, mira_png, tmp_path):
    staging = tmp_path / "staging"
    character = install_draft(engine, engine.runtime.settings, draft_from_file(mira_png), {},
                              "fusion", TrainingJob(), staging)
    assert engine.runtime.characters["mira-vance"] == character
    assert load_lorebook(character) == LORE
    assert (character.folder / "role.safetensors").is_file()
    assert not (character.folder / "block.safetensors").exists()
    assert list(staging.iterdir()) == []
    found = engine.memory.search_knowledge("mira-vance", "How many steps has the tower?", 5)
    assert ("lore", LORE[0].content) in [(chunk.kind, chunk.text) for chunk in found]


def test_a_cancelled_expansion_installs_nothing(engine, tmp_path):
    (tmp_path / "tycho.md").write_text(PROFILE)
    (tmp_path / "tycho.txt").write_text(TRANSCRIPT)
    draft, _ = with_dialogues(draft_from_file(tmp_path / "tycho.md"), tmp_path / "tycho.txt")
    blocks = list(engine.runtime.model.block_names)
    job = TrainingJob(TrainingConfig(epochs=1, batch_size=1), should_stop=lambda: True)
    with pytest.raises(TrainingCancelled):
        install_draft(engine, engine.runtime.settings, draft, {}, "expansion", job,
                      tmp_path / "staging")
    assert engine.runtime.model.block_names == blocks
    assert "tycho-brahe" not in engine.runtime.characters
    assert not (engine.runtime.settings.characters_dir / "tycho-brahe").exists()
    assert list((tmp_path / "staging").iterdir()) == []


def test_expansion_needs_dialogues(engine, mira_png, tmp_path):
    with pytest.raises(CharacterError, match="expansion trains a block on example dialogues"):
        install_draft(engine, engine.runtime.settings, draft_from_file(mira_png), {},
                      "expansion", TrainingJob(), tmp_path / "staging")
    assert not (engine.runtime.settings.characters_dir / "mira-vance").exists()


def test_an_exported_card_imports_again_with_its_lorebook(engine, mira_png, tmp_path):
    character = install_draft(engine, engine.runtime.settings, draft_from_file(mira_png), {},
                              "fusion", TrainingJob(), tmp_path / "staging")
    png, card = export_card(character, mira_png.read_bytes(), tmp_path)
    for path in (png, card):
        parsed = parse_card_bytes(path.read_bytes(), path.name)
        assert parsed.character.name == "Mira Vance" and parsed.lorebook == LORE


def test_summary_and_progress_lines(mira_png):
    draft = draft_from_file(mira_png)
    assert draft_summary(draft, "mira.png", 3) == (
        "Read **Mira Vance** from mira.png.\n\n1 lorebook entry goes into the character's "
        "memory.\n\nThe card's picture becomes the character's portrait.\n\n3 example "
        "conversations: expansion works, but a block trained on fewer than 50 learns little.")
    line = describe_progress(Progress(step=5, total=20, epoch=1, loss=2.5, seconds=10.0))
    assert line == "step 5/20 · epoch 1 · loss 2.500 · about 0:30 left"

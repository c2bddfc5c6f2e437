"""Real-shaped Tavern cards through the add-character wizard's logic: the draft holds the
profile, the example conversations and the portrait; the folder gets them; the avatar shown
is the card's picture; the card is added by fusion (or expansion on its examples alone),
chats, and its lore reaches memory. SillyTavern's own Seraphina card goes the same way when
the pinned SillyTavern is in the cache (the interop tests install it there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neeko_app.characters.card import load_character
from neeko_app.characters.card_text import MAX_SUMMARY_CHARS
from neeko_app.characters.png_chunks import PNG_MAGIC
from neeko_app.characters.portrait import AVATAR_FILE
from neeko_app.chat.engine import ChatEngine
from neeko_app.config import Settings
from neeko_app.training.data import load_dialogues
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import TrainingJob
from neeko_app.ui.avatars import avatar_path
from neeko_app.ui.cards import (
    draft_from_file,
    draft_summary,
    edited_fields,
    install_draft,
    with_dialogues,
    write_character_folder,
)
from tests.conftest import write_card
from tests.sillytavern import VERSION
from tests.test_tavern_cards import FERRYMAN, FERRYMAN_TRAITS, card_png, ferryman, picture
from tests.test_ui_cards import engine, memory  # noqa: F401  (fixtures)

SERAPHINA = (Settings.from_env().cache_dir / f"sillytavern-{VERSION}" / "node_modules"
             / "sillytavern" / "default" / "content" / "default_Seraphina.png")
RIVER_LORE = FERRYMAN["character_book"]["entries"][0]["content"]


@pytest.fixture
def corvin(tmp_path) -> Path:
    path = tmp_path / "corvin.png"
    path.write_bytes(card_png(ferryman()))
    return path


def lore_used(chat: ChatEngine, slug: str, message: str) -> list[str]:
    """The lore entries memory gave to the reply to `message`, in a new chat with `slug`."""
    session = chat.open_session([slug])
    [reply] = chat.send(session, message)
    reply.result()
    return [chunk.text for chunk in reply.context.knowledge if chunk.kind == "lore"]


def test_the_draft_holds_profile_examples_and_portrait(corvin):
    draft = draft_from_file(corvin)
    assert draft.fields["description"] == FERRYMAN_TRAITS
    assert draft.profile.startswith("[Corvin Ashdown's Personality=")
    assert [len(record["turns"]) for record in draft.examples] == [4, 2]
    assert draft.portrait.startswith(PNG_MAGIC)
    summary = draft_summary(draft, "corvin.png", 0)
    assert "The card's picture becomes the character's portrait." in summary
    assert "2 example conversations (2 from the card): expansion works" in summary


def test_the_folder_holds_the_avatar_and_the_cards_dialogues_with_uploaded_ones(corvin,
                                                                                 tmp_path):
    transcript = tmp_path / "more.txt"
    transcript.write_text("You: Busy night?\nCorvin: Never busy enough.\n")
    draft, uploaded = with_dialogues(draft_from_file(corvin), transcript)
    folder = write_character_folder(draft, edited_fields(draft, {}),
                                    tmp_path / "out" / "corvin-ashdown")
    assert uploaded == 1
    assert (folder / AVATAR_FILE).read_bytes() == draft.portrait
    assert [c.id for c in load_dialogues(folder / "dialogues.jsonl")] == [
        "card-0001", "card-0002", "transcript-0001"]
    assert load_character(folder).profile_text() == draft.profile + "\n"


def test_the_avatar_is_the_characters_own_picture_else_a_monogram(tmp_path):
    folder = write_card(tmp_path, "corvin", "Corvin")
    character, app_dir = load_character(folder), tmp_path / "app"
    monogram = avatar_path(character, app_dir)
    assert monogram == app_dir / "avatars" / "corvin.png"
    (folder / AVATAR_FILE).write_bytes(picture(64, 64))
    own = avatar_path(character, app_dir)
    assert own.parent == app_dir / "avatars" and own.name.startswith("corvin-")
    assert own.read_bytes() == picture(64, 64)
    (folder / AVATAR_FILE).write_bytes(picture(32, 32))  # a new picture gets a new name
    newer = avatar_path(character, app_dir)
    assert newer != own and newer.read_bytes() == picture(32, 32)
    (folder / AVATAR_FILE).write_bytes(b"GIF89a, not a PNG")
    assert avatar_path(character, app_dir) == monogram


def test_a_card_is_added_by_fusion_chats_and_its_lore_reaches_memory(
        engine, corvin, tmp_path):  # noqa: F811
    character = install_draft(engine, engine.runtime.settings, draft_from_file(corvin), {},
                              "fusion", TrainingJob(), tmp_path / "staging")
    for name in (AVATAR_FILE, "profile.md", "dialogues.jsonl", "lorebook.json"):
        assert (character.folder / name).is_file(), name
    assert avatar_path(character, tmp_path / "app").read_bytes() == (
        character.folder / AVATAR_FILE).read_bytes()
    assert RIVER_LORE in lore_used(engine, character.slug, "Tell me about the river Marrow.")


def test_expansion_trains_on_the_cards_examples_alone(engine, corvin, tmp_path):  # noqa: F811
    job = TrainingJob(TrainingConfig(epochs=1, batch_size=2, max_tokens=256))
    character = install_draft(engine, engine.runtime.settings, draft_from_file(corvin), {},
                              "expansion", job, tmp_path / "staging")
    assert character.block_path.is_file()
    assert engine.runtime.model.block_names[-1] == character.slug


@pytest.mark.skipif(not SERAPHINA.is_file(), reason=f"SillyTavern {VERSION} is not in the cache "
                    "(the SillyTavern interop tests install it)")
def test_sillytaverns_seraphina_is_added_by_fusion_and_chats_with_her_lore(
        engine, tmp_path):  # noqa: F811
    draft = draft_from_file(SERAPHINA)
    line = draft.fields["description"]
    assert line.startswith("caring, protective") and len(line) <= MAX_SUMMARY_CHARS
    assert "[" not in line and "Seraphina" not in line
    assert draft.profile.startswith("[Seraphina's Personality=")
    assert "<START>" not in draft.profile and "Describe your traits" not in draft.profile
    assert draft.fields["scenario"].startswith("You were attacked by beasts")
    [example] = draft.examples
    assert example["turns"][0] == {"role": "user", "text": '"Describe your traits?"'}
    assert len(draft.lorebook) == 4 and draft.portrait.startswith(PNG_MAGIC)

    character = install_draft(engine, engine.runtime.settings, draft, {}, "fusion",
                              TrainingJob(), tmp_path / "staging")
    assert character.slug == "seraphina" and (character.folder / AVATAR_FILE).is_file()
    lore = lore_used(engine, "seraphina", "What is Eldoria?")
    assert any("Eldoria is here, all of the woods" in text for text in lore), lore

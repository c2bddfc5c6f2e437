"""Prompt format, history fitting, card validation."""

from __future__ import annotations

import json

import pytest

from neeko_app.characters.card import (
    CharacterError,
    character_from_dict,
    load_character,
    validate_slug,
)
from neeko_app.chat.prompt import Turn, fit_history, render_prompt

CARD = {"name": "Ada", "slug": "ada", "description": "a mathematician.", "personality": "sharp",
        "scenario": "London, 1843.", "greeting": "Good evening."}


def test_prompt_ends_at_the_characters_turn():
    prompt = render_prompt("HEADER", [Turn("user", "hi"), Turn("character", "hello"),
                                      Turn("user", "how are you?")])
    assert prompt.startswith("<bos><start_of_turn>user\nHEADER\n\nhi<end_of_turn>\n")
    assert prompt.endswith("how are you?<end_of_turn>\n<start_of_turn>model\n")
    assert prompt.count("<start_of_turn>model\n") == 2
    with pytest.raises(ValueError):
        render_prompt("H", [Turn("user", "hi"), Turn("character", "hello")])


def test_fit_history_drops_oldest_exchanges_first():
    turns = [Turn("user", f"question {i} " * 5) if i % 2 == 0 else Turn("character", "answer " * 5)
             for i in range(9)]
    count = len  # one "token" per character
    budget = len(render_prompt("H", turns[-3:])) + 5
    kept = fit_history(turns, count, budget, "H")
    assert kept == turns[-3:]
    assert kept[0].role == "user" and kept[-1] == turns[-1]
    with pytest.raises(ValueError, match="too long"):
        fit_history([Turn("user", "x" * 500)], count, 100, "H")


def test_card_validation_messages(tmp_path):
    assert character_from_dict(CARD).name == "Ada"
    with pytest.raises(CharacterError, match="greeting"):
        character_from_dict({k: v for k, v in CARD.items() if k != "greeting"})
    for slug in ("../../etc/passwd", "CON ", "", "a" * 41, "Ada"):
        with pytest.raises(CharacterError):
            character_from_dict(CARD | {"slug": slug})
    for slug in ("ada\n", "ada/x", "a\x00"):
        with pytest.raises(CharacterError, match="invalid character id"):
            validate_slug(slug)
    with pytest.raises(CharacterError, match="list of strings"):
        character_from_dict(CARD | {"tags": "x"})
    folder = tmp_path / "ada"
    folder.mkdir()
    (folder / "character.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(CharacterError, match="UTF-8 JSON"):
        load_character(folder)
    (folder / "character.json").write_text(json.dumps(CARD | {"slug": "bob"}))
    with pytest.raises(CharacterError, match="differs from folder"):
        load_character(folder)

"""Scores of a scripted run on hand-made replies where the right numbers are known."""

from __future__ import annotations

from pathlib import Path

import pytest

from neeko_app.characters.registry import discover_characters
from neeko_app.evaluation.role_identification import profile_embedding
from neeko_app.evaluation.runner import ScriptedReply
from neeko_app.evaluation.scoring import score

SHIPPED = Path(__file__).resolve().parents[1] / "characters"


def reply(system: str, character: str, text: str, failures=None, turn: int = 0):
    return ScriptedReply(system, "s", character, 0, turn, "What is your work?", text, 2.0, 10,
                         (), failures)


def test_scores_per_system_and_character():
    characters = discover_characters(SHIPPED).characters
    profiles = {s: profile_embedding(characters[s]) for s in ("beethoven", "newton")}
    music = "My symphonies and sonatas I wrote even as my hearing failed me in Vienna."
    physics = "Gravity and my laws of motion, set out in the Principia, explain the orbits."
    replies = [
        reply("blocks", "beethoven", music, failures=()),
        reply("blocks", "newton", physics, failures=("mentions none of ['cambridge']",)),
        reply("baseline", "beethoven", physics),  # reads like Newton: not identified
        reply("baseline", "newton", "He was a scientist. He was a scientist. He was a "
                                    "scientist. He was a scientist."),
    ]
    table = score(replies, profiles)
    blocks, baseline = table["blocks"], table["baseline"]
    assert set(blocks) == {"overall", "beethoven", "newton"}
    assert blocks["overall"].role_identification == 1.0
    assert baseline["beethoven"].role_identification == 0.0
    assert blocks["overall"].expectation_pass_rate == 0.5
    assert baseline["overall"].expectation_pass_rate is None
    assert blocks["overall"].first_person == 1.0 and baseline["newton"].first_person == 0.0
    assert baseline["newton"].looping == 1.0 and blocks["overall"].looping == 0.0
    assert blocks["overall"].tokens_per_second == pytest.approx(5.0)
    assert blocks["beethoven"].relevance > 0.1
    assert blocks["overall"].to_dict()["replies"] == 2

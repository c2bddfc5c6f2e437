"""Scores of a scripted run on hand-made replies where the right numbers are known."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch.nn.functional as F

from neeko_app.characters.registry import discover_characters
from neeko_app.embedding import embed_texts
from neeko_app.evaluation.incremental import incremental_result
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


def test_before_after_adding_a_character_and_the_replay_check():
    music = "My symphonies and sonatas I wrote even as my hearing failed me in Vienna."
    rubicon = "I crossed the Rubicon with the Thirteenth legion; the die was cast."
    physics = "Gravity and my laws of motion, set out in the Principia, explain the orbits."
    profiles = {"beethoven": F.normalize(embed_texts([music])[0], dim=0),
                "newton": F.normalize(embed_texts([rubicon + " " + physics])[0], dim=0),
                "caesar": F.normalize(embed_texts([rubicon])[0], dim=0)}
    replies = [reply("blocks", "beethoven", music),
               reply("blocks", "newton", rubicon),  # Newton sounding like the newcomer
               reply("blocks", "caesar", rubicon),
               reply("fusion", "caesar", music)]
    table = score(replies, profiles)
    replayed = [replies[0], replace(replies[1], reply="Something else entirely.")]
    result = incremental_result(table, replies, replayed, profiles, "caesar")
    assert result.before == {"beethoven": 1.0, "newton": 1.0, "overall": 1.0}
    assert result.after == {"beethoven": 1.0, "newton": 0.0, "overall": 0.5}
    assert (result.replayed, result.identical) == (2, 1)
    assert result.expansion.role_identification == 1.0
    assert result.fusion.role_identification == 0.0
    with pytest.raises(ValueError, match="no blocks replies of characters other than"):
        incremental_result(table, replies[2:], [], profiles, "caesar")

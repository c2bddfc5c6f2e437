"""Shared rare words: the lexical part of a knowledge note's score."""

from __future__ import annotations

import math

import pytest

from neeko_app.memory.lexical import overlap, rarity, words


def test_words_are_lower_cased_without_possessives_or_single_letters():
    assert words("Baron Wetzlar's house, in 1799: a duel!") == {
        "baron", "wetzlar", "house", "in", "1799", "duel"}


def test_a_word_in_every_note_weighs_nothing_and_a_rare_one_most():
    notes = [words("the mill on the Wend"), words("the ship Gull"), words("the old mill")]
    weights = rarity(notes)
    assert weights["the"] == 0.0
    assert weights["wend"] == pytest.approx(math.log(3))
    assert weights["wend"] > weights["mill"] > 0


def test_overlap_is_the_share_of_the_query_weight_a_note_holds():
    notes = [words("the mill on the Wend"), words("the ship Gull"), words("the old mill")]
    weights = rarity(notes)
    asked = words("Which mill stands on the Wend, and what is an unknownword?")
    shares = [overlap(asked, note, weights) for note in notes]
    assert shares[0] == pytest.approx(1.0)  # holds every known word of weight
    assert shares[1] == 0.0 and 0.0 < shares[2] < shares[0]
    assert overlap(words("the"), notes[0], weights) == 0.0  # nothing of weight asked

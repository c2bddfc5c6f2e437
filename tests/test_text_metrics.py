"""Reply metrics on hand-made cases where the right answer is known."""

from __future__ import annotations

import pytest

from neeko_app.evaluation.text_metrics import (
    distinct_n,
    looping_rate,
    loops,
    mean_length,
    relevance,
)


def test_distinct_n_counts_unique_ngrams_over_all_replies():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["same same", "same same"], 2) == pytest.approx(1 / 2)
    assert distinct_n(["one"], 2) == 0.0


def test_a_reply_loops_when_a_4gram_comes_three_times():
    assert loops("I will go home. I will go home. I will go home.")
    assert not loops("I will go home. I will go home. Then I rest.")
    assert not loops("")
    assert looping_rate(["la la la la la la la la", "A calm reply.", "", "Fine."]) == 0.25


def test_mean_length_in_words():
    assert mean_length(["one two", "three four five six"]) == 3.0
    assert mean_length([]) == 0.0


def test_relevance_ranks_an_answer_above_an_unrelated_reply():
    question = "What instrument did you play at your concerts in Vienna?"
    on_topic, off_topic = relevance(
        [question, question],
        ["I played the piano at my concerts, and improvised for the Viennese nobles.",
         "The legions crossed the river at dawn and the cavalry pursued the enemy."])
    assert on_topic > off_topic + 0.2
    assert relevance(["Anything?"], ["  "]) == [0.0]
    with pytest.raises(ValueError, match="one reply per question"):
        relevance(["a", "b"], ["x"])

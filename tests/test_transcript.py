"""Plain `Name: line` transcripts to dialogues.jsonl conversations."""

from __future__ import annotations

import pytest

from neeko_app.characters.transcript import is_character_label, parse_transcript
from neeko_app.training.data import DialogueError, parse_conversation

TRANSCRIPT = """\
Socrates: Come in, sit down.
You: What is courage?
Socrates: Tell me first what you think it is.
*He leans forward.* Take your time.
Laches: Standing firm in battle.
Meno: Or knowing what to fear.
Socrates: Two answers! Let us test both.
You: Thank you.

<START>
User: Are you afraid of death?
SOCRATES: Why fear what I do not know?
"""


def turns(conversation: dict) -> list[tuple[str, str]]:
    return [(turn["role"], turn["text"]) for turn in conversation["turns"]]


def test_a_transcript_becomes_conversations_from_user_to_character():
    first, second = parse_transcript(TRANSCRIPT, "Socrates")
    assert turns(first) == [
        ("user", "What is courage?"),
        ("character", "Tell me first what you think it is.\n*He leans forward.* Take your time."),
        ("user", "Standing firm in battle.\nOr knowing what to fear."),
        ("character", "Two answers! Let us test both."),
    ]  # the greeting before the first question and the unanswered last line are dropped
    assert turns(second) == [("user", "Are you afraid of death?"),
                             ("character", "Why fear what I do not know?")]
    assert [c["id"] for c in (first, second)] == ["transcript-0001", "transcript-0002"]
    for number, conversation in enumerate((first, second)):
        parse_conversation(conversation, f"conversation {number}")  # valid for training


@pytest.mark.parametrize("label", ["Isaac Newton", "newton", "ISAAC", "{{char}}", "<BOT>",
                                   " Isaac   Newton "])
def test_the_character_is_named_by_its_name_a_word_of_it_or_a_macro(label):
    assert is_character_label(label, "Isaac Newton")


@pytest.mark.parametrize("label", ["You", "User", "Halley", "Isaac Newtonian", "I"])
def test_other_labels_are_the_user_side(label):
    assert not is_character_label(label, "Isaac Newton")


def test_long_conversations_are_cut_into_windows_of_whole_exchanges():
    text = "\n".join(f"You: question {i}\nAda: answer {i}" for i in range(5))
    windows = parse_transcript(text, "Ada", max_exchanges=2)
    assert [len(w["turns"]) for w in windows] == [4, 4, 2]
    assert turns(windows[2]) == [("user", "question 4"), ("character", "answer 4")]


def test_separators_and_continuations():
    text = ("Ada: hello\n---\nYou: one\nAnd then he told me this: nothing at all\n"
            "Ada: two\n***\nYou: three\nAda:\n  four\n")
    assert [turns(c) for c in parse_transcript(text, "Ada")] == [
        [("user", "one\nAnd then he told me this: nothing at all"), ("character", "two")],
        [("user", "three"), ("character", "four")],
    ]


@pytest.mark.parametrize("text", ["", "Just prose without any labels.",
                                  "You: hello?\nYou: anyone?", "Ada: I talk alone."])
def test_no_exchange_is_a_clear_error(text):
    with pytest.raises(DialogueError, match="label the lines 'You: ...' and 'Ada: ...'"):
        parse_transcript(text, "Ada")

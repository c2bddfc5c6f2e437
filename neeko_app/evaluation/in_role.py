"""The in-role test of a reply: identified as its character, in the first person, and not
reciting the card (reciting wins the identification test alone but is not role-play)."""

from __future__ import annotations

from neeko_app.characters.card import Character
from neeko_app.evaluation.overlap import COPY_WORDS, longest_shared_run
from neeko_app.evaluation.systems import profile_prompt_header


def copied_card_words(reply: str, character: Character) -> int:
    """The longest run of words `reply` shares with `character`'s card."""
    return longest_shared_run(reply, profile_prompt_header(character))


def in_role(character: str, identified_as: str | None, first_person: bool,
            copied_card_words: int) -> bool:
    """Whether a reply of `character` counts as played in role."""
    return identified_as == character and first_person and copied_card_words < COPY_WORDS

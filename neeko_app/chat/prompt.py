"""Prompt format shared by training and chat (Gemma-style turn markers).

    <bos><start_of_turn>user
    {header}

    {user text}<end_of_turn>
    <start_of_turn>model
    {character text}<end_of_turn>
    ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from neeko_app.characters.card import Character
from neeko_app.chat.persona import Persona
from neeko_app.chat.token_bounds import too_long

BOS, TURN_START, TURN_END = "<bos>", "<start_of_turn>", "<end_of_turn>"
SPEAKER = {"user": "user", "character": "model"}


@dataclass(frozen=True)
class Turn:
    """One line of a conversation; `speaker` names the character (slug) who said it."""

    role: Literal["user", "character"]
    text: str
    speaker: str | None = None


def character_header(character: Character, persona: Persona | None = None) -> str:
    """The short instruction that opens every conversation with `character`; with the
    user's `persona`, its macros are filled and a line about the user follows.

    Kept short on purpose: training pays for it in every example (a long header was half
    the tokens), and the character's block carries the rest of who they are.
    """
    if persona is None:
        return f"You are {character.name}: {character.description}"
    header = f"You are {character.name}: {persona.fill(character.description, character.name)}"
    note = persona.prompt_note()
    return f"{header}\n{note}" if note else header


def render_turn(turn: Turn) -> str:
    return f"{TURN_START}{SPEAKER[turn.role]}\n{turn.text.strip()}{TURN_END}\n"


def render_prompt(header: str, turns: Sequence[Turn]) -> str:
    """The conversation so far, ending where the character's next reply begins."""
    if not turns or turns[-1].role != "user":
        raise ValueError("a prompt must end with a user turn")
    first = Turn("user", f"{header}\n\n{turns[0].text.strip()}")
    body = "".join(render_turn(t) for t in [first, *turns[1:]])
    return f"{BOS}{body}{TURN_START}{SPEAKER['character']}\n"


def fit_history(turns: list[Turn], count_tokens, budget: int, header: str,
                chars_per_token: int | None = None) -> list[Turn]:
    """Drop the oldest exchanges until the rendered prompt fits `budget` tokens.

    The last user turn is always kept; if even that alone is too long, ValueError. The cut
    is found by bisection (fewer turns never take more tokens): a history of thousands of
    exchanges costs a dozen token counts, not one per exchange dropped. With
    `chars_per_token` (see `token_bounds`), a prompt too long to fit by its length alone is
    not tokenized at all.
    """
    starts = _cut_points(turns)

    def fits(start: int) -> bool:
        text = render_prompt(header, turns[start:])
        return not too_long(text, budget, chars_per_token) and count_tokens(text) <= budget

    if fits(starts[0]):
        return list(turns)
    low, high = 1, len(starts) - 1
    if not fits(starts[high]):
        raise ValueError(f"the message is too long for the model's context ({budget} tokens)")
    while low < high:
        middle = (low + high) // 2
        if fits(starts[middle]):
            high = middle
        else:
            low = middle + 1
    return list(turns[starts[low]:])


def _cut_points(turns: Sequence[Turn]) -> list[int]:
    """Where the kept history may start, in the order the oldest exchanges are dropped: from
    the whole history to the last turn alone."""
    starts = [0]
    while len(turns) - starts[-1] > 1:
        start = starts[-1]
        whole_exchange = turns[start].role == "user" and len(turns) - start > 2
        starts.append(start + (2 if whole_exchange else 1))
    return starts

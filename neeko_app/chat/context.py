"""Prompt assembly: header + retrieved memory + the recent history that fits the budget.

Pure functions (no model, no store): the caller passes a token counter and a `retrieve`
callback, so every rule here is unit-testable with fakes.

Retrieved context goes right before the user's last message. In a one-message prompt that
is just after the character's header, the place where training puts the notes; in a long
chat it keeps a recalled fact next to the question instead of thousands of tokens above it
(recall of the user's own facts after the history overflowed went from 0.63 to 0.86 with
this move, reports/memory-recall-2026-12-05/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import zip_longest

from neeko_app.chat.prompt import Turn, fit_history, render_prompt
from neeko_app.memory import Exchange, KnowledgeChunk

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class RetrievedContext:
    """What memory gave for one reply: the character's knowledge and earlier exchanges."""

    knowledge: tuple[KnowledgeChunk, ...] = ()
    recalled: tuple[Exchange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.knowledge or self.recalled)


@dataclass(frozen=True)
class AssembledPrompt:
    """The prompt text, the history turns it holds, and the retrieved context it used;
    `without_notes` is the same prompt without that context ("" when there is none)."""

    text: str
    history: tuple[Turn, ...]
    context: RetrievedContext
    first_turn: int  # number of the first user turn kept in the history (1-based)
    without_notes: str = ""


def user_turns(turns: Sequence[Turn]) -> int:
    """How many user turns `turns` holds (the number of the exchange in progress)."""
    return sum(turn.role == "user" for turn in turns)


def memory_header(header: str, name: str, context: RetrievedContext) -> str:
    """`header` followed by the retrieved knowledge and the recalled exchanges."""
    notes = memory_notes(name, context)
    return f"{header}\n\n{notes}" if notes else header


def memory_notes(name: str, context: RetrievedContext) -> str:
    """The retrieved knowledge and the recalled exchanges as the prompt shows them ("" for
    none)."""
    parts = []
    if context.knowledge:
        notes = "\n".join(f"- {chunk.text}" for chunk in context.knowledge)
        parts.append(f"What you know:\n{notes}")
    if context.recalled:
        earlier = "\n".join(f"User: {e.user_text}\n{name}: {e.reply_text}"
                            for e in sorted(context.recalled, key=lambda e: e.turn))
        parts.append(f"Earlier in this conversation:\n{earlier}")
    return "\n\n".join(parts)


def render_with_memory(header: str, name: str, context: RetrievedContext,
                       history: Sequence[Turn]) -> str:
    """The prompt for `history` with the memory notes put just before its last (user)
    message: for a single message this is exactly `memory_header` + the message."""
    notes = memory_notes(name, context)
    if not notes:
        return render_prompt(header, history)
    *earlier, last = history
    return render_prompt(header, [*earlier, Turn("user", f"{notes}\n\n{last.text.strip()}")])


def quotable_ids(tokenizer, name: str, context: RetrievedContext) -> tuple[int, ...]:
    """The token ids of the memory notes, which a reply may copy at any length (the prompt
    echo guard spares them)."""
    notes = memory_notes(name, context)
    return tuple(tokenizer(notes, add_special_tokens=False).input_ids) if notes else ()


def assemble_prompt(
    header: str,
    name: str,
    turns: Sequence[Turn],
    retrieve: Callable[[int], RetrievedContext],
    count_tokens: CountTokens,
    budget: int,
    memory_tokens: int,
    chars_per_token: int | None = None,
) -> AssembledPrompt:
    """Build the prompt for the character's next reply in at most `budget` tokens.

    The recent history is fitted into `budget - memory_tokens` (oldest exchanges dropped
    first; `chars_per_token` as `fit_history` takes it); `retrieve(first_turn)` is then asked
    for memory from before the first kept user turn, and the lowest-ranked retrieved items are
    dropped until the prompt fits `budget`. ValueError if even the last message alone does
    not fit.
    """
    history = fit_history(list(turns), count_tokens, budget - memory_tokens, header,
                          chars_per_token)
    first_turn = user_turns(turns) - user_turns(history) + 1
    retrieved = retrieve(first_turn)
    ranked = [item for pair in zip_longest(retrieved.recalled, retrieved.knowledge)
              for item in pair if item is not None]
    while True:
        context = RetrievedContext(
            tuple(item for item in ranked if isinstance(item, KnowledgeChunk)),
            tuple(item for item in ranked if isinstance(item, Exchange)),
        )
        text = render_with_memory(header, name, context, history)
        if not ranked or count_tokens(text) <= budget:
            without_notes = render_prompt(header, history) if context else ""
            return AssembledPrompt(text, tuple(history), context, first_turn, without_notes)
        ranked.pop()

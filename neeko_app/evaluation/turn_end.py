"""Does a block know where its character's turn ends? A block that does not runs every chat
reply to the length cap."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neeko_app.characters.card import Character
from neeko_app.chat.prompt import TURN_END
from neeko_app.runtime import Runtime
from neeko_app.training.data import Conversation, character_examples


def turn_end_chances(runtime: Runtime, character: Character,
                     conversations: Sequence[Conversation], max_tokens: int = 384) -> list[float]:
    """The probability `character`'s gate gives the end-of-turn token right after each of
    the character's written replies in `conversations` (short training header)."""
    tokenizer = runtime.base.tokenizer
    turn_end = tokenizer.convert_tokens_to_ids(TURN_END)
    gate = runtime.gate_for(character)
    chances: list[float] = []
    for example in character_examples(character, conversations, tokenizer, max_tokens):
        ends = [t for t, label in enumerate(example.labels) if label == turn_end]
        with torch.no_grad():  # only the logits that predict each turn end
            logits = runtime.model(torch.tensor([example.input_ids]), gate=gate,
                                   logits_to_keep=torch.tensor(ends) - 1).logits[0]
        chances += logits.float().softmax(-1)[:, turn_end].tolist()
    return chances

"""Keep a reply in the writing systems its conversation uses.

Gemma's vocabulary covers dozens of scripts, and a small model with a character block
sometimes slips one of their sub-words into an English reply ("If youмента", "ライ"): no
training dialogue has them. `ForeignScriptBan` forbids every token holding a letter of a
writing system the prompt does not use, so a user who writes in Greek or Japanese gets
those scripts back. Tokens without letters (punctuation, digits, emoji, a lone byte of a
longer character) are always allowed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import cache, lru_cache

import torch
from transformers.generation.logits_process import LogitsProcessor

# Unicode names whose first word is not a writing system: marks and modifiers that go with
# letters of any script, and the variation selectors that pick an emoji's look.
NEUTRAL = frozenset({"COMBINING", "MODIFIER", "VARIATION"})


def writing_systems(text: str) -> frozenset[str]:
    """The writing systems of the letters and marks in `text`, by the first word of their
    Unicode names: LATIN, CYRILLIC, CJK, HIRAGANA, ..."""
    found = set()
    for char in text:
        if unicodedata.category(char)[0] in "LM":
            found.add(unicodedata.name(char, "UNNAMED").split()[0])
    return frozenset(found - NEUTRAL)


@cache
def systems_of_tokens(tokenizer) -> dict[str, torch.Tensor]:
    """For each writing system of `tokenizer`'s vocabulary, which tokens hold one of its
    letters ([vocab] bool). Decoding the vocabulary takes ~2 s for Gemma's 262k tokens,
    once per tokenizer: call it at start-up so the first reply does not wait for it."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    holders: dict[str, list[int]] = {}
    for token, text in enumerate(texts):
        for system in writing_systems(text):
            holders.setdefault(system, []).append(token)
    masks = {}
    for system, tokens in holders.items():
        masks[system] = torch.zeros(len(texts), dtype=torch.bool)
        masks[system][tokens] = True
    return masks


@lru_cache(maxsize=32)  # one per mix of scripts in use: a few, but users choose them
def _foreign_mask(tokenizer, allowed: frozenset[str]) -> torch.Tensor:
    masks = systems_of_tokens(tokenizer)
    foreign = torch.zeros(len(tokenizer), dtype=torch.bool)
    for system, mask in masks.items():
        if system not in allowed:
            foreign |= mask
    return foreign


class ForeignScriptBan(LogitsProcessor):
    """Forbid the tokens that hold a letter of a writing system the prompt does not use."""

    def __init__(self, tokenizer, prompt_ids: Sequence[int]) -> None:
        allowed = writing_systems(tokenizer.decode(list(prompt_ids), skip_special_tokens=True))
        self.foreign = _foreign_mask(tokenizer, allowed)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        width = scores.shape[-1]  # a model's head may be padded past the vocabulary, or short
        if self.foreign.numel() != width:  # fitted once, at the first step
            fitted = self.foreign[:width]
            self.foreign = torch.cat([fitted, fitted.new_zeros(width - fitted.numel())])
        return scores.masked_fill(self.foreign.to(scores.device), -float("inf"))

"""Favour the names and numbers of the memory notes while a reply is written.

A 270M model with the right note in its prompt often answers beside it: "Dolabella" where
the note says Gabinius, "Wetzlar" for Wölfl. `NoteCopyBias` adds a fixed amount to the
logits of the tokens that begin a name or number of the notes, and to those that continue
one once the reply has begun it, so copying the note's answer gets likelier without being
forced. Words that only open a sentence ("The", "He") do not count as names, and a name
the prompt already holds outside the notes (the question's "Baron Wetzlar", the
character's own name) is not favoured: the answer is what the notes add.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from transformers.generation.logits_process import LogitsProcessor

SPACE_MARKS = ("\u2581", "\u0120")  # word-start marks: SentencePiece's, byte-level BPE's
SENTENCE_ENDS = (".", "!", "?", ":", "\n", "-")


def name_runs(pieces: Sequence[str]) -> list[list[int]]:
    """Positions of the tokens of each run of names and numbers in `pieces` (tokenizer
    pieces): consecutive words that start with a capital not opening a sentence, or with a
    digit, e.g. "Joseph Wölfl" or "49 BC"."""
    runs: list[list[int]] = []
    current: list[int] = []
    opens_sentence = True
    texts = list(pieces)
    for mark in SPACE_MARKS:
        texts = [text.replace(mark, " ") for text in texts]
    for k, text in enumerate(texts):
        starts_word = k == 0 or text.startswith(" ") or not texts[k - 1][-1:].isalnum()
        word = text.strip()
        if starts_word:
            is_name = bool(word) and (word[0].isdigit()
                                      or (word[0].isupper() and not opens_sentence))
            if is_name:
                current.append(k)
            elif word or k + 1 >= len(pieces) or not pieces[k + 1][:1].isdigit():
                if current:
                    runs.append(current)
                current = []
        elif current and word.isalnum():
            current.append(k)  # the rest of a word ("W", "öl", "fl"), or a digit of a number
        if word:
            opens_sentence = word.endswith(SENTENCE_ENDS)
    if current:
        runs.append(current)
    return runs


def said_elsewhere(run_text: str, prompt_text: str, notes_text: str) -> bool:
    """Whether every word of a notes name run occurs more often in the prompt than in the
    notes, i.e. the prompt already holds it outside them (the question, the header)."""
    words = re.findall(r"\w+", run_text)
    return bool(words) and all(
        len(re.findall(rf"\b{re.escape(word)}\b", prompt_text))
        > len(re.findall(rf"\b{re.escape(word)}\b", notes_text)) for word in words)


class NoteCopyBias(LogitsProcessor):
    """Add `bias` to the logits of the tokens that begin a name or number of the notes
    `notes` (token ids) that the rest of the prompt `prompt_ids` does not already hold, and
    to those that follow the reply's last token inside one."""

    def __init__(self, tokenizer, notes: Sequence[int], prompt_ids: Sequence[int],
                 bias: float) -> None:
        notes = list(notes)
        pieces = tokenizer.convert_ids_to_tokens(notes)
        prompt_text, notes_text = tokenizer.decode(list(prompt_ids)), tokenizer.decode(notes)
        runs = [run for run in name_runs(pieces) if not said_elsewhere(
            tokenizer.convert_tokens_to_string([pieces[k] for k in run]), prompt_text,
            notes_text)]
        self.prompt_length = len(prompt_ids)
        self.bias = bias
        self.starts = sorted({notes[run[0]] for run in runs})
        follows: dict[int, set[int]] = {}
        for run in runs:
            for before, after in zip(run, run[1:], strict=False):
                follows.setdefault(notes[before], set()).add(notes[after])
        self.follows = {token: sorted(after) for token, after in follows.items()}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.clone()
        for row, ids in enumerate(input_ids):
            favoured = list(self.starts)
            if ids.numel() > self.prompt_length:
                favoured += self.follows.get(int(ids[-1]), [])
            if favoured:
                scores[row, favoured] += self.bias
        return scores

"""Decoding settings of a character's reply, and the tokens that end its turn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

from neeko_app.chat.note_copy import NoteCopyBias
from neeko_app.chat.opening import OpeningTemperature
from neeko_app.chat.prompt import TURN_END
from neeko_app.chat.writing_systems import ForeignScriptBan


class ReplyOnly(LogitsProcessor):
    """Run `processor` on the reply's own tokens, not on the prompt before them.

    Repetition control is for the reply: penalising the prompt's tokens would push the
    character away from the user's words, its own name and the memory notes it should use
    (a no-repeat n-gram over the prompt forbids copying any four words of a note)."""

    def __init__(self, processor: LogitsProcessor, prompt_length: int) -> None:
        self.processor = processor
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return self.processor(input_ids[:, self.prompt_length:], scores)


class NoPromptEcho(LogitsProcessor):
    """Forbid the reply to repeat any run of `size` consecutive prompt tokens.

    With the penalties on the reply alone, a small model may copy whole lines of its
    prompt (a card-prompted base model recites the card). Shorter runs stay allowed, and so
    is any run of the `quotable` tokens (the memory notes): a note's name and date may be
    copied whole ("the Rubicon, in 49 BC" is more than 8 tokens, digits one token each)."""

    def __init__(self, prompt_length: int, size: int, quotable: Sequence[int] = ()) -> None:
        if size < 2:
            raise ValueError(f"an echo is at least 2 tokens long, got {size}")
        self.prompt_length = prompt_length
        self.size = size
        self.quotable = _next_tokens(list(quotable), size - 1)
        self._next_tokens: list[dict[tuple[int, ...], set[int]]] | None = None  # per row

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        lead = self.size - 1
        if self._next_tokens is None:  # the prompt does not change: index it once
            self._next_tokens = [_without(_next_tokens(row[:self.prompt_length].tolist(), lead),
                                          self.quotable)
                                 for row in input_ids]
        if input_ids.shape[1] - self.prompt_length < lead:
            return scores
        banned = [(row, token) for row, tail in enumerate(input_ids[:, -lead:].tolist())
                  for token in self._next_tokens[row].get(tuple(tail), ())]
        if not banned:
            return scores
        scores = scores.clone()
        rows, tokens = zip(*banned, strict=True)
        scores[list(rows), list(tokens)] = -float("inf")
        return scores


class CountPenalties(LogitsProcessor):
    """OpenAI's frequency and presence penalties: a token used `count` times in `input_ids`
    loses `count * frequency + presence` (presence only once it is used at all) from its
    logit. Negative values favour repeats instead."""

    def __init__(self, frequency: float, presence: float) -> None:
        self.frequency = frequency
        self.presence = presence

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, input_ids, torch.ones(input_ids.shape, dtype=scores.dtype))
        return scores - counts * self.frequency - (counts > 0) * self.presence


def _next_tokens(ids: list[int], lead: int) -> dict[tuple[int, ...], set[int]]:
    """For every run of `lead` tokens in `ids`, the tokens that follow it there."""
    table: dict[tuple[int, ...], set[int]] = {}
    for end in range(lead, len(ids)):
        table.setdefault(tuple(ids[end - lead:end]), set()).add(ids[end])
    return table


def _without(table: dict[tuple[int, ...], set[int]],
             allowed: dict[tuple[int, ...], set[int]]) -> dict[tuple[int, ...], set[int]]:
    """`table` less the continuations `allowed` holds."""
    return {lead: rest for lead, tokens in table.items()
            if (rest := tokens - allowed.get(lead, set()))}


@dataclass(frozen=True)
class DecodingSettings:
    """Sampling defaults that suit role-play replies on a small model."""

    max_new_tokens: int = 160
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.15  # on the reply's own tokens (`ReplyOnly`)
    no_repeat_ngram_size: int = 4  # within the reply
    no_prompt_echo: int = 8  # no run of this many prompt tokens is repeated (0: allowed)
    script_guard: bool = True  # no letters of a writing system the prompt does not use
    seed: int | None = None
    frequency_penalty: float = 0.0  # OpenAI's, on the reply's own tokens (`CountPenalties`)
    presence_penalty: float = 0.0  # OpenAI's, likewise
    top_k: int = 0  # sample among this many best tokens only (0: no limit)
    stop_strings: tuple[str, ...] = ()  # the reply ends before the first of these
    copy_bias: float = 2.0  # added to the memory notes' names and numbers (`NoteCopyBias`)
    # the first sentence, where the answer goes, is sampled at most this hot
    # (`OpeningTemperature`; 0: at `temperature` throughout)
    opening_temperature: float = 0.3
    # the reply ends after this many sentences (`sentences.cut_after_sentences`; 0: no
    # limit). One: the blocks answer in their first sentence and invent in the ones after
    # (reports/reply-length-2026-12-05); Continue asks for the next.
    max_sentences: int = 1
    # the logits with the memory notes weighed against those without them, so that a
    # reply names what the notes say (`contrast`; 0: off; a hidden second row per reply)
    note_contrast: float = 0.5

    def penalties(self, prompt_length: int, quotable: Sequence[int] = ()) -> LogitsProcessorList:
        """Repetition penalty, frequency and presence penalties and no-repeat n-grams over
        the tokens after `prompt_length`, and no echo of the prompt's longer runs (except
        those of `quotable`). The penalties stack: the repetition penalty scales a used
        token's logit, the other two then subtract from it."""
        processors = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            processors.append(ReplyOnly(RepetitionPenaltyLogitsProcessor(self.repetition_penalty),
                                        prompt_length))
        if self.frequency_penalty or self.presence_penalty:
            processors.append(ReplyOnly(CountPenalties(self.frequency_penalty,
                                                       self.presence_penalty), prompt_length))
        if self.no_repeat_ngram_size > 0:
            processors.append(ReplyOnly(NoRepeatNGramLogitsProcessor(self.no_repeat_ngram_size),
                                        prompt_length))
        if self.no_prompt_echo > 0:
            processors.append(NoPromptEcho(prompt_length, self.no_prompt_echo, quotable))
        return processors

    def logits_processors(self, prompt_ids: Sequence[int], tokenizer,
                          quotable: Sequence[int] = ()) -> LogitsProcessorList:
        """The penalties, the script guard, top-k and the temperature, for the scheduler's
        decoding loop; it samples the top-p nucleus itself (`decoding.nucleus`), which is the
        same rule as transformers' top-p warper without sorting the whole vocabulary."""
        processors = self.penalties(len(prompt_ids), quotable)
        if self.script_guard:
            processors.append(ForeignScriptBan(tokenizer, prompt_ids))
        if self.copy_bias and quotable:
            processors.append(NoteCopyBias(tokenizer, quotable, prompt_ids, self.copy_bias))
        if self.top_k > 0:
            processors.append(TopKLogitsWarper(self.top_k))
        if 0 < self.opening_temperature < self.temperature:
            processors.append(OpeningTemperature(self.opening_temperature, self.temperature,
                                                 len(prompt_ids), tokenizer))
        elif self.temperature > 0:
            processors.append(TemperatureLogitsWarper(self.temperature))
        return processors


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-turn and end-of-text ids: generation stops at either."""
    ids = [tokenizer.convert_tokens_to_ids(TURN_END), tokenizer.eos_token_id]
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]

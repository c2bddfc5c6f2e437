"""Generate a character's reply, streamed token by token, stopping at the end of its turn."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import TextIteratorStreamer
from transformers.generation.logits_process import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
)

from neeko_app.chat.prompt import TURN_END
from neeko_app.moelora import Gate, NeekoModel


@dataclass(frozen=True)
class DecodingSettings:
    """Sampling defaults that suit role-play replies on a small model."""

    max_new_tokens: int = 160
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.15
    no_repeat_ngram_size: int = 4
    seed: int | None = None

    def generate_kwargs(self) -> dict:
        sampling = self.temperature > 0
        kwargs = dict(
            max_new_tokens=self.max_new_tokens,
            do_sample=sampling,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
        )
        if sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs

    def logits_processors(self) -> LogitsProcessorList:
        """The penalties and temperature of `generate_kwargs`, for a hand-written decoding
        loop; it samples the top-p nucleus itself (`decoding.nucleus`), which is the same rule
        as transformers' top-p warper without sorting the whole vocabulary."""
        processors = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.no_repeat_ngram_size > 0:
            processors.append(NoRepeatNGramLogitsProcessor(self.no_repeat_ngram_size))
        if self.temperature > 0:
            processors.append(TemperatureLogitsWarper(self.temperature))
        return processors


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-turn and end-of-text ids: generation stops at either."""
    ids = [tokenizer.convert_tokens_to_ids(TURN_END), tokenizer.eos_token_id]
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]


def stream_reply(
    model: NeekoModel,
    tokenizer,
    prompt: str,
    gate: Gate | None,
    settings: DecodingSettings = DecodingSettings(),
) -> Iterator[str]:
    """Yield the reply's text piece by piece as it is generated (prompt not echoed)."""
    device = model.keys.device
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            model.generate(
                encoded["input_ids"],
                gate=gate,
                attention_mask=encoded["attention_mask"],
                streamer=streamer,
                eos_token_id=stop_token_ids(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                **settings.generate_kwargs(),
            )
        except BaseException as err:  # surfaced in the caller's thread below
            errors.append(err)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if errors:
        raise errors[0]


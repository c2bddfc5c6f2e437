"""The reference the batching scheduler is checked against: transformers' own `generate`
for one request, with the same decoding settings, streamed as text."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch
from transformers import TextIteratorStreamer

from neeko_app.chat.generation import DecodingSettings, stop_token_ids
from neeko_app.moelora import Gate, NeekoModel


def generate_kwargs(settings: DecodingSettings, prompt_length: int) -> dict:
    """`settings` as arguments of `generate`: the penalties as our reply-only processors
    (transformers' own `repetition_penalty=` would also penalise the prompt)."""
    sampling = settings.temperature > 0
    kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=sampling,
                  logits_processor=settings.penalties(prompt_length))
    if sampling:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    return kwargs


def stream_reply(model: NeekoModel, tokenizer, prompt: str, gate: Gate | None,
                 settings: DecodingSettings) -> Iterator[str]:
    """Yield the reply's text piece by piece as `generate` produces it (prompt not echoed)."""
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    encoded = encoded.to(model.keys.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            model.generate(encoded["input_ids"], gate=gate,
                           attention_mask=encoded["attention_mask"], streamer=streamer,
                           eos_token_id=stop_token_ids(tokenizer),
                           pad_token_id=tokenizer.pad_token_id,
                           **generate_kwargs(settings, encoded["input_ids"].shape[1]))
        except BaseException as err:  # surfaced in the caller's thread below
            errors.append(err)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if errors:
        raise errors[0]

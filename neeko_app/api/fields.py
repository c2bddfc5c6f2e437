"""What the API does with a request's fields: the decoding settings they ask for, and a 400
for those it cannot honour. (Fields accepted without effect are listed in the README.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from neeko_app.api.errors import ApiError
from neeko_app.api.schemas import BaseRequest
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings

MAX_STOP_STRINGS = 4  # as OpenAI's API
TOOLS = "tool and function calls are not supported: the characters answer in text only"


def _set(value: Any) -> bool:
    return bool(value)


def _given(value: Any) -> bool:
    return value is not None


def _not_text(value: Any) -> bool:
    return value is not None and value.get("type") != "text"


def _asks_a_tool(value: Any) -> bool:
    return value not in (None, "none", "auto")


def _not_only_text(value: Any) -> bool:
    return value is not None and not set(value) <= {"text"}


def _not_one(value: Any) -> bool:
    return value not in (None, 1)


# field: (does its value ask for something?, why it cannot be given)
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "logprobs": (_set, "log-probabilities are not returned by this server"),
    "top_logprobs": (_set, "log-probabilities are not returned by this server"),
    "logit_bias": (_set, "logit_bias is not supported (token ids differ between "
                         "tokenizers: use stop strings or the penalties instead)"),
    "tools": (_set, TOOLS),
    "functions": (_set, TOOLS),
    "tool_choice": (_asks_a_tool, TOOLS),
    "function_call": (_asks_a_tool, TOOLS),
    "response_format": (_not_text, "only text replies are supported (no JSON mode or schema)"),
    "modalities": (_not_only_text, "only text replies are supported"),
    "audio": (_given, "only text replies are supported"),
    "web_search_options": (_given, "the characters cannot search the web"),
    "verbosity": (_set, "verbosity is not supported: use max_tokens to bound a reply"),
    "best_of": (_not_one, "only best_of=1 is supported"),
    "echo": (_set, "echo is not supported: the reply comes without its prompt"),
    "suffix": (_set, "suffix is not supported: text is continued at the end only"),
}


def refuse_unsupported(request: BaseRequest) -> None:
    """ApiError (400) for the first field that asks for what this server cannot give."""
    if request.n not in (None, 1):
        raise ApiError(400, "only n=1 is supported", "invalid_n")
    for field, (asks, why) in REFUSED.items():
        value = getattr(request, field, None)
        if asks(value):
            raise ApiError(400, f"{field}={_short(value)} cannot be honoured: {why}",
                           "unsupported_parameter")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    """The request's stop strings (a string or a list of up to four, none empty)."""
    strings = [stop] if isinstance(stop, str) else list(stop or ())
    if len(strings) > MAX_STOP_STRINGS:
        raise ApiError(400, f"stop takes at most {MAX_STOP_STRINGS} strings, got "
                            f"{len(strings)}", "invalid_stop")
    if not all(strings):
        raise ApiError(400, "a stop string must not be empty", "invalid_stop")
    return tuple(dict.fromkeys(strings))


def decoding(engine: ChatEngine, request: BaseRequest) -> DecodingSettings:
    """The engine's decoding settings with the request's choices; `max_tokens` is refused
    when absurd (< 1 or beyond the context) and clamped to the engine's reply limit."""
    asked = (request.max_completion_tokens if request.max_completion_tokens is not None
             else request.max_tokens)
    if asked is not None and not 1 <= asked <= engine.context_tokens:
        raise ApiError(400, f"max_tokens must be between 1 and {engine.context_tokens} "
                            f"(the context size), got {asked}", "invalid_max_tokens")
    overrides = {
        "max_new_tokens": None if asked is None else min(asked, engine.max_reply_tokens),
        "temperature": request.temperature, "top_p": request.top_p,
        "top_k": None if request.top_k is None else max(request.top_k, 0),
        "seed": request.seed, "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
        "repetition_penalty": request.repetition_penalty,
        "no_repeat_ngram_size": request.no_repeat_ngram_size,
        "copy_bias": request.copy_bias, "opening_temperature": request.opening_temperature,
        "max_sentences": request.max_sentences, "note_contrast": request.note_contrast,
        "stop_strings": stop_strings(request.stop) or None,
    }
    return replace(engine.decoding, **{k: v for k, v in overrides.items() if v is not None})

"""The OpenAI chat-completions wire format: requests in, responses and stream chunks out."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from neeko_app.api.errors import ApiError
from neeko_app.chat.prompt import Turn
from neeko_app.chat.reply import Reply
from neeko_app.chat.scheduler import TokenStream

INSTRUCTION_ROLES = ("system", "developer")
# a 64-bit seed (what torch takes); a larger one would fail the batch it lands in
Seed = Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)]


class ContentPart(BaseModel):
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None  # who speaks: shown to the model as "name: text"

    def text(self, number: int) -> str:
        """The message's text (a multi-part message's text parts, joined), after its
        speaker's name if it has one; ApiError for a part that is not text (message
        `number`)."""
        if isinstance(self.content, list):
            other = [part.type for part in self.content if part.type != "text"]
            if other:
                raise ApiError(400, f"message {number} has a {other[0]!r} part: the characters "
                                    "read text only", "unsupported_content")
            text = "\n".join(part.text or "" for part in self.content)
        else:
            text = self.content or ""
        return f"{self.name}: {text}" if self.name and text.strip() else text


class StreamOptions(BaseModel):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # ignored: the chunks carry no padding to hide


class BaseRequest(BaseModel):
    """What both endpoints take: the character, streaming, the reply's length and sampling.
    A field this server does not know is refused (as OpenAI refuses one), so that nothing
    a client asks for is silently left out."""

    model_config = ConfigDict(extra="forbid")

    model: str
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)  # 0: the likeliest token only
    top_k: StrictInt | None = Field(default=None, ge=-1)  # vLLM's; -1 or 0: no limit
    n: StrictInt | None = None  # only 1 (or none) is served
    seed: Seed | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)  # vLLM's
    no_repeat_ngram_size: StrictInt | None = Field(default=None, ge=0, le=64)  # ours
    copy_bias: float | None = Field(default=None, ge=0, le=10)  # ours: `NoteCopyBias`
    note_contrast: float | None = Field(default=None, ge=0, le=5)  # ours: `chat.contrast`
    opening_temperature: float | None = Field(default=None, ge=0, le=2)  # ours
    max_sentences: StrictInt | None = Field(default=None, ge=0, le=1000)  # ours; 0: no limit
    logit_bias: dict[str, float] | None = None  # refused unless empty
    user: str | None = None


class ChatCompletionRequest(BaseRequest):
    """`POST /v1/chat/completions`; `fields.refuse_unsupported` refuses what it cannot
    honour, and the README lists the fields accepted without effect."""

    messages: list[ChatMessage] = Field(min_length=1)
    # refused when they ask for something (see `fields.REFUSED`)
    logprobs: bool | None = None
    top_logprobs: StrictInt | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    functions: list[dict] | None = None
    function_call: str | dict | None = None
    response_format: dict | None = None
    modalities: list[str] | None = None
    audio: dict | None = None
    web_search_options: dict | None = None
    verbosity: str | None = None
    # accepted without effect (the README says why)
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    metadata: dict | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    prediction: dict | None = None


class CompletionRequest(BaseRequest):
    """`POST /v1/completions`: a raw prompt (text or token ids) continued by a character's
    block, the way vLLM serves a LoRA adapter (the app's remote backend sends these)."""

    prompt: str | list[int] = Field(min_length=1)
    stop_token_ids: list[int] | None = None  # vLLM's
    # refused when they ask for something (see `fields.REFUSED`)
    logprobs: StrictInt | None = None
    echo: bool | None = None
    best_of: StrictInt | None = None
    suffix: str | None = None


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """(instructions from system messages, turns) — consecutive messages of one side are
    joined; assistant messages before the first user message (a greeting) are left out. The
    turns end with the user's message, or with a reply to continue after it."""
    instructions, turns = [], []
    for number, message in enumerate(messages, start=1):
        text = message.text(number).strip()
        if message.role in INSTRUCTION_ROLES:
            instructions.append(text)
            continue
        if not text:
            raise ApiError(400, f"message {number} ({message.role}) has no text",
                           code="empty_message")
        role = "user" if message.role == "user" else "character"
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, f"{turns[-1].text}\n\n{text}")
        elif turns or role == "user":
            turns.append(Turn(role, text))
    if not turns:
        raise ApiError(400, "the conversation needs a message from the user",
                       code="no_user_message")
    return "\n\n".join(t for t in instructions if t), turns


def finish_reason(reply: Reply | TokenStream) -> str:
    """OpenAI's finish reason: "length" when the length cap cut the text, else "stop"."""
    return "length" if reply.finish_reason == "length" else "stop"


def usage(reply: Reply) -> dict:
    return token_usage(reply.prompt_tokens, reply.completion_tokens)


def token_usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(reply: Reply, completion_id: str, created: int, model: str) -> dict:
    """The whole reply as a `chat.completion` object."""
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "finish_reason": finish_reason(reply)}],
        "usage": usage(reply),
    }


def text_completion(stream: TokenStream, completion_id: str, created: int, model: str,
                    prompt_tokens: int) -> dict:
    """A finished raw completion as a `text_completion` object."""
    return {
        "id": completion_id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": stream.text, "finish_reason": finish_reason(stream),
                     "logprobs": None}],
        "usage": token_usage(prompt_tokens, stream.completion_tokens),
    }


def text_chunk(completion_id: str, created: int, model: str, text: str,
               reason: str | None = None) -> str:
    """One streamed `text_completion` event."""
    return sse({"id": completion_id, "object": "text_completion", "created": created,
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": reason,
                             "logprobs": None}]})


def stream_error(error: Exception) -> str:
    """The event reporting a failure once a stream's status line is sent already."""
    return sse({"error": {"message": f"generation failed ({type(error).__name__})",
                          "type": "server_error", "code": None}})


def sse(payload: dict | str) -> str:
    """One server-sent event: `data: <json>` and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def chunk(completion_id: str, created: int, model: str, delta: dict,
          reason: str | None = None) -> str:
    """One `chat.completion.chunk` event."""
    return sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})

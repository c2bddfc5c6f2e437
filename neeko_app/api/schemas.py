"""The OpenAI chat-completions wire format: requests in, responses and stream chunks out."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt

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

    def text(self) -> str:
        """The message's text (the text parts of a multi-part message, joined)."""
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields of `POST /v1/chat/completions` this server understands (others ignored)."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: StrictInt = 1
    seed: Seed | None = None
    user: str | None = None


class CompletionRequest(BaseModel):
    """`POST /v1/completions`: a raw prompt (text or token ids) continued by a character's
    block, the way vLLM serves a LoRA adapter (the app's remote backend sends these)."""

    model: str
    prompt: str | list[int] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None  # as in chat completions
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: StrictInt = 1
    seed: Seed | None = None
    # vLLM's extra sampling fields
    stop_token_ids: list[int] | None = None
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    no_repeat_ngram_size: int | None = Field(default=None, ge=0, le=64)  # ours; vLLM ignores


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """(instructions from system messages, turns) — consecutive messages of one side are
    joined; assistant messages before the first user message (a greeting) are left out."""
    instructions, turns = [], []
    for number, message in enumerate(messages, start=1):
        text = message.text().strip()
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
    if not turns or turns[-1].role != "user":
        raise ApiError(400, "the last message must come from the user", code="no_user_message")
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

"""OpenAI-compatible HTTP API: each character is a model, every request goes through the
engine's batching scheduler (concurrent requests share forward passes).

    GET  /v1/models             the characters
    GET  /v1/models/{id}        one character
    POST /v1/chat/completions   `model` = character id; `stream` gives server-sent events
    POST /v1/completions        a raw prompt (text or token ids) continued by the character's
                                block, without header or memory: what a model server like
                                vLLM does, so one app can be another's remote backend
    GET  /health                `{"status": "ok", "in_flight": N}`: N replies waiting or being
                                generated (no API key needed; it tells nothing else)

Each request field is honoured, refused with a 400 (`fields.refuse_unsupported`, and any
field not in the schemas), or accepted without effect (the README lists those and why).
Memory is keyed by the `X-Session-Id` header, else the request's `user` field. A chat
completion's `X-Neeko-Recalled-Turns` header lists the earlier turns memory recalled.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Annotated

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi.responses import JSONResponse, StreamingResponse

from neeko_app.api.errors import ApiError, install_error_handlers
from neeko_app.api.fields import decoding, refuse_unsupported
from neeko_app.api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    chunk,
    completion,
    conversation,
    finish_reason,
    sse,
    stream_error,
    text_chunk,
    text_completion,
    usage,
)
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.reply import Reply
from neeko_app.chat.scheduler import TokenStream
from neeko_app.chat.token_bounds import too_long
from neeko_app.cli import server_engine
from neeko_app.config import Settings
from neeko_app.memory.validation import validate_session_id
from neeko_app.serving.limits import RequestLimits
from neeko_app.serving.server import server_config

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(engine: ChatEngine, api_key: str | None = None,
               max_request_bytes: int = Settings.max_request_bytes) -> FastAPI:
    """The FastAPI app serving `engine`; with `api_key`, every call under /v1 needs
    `Authorization: Bearer <api_key>`. Request bodies over `max_request_bytes` are refused
    (413) as soon as the limit passes."""
    app = FastAPI(title="neeko-app", description="Role-play characters as OpenAI models")
    install_error_handlers(app)
    app.add_middleware(RequestLimits, max_bytes=max_request_bytes)
    started = int(time.time())

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "in_flight": engine.scheduler.in_flight()}

    def require_key(authorization: Annotated[str | None, Header()] = None) -> None:
        if api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                           "invalid_api_key")

    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    def model_card(slug: str) -> dict:
        character = engine.runtime.characters[slug]
        model = engine.runtime.model
        mode = ("block" if slug in model.block_names
                else "fusion" if model.num_blocks else "base")
        return {"id": slug, "object": "model", "created": started, "owned_by": "neeko-app",
                "name": character.name, "description": character.description, "mode": mode}

    def known(slug: str) -> str:
        if slug not in engine.runtime.characters:
            engine.runtime.refresh()  # another replica may have added it
        if slug not in engine.runtime.characters:
            raise ApiError(404, f"the model {slug!r} does not exist; GET /v1/models lists the "
                                "characters", "model_not_found")
        return slug

    @router.get("/models")
    def list_models() -> dict:
        engine.runtime.refresh()
        return {"object": "list", "data": [model_card(s) for s in engine.runtime.characters]}

    @router.get("/models/{slug}")
    def get_model(slug: str) -> dict:
        return model_card(known(slug))

    @router.post("/chat/completions")
    def chat_completions(
        request: ChatCompletionRequest,
        x_session_id: Annotated[str | None, Header()] = None,
    ):
        character = known(request.model)
        refuse_unsupported(request)
        instructions, turns = conversation(request.messages)
        # a last message of the assistant's is a reply to go on with (SillyTavern's Continue):
        # the completion holds only the new text
        lead = turns.pop().text if turns[-1].role == "character" else ""
        session_id = _session_id(x_session_id or request.user)
        settings = decoding(engine, request)
        try:
            reply = engine.reply(character, turns, session_id, settings, instructions, lead)
        except ValueError as err:
            raise ApiError(400, str(err), "context_length_exceeded") from None
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        recalled = {"X-Neeko-Recalled-Turns": ",".join(
            str(e.turn) for e in sorted(reply.context.recalled, key=lambda e: e.turn))}
        if not request.stream:
            reply.result()
            return JSONResponse(completion(reply, completion_id, created, character),
                                headers=recalled)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return StreamingResponse(
            _events(reply, completion_id, created, character, include_usage),
            media_type="text/event-stream", headers={"Cache-Control": "no-cache", **recalled})

    @router.post("/completions")
    def completions(request: CompletionRequest):
        character = known(request.model)
        refuse_unsupported(request)
        if isinstance(request.prompt, str) and too_long(request.prompt, engine.context_tokens,
                                                        engine.max_chars_per_token):
            raise ApiError(400, f"the prompt ({len(request.prompt)} characters) is longer than "
                                f"the {engine.context_tokens}-token context can hold",
                           "context_length_exceeded")
        prompt_ids = (request.prompt if isinstance(request.prompt, list) else
                      engine.tokenizer(request.prompt, add_special_tokens=False).input_ids)
        vocabulary = len(engine.tokenizer)
        if not all(0 <= i < vocabulary for i in [*prompt_ids, *(request.stop_token_ids or [])]):
            raise ApiError(400, f"token ids must be between 0 and {vocabulary - 1}",
                           "invalid_token_id")
        try:
            stream = engine.complete(character, prompt_ids, decoding(engine, request),
                                     request.stop_token_ids)
        except ValueError as err:
            raise ApiError(400, str(err), "context_length_exceeded") from None
        completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if not request.stream:
            for _ in stream:
                pass
            return text_completion(stream, completion_id, created, character, len(prompt_ids))
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return StreamingResponse(
            _text_events(stream, completion_id, created, character, len(prompt_ids),
                         include_usage),
            media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.include_router(router)
    return app


def _session_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_session_id(value)
    except ValueError as err:
        raise ApiError(400, str(err), "invalid_session_id") from None


def _text_events(stream: TokenStream, completion_id: str, created: int, model: str,
                 prompt_tokens: int, include_usage: bool) -> Iterator[str]:
    """A raw completion as `text_completion` events, then `[DONE]`; a closed connection
    cancels the generation."""
    try:
        for piece in stream:
            yield text_chunk(completion_id, created, model, piece)
    except GeneratorExit:
        stream.cancel()
        raise
    except Exception as err:
        log.exception("generation failed during a stream")
        yield stream_error(err)
        return
    yield text_chunk(completion_id, created, model, "", finish_reason(stream))
    if include_usage:
        done = text_completion(stream, completion_id, created, model, prompt_tokens)
        yield sse({**done, "choices": []})
    yield sse("[DONE]")


def _events(reply: Reply, completion_id: str, created: int, model: str,
            include_usage: bool) -> Iterator[str]:
    """The reply as `chat.completion.chunk` events, then `[DONE]`."""
    yield chunk(completion_id, created, model, {"role": "assistant", "content": ""})
    try:
        for piece in reply:
            yield chunk(completion_id, created, model, {"content": piece})
    except Exception as err:  # the status line is sent already: report the error in-band
        log.exception("generation failed during a stream")
        yield stream_error(err)
        return
    yield chunk(completion_id, created, model, {}, finish_reason(reply))
    if include_usage:
        yield sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                   "model": model, "choices": [], "usage": usage(reply)})
    yield sse("[DONE]")


def serve(engine: ChatEngine, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          api_key: str | None = None, log_level: str = "info",
          max_request_bytes: int = Settings.max_request_bytes) -> None:
    """Serve the API until interrupted (127.0.0.1 by default: only this machine), with the
    timeouts of `serving.server`."""
    if api_key is None and host not in LOOPBACK:
        log.warning("serving on %s without an API key: anyone who can reach it may use it", host)
    app = create_app(engine, api_key, max_request_bytes)
    uvicorn.Server(server_config(app, host, port, log_level)).run()


def run_api_command(settings: Settings, args: argparse.Namespace) -> int:
    """`neeko api`: serve the API on `settings.host` and `--port` until interrupted."""
    engine = server_engine(settings, args)
    try:
        serve(engine, settings.host, args.port, args.api_key,
              max_request_bytes=settings.max_request_bytes)
    finally:
        engine.close()
    return 0

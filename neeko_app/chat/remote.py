"""Generation on a remote OpenAI-compatible model server (vLLM, LoRAX, another `neeko api`).

The app still assembles every prompt (character header, memory, history) and tokenizes it;
the server only continues the token ids with the character's adapter, named by `model`
(a fusion character is sent to the trained block its gate weighs most: see
`ChatEngine.adapter_name`). Each request is one streaming `POST /v1/completions`; batching
across requests is the server's job.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from neeko_app.chat.scheduler import GenerationRequest, SchedulerStats, TokenStream
from neeko_app.chat.sentences import SentenceLimit

log = logging.getLogger(__name__)


class RemoteBackendError(RuntimeError):
    """The model server refused a request or could not be reached."""


class RemoteScheduler:
    """Sends each request to `base_url/completions` and streams the text back."""

    def __init__(self, base_url: str, stop_ids: Sequence[int], api_key: str | None = None,
                 max_concurrent: int = 64, timeout_s: float = 300.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.stop_ids = list(stop_ids)
        self.stats = SchedulerStats()
        self._client = httpx.Client(base_url=self.base_url, headers=headers,
                                    timeout=httpx.Timeout(timeout_s, connect=10.0))
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="neeko-remote")
        self._in_flight = 0
        self._counting = threading.Lock()

    def submit(self, request: GenerationRequest) -> TokenStream:
        """Start one request; iterate the returned stream for its text."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[GenerationRequest]) -> list[TokenStream]:
        """Start requests (the server batches them as it sees fit)."""
        streams = [TokenStream(request) for request in requests]
        for stream in streams:
            if not stream.request.model:
                raise RemoteBackendError("the remote backend needs a character with a trained "
                                         "block (there are none to fall back to)")
            with self._counting:
                self._in_flight += 1
            self._pool.submit(self._run, stream)
        self.stats.requests += len(streams)
        return streams

    def in_flight(self) -> int:
        """How many requests are sent or waiting to be (0: idle)."""
        with self._counting:
            return self._in_flight

    def close(self) -> None:
        """Stop sending: requests in flight are cut off."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def body(self, request: GenerationRequest) -> dict:
        """The JSON body of one `/completions` call (vLLM's extra sampling fields included)."""
        settings = request.settings
        body = {
            "model": request.model, "prompt": list(request.prompt_ids), "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": settings.max_new_tokens, "temperature": settings.temperature,
            "top_p": settings.top_p, "top_k": settings.top_k or -1,  # vLLM's "no limit"
            "repetition_penalty": settings.repetition_penalty,
            "frequency_penalty": settings.frequency_penalty,
            "presence_penalty": settings.presence_penalty,
            "no_repeat_ngram_size": settings.no_repeat_ngram_size,
            "stop_token_ids": list(request.stop_ids or self.stop_ids),
        }
        if settings.stop_strings:
            body["stop"] = list(settings.stop_strings)
        if settings.seed is not None:
            body["seed"] = settings.seed
        return body

    def _run(self, stream: TokenStream) -> None:
        try:
            reason, tokens = self._stream(stream)
        except Exception as err:  # reaches the reader of the stream
            log.warning("remote generation failed: %s", err)
            stream._fail(err if isinstance(err, RemoteBackendError)
                         else RemoteBackendError(f"model server {self.base_url}: {err}"))
        else:
            stream._finish(reason, tokens)
        finally:
            with self._counting:
                self._in_flight -= 1

    def _stream(self, stream: TokenStream) -> tuple[str, int]:
        """Read the server's events into `stream`; (finish reason, completion tokens). The
        sentence limit is applied here: the connection is closed at the cut."""
        reason, tokens = "stop", 0
        limit = SentenceLimit(stream.request.settings.max_sentences)
        with self._client.stream("POST", "/completions", json=self.body(stream.request)) as sent:
            if sent.status_code != 200:
                raise RemoteBackendError(
                    f"model server {self.base_url} answered {sent.status_code}: "
                    f"{_error_message(sent.read())}")
            for line in sent.iter_lines():
                if stream.cancelled:
                    return "cancelled", tokens
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                event = json.loads(line[len("data:"):])
                if "error" in event:
                    raise RemoteBackendError(_error_message(json.dumps(event).encode()))
                for choice in event.get("choices", []):
                    piece, ended = limit.take(choice.get("text", ""))
                    stream._put(piece)
                    if ended:
                        return "stop", tokens
                    reason = choice.get("finish_reason") or reason
                tokens = (event.get("usage") or {}).get("completion_tokens", tokens)
        return reason, tokens


def _error_message(body: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body itself (shortened)."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:300]

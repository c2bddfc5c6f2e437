"""Batching scheduler: concurrent requests, any mix of characters, one forward pass per step.

Requests wait up to `window_s` (or until `max_batch` are waiting) and are then decoded
together: prompts left-padded with an attention mask, one gate row per request (its
character's block, a fusion of blocks, or the bare base), a KV cache over the batch. Every
request streams its own text and stops on its own. Requests that arrive while a batch runs
form the next one. The steps run eagerly (`DynamicDecoder`: finished rows leave the batch)
or, with `compile_decode`, as one compiled step of fixed shape (`StaticDecoder`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from neeko_app.chat.contrast import with_notes_contrast
from neeko_app.chat.decoding import RowDecoder
from neeko_app.chat.dynamic_decode import DynamicDecoder, GateRow
from neeko_app.chat.generation import DecodingSettings, stop_token_ids
from neeko_app.chat.static_decode import StaticDecoder, cache_length, slot_count
from neeko_app.compute_threads import start_on_all_cores
from neeko_app.model.output_head import OutputHead
from neeko_app.moelora import Gate, NeekoModel

log = logging.getLogger(__name__)

_END = object()
KEPT_SHAPES = 3  # compiled decode steps kept (each holds a key/value cache of its shape)


def gate_row(gate: Gate | None) -> GateRow:
    """The one row of a single-request gate as plain data (no gate: the bare base model)."""
    if gate is None:
        return (), ()
    if gate.batch_size != 1:
        raise ValueError(f"a request needs a one-row gate, got {gate.batch_size} rows")
    return tuple(gate.indices[0].tolist()), tuple(gate.weights[0].tolist())


def batch_vocabulary(banned: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """The tokens some row of a batch may produce, given each row's banned tokens ([vocab]
    bool; None: none banned): the output head computes only those (None: all)."""
    if not banned or any(tokens is None for tokens in banned):
        return None
    common = banned[0]
    for tokens in banned[1:]:
        common = common & tokens
    return ~common


@dataclass(frozen=True)
class GenerationRequest:
    """One reply to generate: prompt token ids, its gate row and its decoding settings.

    `model` names the character's adapter for a remote backend; `stop_ids` replace the
    scheduler's end-of-reply tokens for this request; `quotable` are the tokens of the
    prompt's memory notes, which the reply may copy at any length; `contrast_ids` is the same
    prompt without those notes, decoded beside it when the settings' `note_contrast` is set
    (`contrast.with_notes_contrast`).
    """

    prompt_ids: tuple[int, ...]
    gate: GateRow
    settings: DecodingSettings
    model: str = ""
    stop_ids: tuple[int, ...] | None = None
    quotable: tuple[int, ...] = ()
    contrast_ids: tuple[int, ...] = ()

    @property
    def contrasted(self) -> bool:
        """Whether this reply is decoded against its prompt without the memory notes."""
        return bool(self.contrast_ids) and self.settings.note_contrast > 0

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("a request needs at least one prompt token")
        if self.settings.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


@dataclass
class SchedulerStats:
    """Counters for tests and benchmarks."""

    requests: int = 0
    batches: int = 0
    forward_passes: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class TokenStream:
    """The text of one request, piece by piece, as the scheduler produces it.

    Iterate it (blocking) for the pieces; afterwards `text`, `finish_reason` ("stop",
    "length" or "cancelled") and `completion_tokens` describe the result. An error in the
    batch is raised to every request of that batch.
    """

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.text = ""
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._cancelled = threading.Event()

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            self.text += item
            yield item

    def cancel(self) -> None:
        """Stop generating this request (its row leaves the batch at the next step)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _put(self, piece: str) -> None:
        if piece:
            self._queue.put(piece)

    def _finish(self, reason: str, tokens: int) -> None:
        self.finish_reason, self.completion_tokens = reason, tokens
        self._queue.put(_END)

    def _fail(self, error: BaseException) -> None:
        self._queue.put(error)


class BatchScheduler:
    """Collects requests from any thread and generates them in mixed-character batches."""

    def __init__(self, model: NeekoModel, tokenizer, max_batch: int = 8,
                 window_s: float = 0.02, stop_ids: Sequence[int] | None = None,
                 compile_decode: bool = False) -> None:
        """`stop_ids`: tokens that end a reply (default: end of turn and end of text);
        `compile_decode`: decode with a compiled step of fixed shape (`StaticDecoder`)
        instead of eagerly."""
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.model = model
        self.compile_decode = compile_decode
        self.head = OutputHead(model.base_model, prepacked=model.prepacks_weights)
        self._static: dict[tuple[int, int, int], StaticDecoder] = {}
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.window_s = window_s
        self.stats = SchedulerStats()
        self._stop_ids = list(stop_token_ids(tokenizer) if stop_ids is None else stop_ids)
        self._pending: deque[TokenStream] = deque()
        self._generating = 0  # rows of the batch being decoded
        self._wakeup = threading.Condition()
        self._closed = False
        # the one thread that decodes on every core (`compute_threads`)
        self._worker = start_on_all_cores(self._run, name="neeko-scheduler")

    def submit(self, request: GenerationRequest) -> TokenStream:
        """Queue one request; iterate the returned stream for its text."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[GenerationRequest]) -> list[TokenStream]:
        """Queue requests together: they share a batch (up to `max_batch`)."""
        streams = [TokenStream(request) for request in requests]
        with self._wakeup:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._pending.extend(streams)
            self.stats.requests += len(streams)
            self._wakeup.notify()
        return streams

    def in_flight(self) -> int:
        """How many requests are waiting or being generated (0: the scheduler is idle)."""
        with self._wakeup:
            return len(self._pending) + self._generating

    def close(self) -> None:
        """Stop the worker after the batch in progress; requests still waiting are failed."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._worker.join()
        for stream in self._pending:
            stream._fail(RuntimeError("the scheduler was closed"))
        self._pending.clear()

    # ---- worker -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._generate(batch)
            except Exception as err:  # reported to every waiting request, worker keeps going
                log.exception("batch generation failed")
                for stream in batch:
                    if stream.finish_reason is None:
                        stream._fail(err)
            finally:
                self._generating = 0

    def _next_batch(self) -> list[TokenStream] | None:
        """Wait for a request, then up to `window_s` for more; None once closed."""
        with self._wakeup:
            while not self._pending and not self._closed:
                self._wakeup.wait()
            deadline = time.monotonic() + self.window_s
            while len(self._pending) < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
            if self._closed:
                return None
            self._generating = min(self.max_batch, len(self._pending))
            return [self._pending.popleft() for _ in range(self._generating)]

    @torch.no_grad()
    def _generate(self, batch: list[TokenStream]) -> None:
        """Decode `batch` to the end: one forward pass per step for all unfinished rows.

        A contrasted request takes a second, hidden row of the batch: its prompt without the
        memory notes, fed the same tokens, whose logits `with_notes_contrast` weighs against
        the request's own."""
        device = self.model.keys.device
        rows = [RowDecoder(self.tokenizer, s.request.prompt_ids, s.request.settings,
                           self._stop_ids if s.request.stop_ids is None else s.request.stop_ids,
                           s.request.quotable)
                for s in batch]
        hidden_row = {i: len(batch) + n for n, i in enumerate(  # request -> its hidden row
            i for i, s in enumerate(batch) if s.request.contrasted)}
        prompts = ([s.request.prompt_ids for s in batch]
                   + [batch[i].request.contrast_ids for i in hidden_row])
        gates = [s.request.gate for s in batch] + [batch[i].request.gate for i in hidden_row]
        width = max(map(len, prompts))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts],
                                 device=device)
        mask = (torch.arange(width, device=device)
                >= torch.tensor([width - len(p) for p in prompts], device=device)[:, None]).long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(batch))
        decoder = self._decoder(len(prompts), width + max(s.request.settings.max_new_tokens
                                                          for s in batch), gates)
        vocabulary = batch_vocabulary([row.banned_tokens for row in rows])
        logits = decoder.prefill(input_ids, mask, positions, gates, vocabulary)
        going = list(range(len(batch)))  # the requests still decoding, in batch order
        active = [*going, *hidden_row.values()]  # their rows of the batch
        while True:
            self.stats.forward_passes += 1
            slot_of = {row: slot for slot, row in enumerate(active)}
            chosen: dict[int, int] = {}
            for i in going:
                row, stream = rows[i], batch[i]
                scores = logits[slot_of[i]]
                if i in hidden_row:
                    scores = with_notes_contrast(scores, logits[slot_of[hidden_row[i]]],
                                                 stream.request.settings.note_contrast)
                chosen[i] = row.choose(scores)
                if stream.cancelled and row.finish_reason is None:
                    row.finish_reason = "cancelled"
                stream._put(row.new_text())
                if row.finish_reason is not None:
                    stream._finish(row.finish_reason, len(row.generated))
            going = [i for i in going if rows[i].finish_reason is None]
            self._generating = len(going)
            if not going:
                return
            active = going + [hidden_row[i] for i in going if i in hidden_row]
            tokens = [chosen[i] for i in going] + [chosen[i] for i in going if i in hidden_row]
            logits = decoder.step(active, tokens)

    def _decoder(self, rows: int, tokens: int,
                 gates: Sequence[GateRow]) -> DynamicDecoder | StaticDecoder:
        """Today's decoder for a batch of `rows` needing `tokens` positions: eager with a
        growing cache, or (with `compile_decode`) the compiled step of that shape, built
        once and kept for the next batches of the same shape."""
        if not self.compile_decode:
            return DynamicDecoder(self.model, self.head)
        shape = (slot_count(rows, 2 * self.max_batch), cache_length(tokens),
                 max(1, max(len(indices) for indices, _ in gates)))
        decoder = self._static.pop(shape, None) or StaticDecoder(self.model, *shape,
                                                                   compiled=True, head=self.head)
        self._static[shape] = decoder  # most recently used last
        while len(self._static) > KEPT_SHAPES:
            self._static.pop(next(iter(self._static)))
        return decoder

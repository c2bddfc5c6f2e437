"""Decode steps at fixed shapes, so that one compiled forward serves every step.

`StaticDecoder` owns, for `slots` batch rows and `cache_len` positions:

- a key/value cache allocated once (transformers' `StaticLayer` for every layer: a sliding
  window layer then keeps all its positions and the window is applied by the mask);
- the attention mask over those positions and the gate (`GateSlots`), updated in place;
- the step itself: one new token per row, the base model's forward compiled with
  `torch.compile` (CUDA graphs on CUDA), or eager when compilation is off.

The prompt (prefill) runs eager through the same cache. Rows that finish keep their slot
until the batch ends, so no shape changes between steps; their tokens are ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, StaticLayer

from neeko_app.chat.dynamic_decode import GateRow, batch_gate
from neeko_app.model.kv_cache import with_cache
from neeko_app.model.output_head import OutputHead
from neeko_app.moelora import Gate, NeekoModel
from neeko_app.moelora.context import gate_scope
from neeko_app.moelora.slots import GateSlots

log = logging.getLogger(__name__)
CACHE_STEP = 256  # cache lengths are rounded up to a multiple of this (fewer compilations)
# Every decoder compiles the same step function for its own shape and tensors; dynamo's
# default of 8 compilations per function would silently turn later shapes eager.
RECOMPILE_LIMIT = 64
_BOUND_SLOTS = threading.Lock()  # held from binding a decoder's gate slots to its step's end


def slot_count(rows: int, max_batch: int) -> int:
    """The batch shape for `rows` requests: the next power of two, at most `max_batch`."""
    return min(max_batch, 1 << max(rows - 1, 0).bit_length())


def cache_length(tokens: int) -> int:
    """Cache positions for a batch needing `tokens`: rounded up to a multiple of CACHE_STEP."""
    return -(-tokens // CACHE_STEP) * CACHE_STEP


class StaticDecoder:
    """Prefill and decode steps of up to `slots` rows within `cache_len` positions, each row
    playing up to `width` blocks; the step compiled with `torch.compile`, or eager."""

    def __init__(self, model: NeekoModel, slots: int, cache_len: int, width: int,
                 compiled: bool, head: OutputHead | None = None) -> None:
        base = model.base_model
        config = base.config
        device, dtype = model.keys.device, next(base.parameters()).dtype
        self.model, self.slots, self.cache_len = model, slots, cache_len
        self.head = head or OutputHead(base)
        self.vocabulary: torch.Tensor | None = None
        self.cache = Cache(layers=[StaticLayer(cache_len)
                                   for _ in range(config.num_hidden_layers)])
        self.cache.early_initialization(slots, config.num_key_value_heads, config.head_dim,
                                        dtype, device)
        self.mask = torch.zeros(slots, cache_len, dtype=torch.long, device=device)
        self.gate_slots = GateSlots(slots, width, model.config.rank, device, dtype)
        self.length = 0  # cache positions written (the same for every row: prompts are padded)
        self.positions = torch.zeros(slots, 1, dtype=torch.long, device=device)
        self._eager_gate: Gate | None = None
        if compiled:
            dynamo = torch._dynamo.config
            dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
        self._compiled_step = torch.compile(
            self._forward_step, mode="reduce-overhead" if device.type == "cuda" else None,
            dynamic=False) if compiled else None
        self._warm = not compiled

    def _forward_step(self, tokens: torch.Tensor, positions: torch.Tensor,
                      cache_position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The last hidden state of every slot [slots, d]; the head runs outside the graph,
        narrowed to the batch's vocabulary."""
        output = self.model.base_model.get_decoder()(
            input_ids=tokens, position_ids=positions, cache_position=cache_position,
            attention_mask=mask, use_cache=True, **with_cache(self.cache))
        return output.last_hidden_state[:, -1, :]

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                gate_rows: Sequence[GateRow], vocabulary: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Start a batch: `input_ids`, `mask` and `positions` are [rows, width] (prompts
        left-padded); the last position's logits [rows, vocab], -inf for tokens outside
        `vocabulary` (None: all) here and at every step. Empty slots get one padding token
        that attends to itself."""
        rows, width = input_ids.shape
        if rows > self.slots or width >= self.cache_len:
            raise ValueError(f"{rows} prompts of {width} tokens do not fit {self.slots} "
                             f"slots of {self.cache_len} positions")
        self.cache.reset()
        pad = self.slots - rows
        input_ids = torch.cat([input_ids, input_ids.new_zeros(pad, width)])
        mask = torch.cat([mask, mask.new_zeros(pad, width)])
        mask[rows:, -1] = 1
        positions = torch.cat([positions, positions.new_zeros(pad, width)])
        gate = batch_gate(self.model, gate_rows)
        self.gate_slots.fill(gate)
        self._eager_gate = None if gate is None else self.gate_slots.gate
        self.mask.zero_()
        self.mask[:, :width] = mask
        self.positions.copy_(positions[:, -1:])
        self.length = width
        self.vocabulary = vocabulary
        output = self.model.hidden_states(input_ids, gate=self._eager_gate,
                                          attention_mask=mask, position_ids=positions,
                                          cache_position=torch.arange(width, device=mask.device),
                                          use_cache=True, **with_cache(self.cache))
        return self.head(output.last_hidden_state[:rows, -1], vocabulary)

    @torch.no_grad()
    def step(self, active: Sequence[int], tokens: Sequence[int]) -> torch.Tensor:
        """The next token of the rows `active` (indices into the batch); their logits
        [len(active), vocab]. The other slots compute too, on a padding token."""
        if self.length >= self.cache_len:
            raise ValueError(f"the batch has used all {self.cache_len} cache positions")
        batch = torch.zeros(self.slots, 1, dtype=torch.long, device=self.mask.device)
        rows = torch.tensor(list(active), device=self.mask.device)
        batch[rows, 0] = torch.tensor(list(tokens), device=self.mask.device)
        self.mask[:, self.length] = 1
        self.positions += 1
        cache_position = torch.tensor([self.length], device=self.mask.device)
        if self._compiled_step is None:
            with gate_scope(self._eager_gate):
                hidden = self._forward_step(batch, self.positions, cache_position, self.mask)
        else:
            if not self._warm:
                log.warning("compiling the decode step for %d rows x %d positions (once per "
                            "shape; tens of seconds on a CPU) ...", self.slots, self.cache_len)
            started = time.perf_counter()
            with _BOUND_SLOTS:  # another scheduler's decoder must not rebind them meanwhile
                self.model.bind_slots(None if self._eager_gate is None else self.gate_slots)
                hidden = self._compiled_step(batch, self.positions, cache_position, self.mask)
            if not self._warm:
                self._warm = True
                log.warning("... compiled in %.0f s", time.perf_counter() - started)
        self.length += 1
        return self.head(hidden[rows], self.vocabulary)

"""The fixed-shape decode step (`StaticDecoder`), eager and compiled, against the eager
path with a growing cache (`DynamicDecoder`), on the tiny model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from neeko_app.chat.dynamic_decode import DynamicDecoder
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn, render_prompt
from neeko_app.chat.scheduler import BatchScheduler, GenerationRequest, gate_row
from neeko_app.chat.static_decode import CACHE_STEP, StaticDecoder, cache_length, slot_count
from neeko_app.config import Settings
from neeko_app.moelora import Gate
from tests.conftest import make_tiny_neeko

STEPS = 10


@pytest.fixture(scope="module")
def model():
    return make_tiny_neeko(num_blocks=4)


def gate_rows(model) -> list:
    """One-hot rows, a two-block mix, a full-softmax fusion and the bare base."""
    role = torch.randn(1, model.keys.shape[1], generator=torch.Generator().manual_seed(3))
    gates = [Gate.one_hot([2]), Gate.one_hot([0]), Gate.from_rows([([1, 3], [0.6, 0.4])]),
             model.fusion_gate_for(role), None]
    return [gate_row(g) for g in gates]


def prompts(model, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` prompts of different lengths, left-padded as the scheduler pads them."""
    ids = [model.tokenizer(render_prompt(f"You are {i}.", [Turn("user", "hi " * (2 * i + 1))]),
                           add_special_tokens=False).input_ids for i in range(count)]
    width = max(map(len, ids))
    input_ids = torch.tensor([[0] * (width - len(row)) + row for row in ids])
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids])
    return input_ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def decode(decoder, model, rows, vocabulary: torch.Tensor | None = None
           ) -> tuple[list[list[int]], list[torch.Tensor]]:
    """Greedy tokens and logits of every row; row k stops after STEPS - k steps, so rows
    leave the batch one by one."""
    input_ids, mask, positions = prompts(model, len(rows))
    logits = decoder.prefill(input_ids, mask, positions, rows, vocabulary)
    active = list(range(len(rows)))
    tokens: list[list[int]] = [[] for _ in rows]
    seen: list[torch.Tensor] = [logits]
    for step in range(STEPS):
        chosen = logits.argmax(-1).tolist()
        for row, token in zip(active, chosen, strict=True):
            tokens[row].append(token)
        active = [row for row in active if step < STEPS - 1 - row]
        if not active:
            break
        logits = decoder.step(active, [tokens[row][-1] for row in active])
        seen.append(logits)
    return tokens, seen


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_the_static_step_writes_what_the_growing_cache_writes(model, compiled):
    rows = gate_rows(model)
    expected, expected_logits = decode(DynamicDecoder(model), model, rows)
    static = StaticDecoder(model, slots=8, cache_len=CACHE_STEP, width=4, compiled=compiled)
    got, got_logits = decode(static, model, rows)
    assert got == expected  # greedy: the same tokens, row by row
    for ours, reference in zip(got_logits, expected_logits, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
    # a second batch through the same decoder starts from a clean cache
    assert decode(static, model, rows[:2])[0] == decode(DynamicDecoder(model), model,
                                                        rows[:2])[0]


def test_both_decoders_narrow_the_head_to_the_batch_vocabulary_alike(model):
    rows = gate_rows(model)
    allowed = torch.rand(len(model.tokenizer), generator=torch.Generator().manual_seed(5)) < 0.5
    expected, expected_logits = decode(DynamicDecoder(model), model, rows, allowed)
    static = StaticDecoder(model, slots=8, cache_len=CACHE_STEP, width=4, compiled=False)
    got, got_logits = decode(static, model, rows, allowed)
    assert got == expected
    for ours, reference in zip(got_logits, expected_logits, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)  # -inf alike
        assert torch.isneginf(ours[:, ~allowed]).all()
    assert all(allowed[token] for tokens in got for token in tokens)
    whole = decode(DynamicDecoder(model), model, rows)[1][0]  # the prefill, all allowed
    torch.testing.assert_close(expected_logits[0][:, allowed], whole[:, allowed])


def test_the_compiled_step_is_one_graph_with_the_gate_inside(model):
    static = StaticDecoder(model, slots=4, cache_len=CACHE_STEP, width=2, compiled=False)
    input_ids, mask, positions = prompts(model, 2)
    static.prefill(input_ids, mask, positions, gate_rows(model)[1:3])
    model.bind_slots(static.gate_slots)
    try:
        explained = torch._dynamo.explain(static._forward_step)(
            torch.zeros(4, 1, dtype=torch.long), static.positions,
            torch.tensor([static.length]), static.mask)
    finally:
        model.bind_slots(None)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    # the LoRA blocks are in the graph: each wrapped linear gathers its blocks
    ops = [str(node.target) for graph in explained.graphs for node in graph.graph.nodes]
    assert sum("index_select" in op for op in ops) == 2 * len(list(model.lora_layers()))


def test_the_compiled_scheduler_streams_what_the_eager_one_streams(model):
    settings = [DecodingSettings(max_new_tokens=4 + 2 * i, temperature=0) for i in range(5)]
    ids = [tuple(model.tokenizer(render_prompt(f"You are {i}.", [Turn("user", "tell " * i)]),
                                 add_special_tokens=False).input_ids) for i in range(5)]
    requests = [GenerationRequest(p, g, s)
                for p, g, s in zip(ids, gate_rows(model), settings, strict=True)]
    # one reply decoded against a prompt without notes: a hidden sixth row
    requests[4] = replace(requests[4], contrast_ids=ids[1])
    texts = {}
    for compiled in (False, True):
        scheduler = BatchScheduler(model, model.tokenizer, window_s=0, compile_decode=compiled)
        try:
            texts[compiled] = [["".join(stream) for stream in scheduler.submit_many(requests)]
                               for _ in range(2)]  # the second batch reuses the compiled step
            kept = len(scheduler._static)
        finally:
            scheduler.close()
    assert texts[True] == texts[False] and texts[True][0] == texts[True][1]
    assert kept == 1  # one shape, compiled once


def test_shapes_are_rounded_so_few_steps_are_compiled():
    assert [slot_count(n, 8) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    assert slot_count(7, 6) == 6
    assert cache_length(1) == cache_length(CACHE_STEP) == CACHE_STEP
    assert cache_length(CACHE_STEP + 1) == 2 * CACHE_STEP


def test_the_decode_setting_comes_from_the_environment_and_rejects_unknown_modes(monkeypatch):
    assert not Settings().compile_decode  # eager by default
    monkeypatch.setenv("NEEKO_DECODE", "compiled")
    assert Settings.from_env().compile_decode
    monkeypatch.setenv("NEEKO_DECODE", "fast")
    with pytest.raises(ValueError, match="NEEKO_DECODE"):
        Settings.from_env()

"""One decode step as the chat runs it for one session, with plain and with prepacked
weights, side by side; the output head alone; and what a character switch costs.

    python reports/prepacked-weights-2026-12-06/decode_step.py [--rounds 8] > decode-step.txt

The embedded model in "auto" (bfloat16 on a CPU that multiplies it natively) and in float32,
Socrates' block merged (the CPU default for one session). A step is what the scheduler
calls: two rows (the reply and its note-contrast row, prompts of 200 and 130 tokens,
left-padded), the layers and the output head narrowed to the tokens an English chat may
produce (`DynamicDecoder.step`). Per round and case: a prefill, then the median of 15
steps; cases interleaved (`bench.timing.interleaved_samples`), round 0 a warm-up. The same
for the narrowed head alone. Then the seconds to merge (and pack) a block into every
wrapped linear, median of eight switches between two characters, and whether the logits of
the two cases are the same bits. Writes decode-step.json beside this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from neeko_app.bench.results import machine
from neeko_app.bench.timing import interleaved_samples, paired_ratio
from neeko_app.chat.dynamic_decode import DynamicDecoder
from neeko_app.config import Settings
from neeko_app.model.output_head import OutputHead
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.storage import atomic_write_json

# the merged-blocks report timed the same switch; its script shares this one's file name
_MERGED_BLOCKS = importlib.util.spec_from_file_location(
    "merged_blocks_decode_step",
    Path(__file__).parents[1] / "merged-blocks-2026-12-06" / "decode_step.py")
merged_blocks = importlib.util.module_from_spec(_MERGED_BLOCKS)
_MERGED_BLOCKS.loader.exec_module(merged_blocks)

CHARACTER = "socrates"
CASES = {"plain": False, "prepacked": True}


def chat_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two left-padded prompts of 200 and 130 tokens, and an allowed vocabulary of two
    thirds (what the script guard leaves an English chat)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (2, 200), generator=generator)
    mask = torch.ones(2, 200, dtype=torch.long)
    mask[1, :70] = 0
    allowed = torch.rand(vocab, generator=generator) < 2 / 3
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), allowed


def step_case(runtime: Runtime, prepacked: bool, logits: list) -> Callable[[], float]:
    """A case function: the median seconds of 15 decode steps after a prefill."""
    model = runtime.model
    ids, mask, positions, allowed = chat_batch(model.base_model.config.vocab_size)
    gate = [((model.block_index(CHARACTER),), (1.0,))] * 2
    head = OutputHead(model.base_model, prepacked=prepacked)

    def run() -> float:
        model.prepack_weights(prepacked)
        decoder = DynamicDecoder(model, head)
        logits[:] = [decoder.prefill(ids, mask, positions, gate, allowed)]
        times = []
        for _ in range(15):
            started = time.perf_counter()
            logits.append(decoder.step([0, 1], [1234, 1234]))
            times.append(time.perf_counter() - started)
        return statistics.median(times)
    return run


def head_case(runtime: Runtime, prepacked: bool) -> Callable[[], float]:
    """A case function: the median seconds of 15 calls of the narrowed head on two rows."""
    base = runtime.model.base_model
    head = OutputHead(base, prepacked=prepacked)
    hidden = torch.randn(2, base.config.hidden_size).to(runtime.base.dtype)
    allowed = chat_batch(base.config.vocab_size)[3]

    def run() -> float:
        times = []
        for _ in range(15):
            started = time.perf_counter()
            head(hidden, allowed)
            times.append(time.perf_counter() - started)
        return statistics.median(times)
    return run


def switch_seconds(runtime: Runtime, prepacked: bool) -> float:
    """Median seconds to merge (and pack, if `prepacked`) a block into every wrapped linear,
    over eight switches between two characters."""
    runtime.model.prepack_weights(prepacked)
    return merged_blocks.merge_cost(runtime, switches=8)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    results = {}
    for dtype in ("auto", "float32"):
        runtime = load_runtime(Settings.from_env(dtype=dtype), report=lambda _: None)
        logits = {name: [] for name in CASES}
        steps = interleaved_samples({name: step_case(runtime, prepacked, logits[name])
                                     for name, prepacked in CASES.items()}, args.rounds)
        heads = interleaved_samples({name: head_case(runtime, prepacked)
                                     for name, prepacked in CASES.items()}, args.rounds)
        results[dtype] = {
            "dtype": str(runtime.base.dtype),
            "step ms": {name: statistics.median(v) * 1000 for name, v in steps.items()},
            "step prepacked x plain, paired": paired_ratio(steps, "prepacked", "plain"),
            "head ms": {name: statistics.median(v) * 1000 for name, v in heads.items()},
            "head prepacked x plain, paired": paired_ratio(heads, "prepacked", "plain"),
            "switch s": {name: switch_seconds(runtime, prepacked)
                         for name, prepacked in CASES.items()},
            "same logits": all(torch.equal(a, b) for a, b in zip(
                logits["plain"], logits["prepacked"], strict=True)),
            "max |logit difference|": max(
                (a.float() - b.float())[a.isfinite()].abs().max().item()
                for a, b in zip(logits["plain"], logits["prepacked"], strict=True)),
            "samples": {"step": steps, "head": heads}}
        print({k: v for k, v in results[dtype].items() if k != "samples"}, flush=True)
        device = runtime.base.device
        del runtime
    atomic_write_json(Path(__file__).parent / "decode-step.json",
                      {"machine": machine(device), "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()

"""One decode step of the model's layers (where the blocks live) at batch 1: the bare base
model, the fused gate and the merged block, side by side; and what merging costs.

    python reports/merged-blocks-2026-12-06/decode_step.py [--rounds 6] > decode-step.txt

The embedded model in float32 and in "auto" (bfloat16 on a CPU that multiplies it natively),
Socrates' block. Per round and case: a 300-token prompt, then the median of 20 one-token
steps with its cache; cases in turn, the order reversed every other round, round 0 a
warm-up. Then: the seconds to merge a block into all wrapped linears (the first step after
a switch pays it; median of six switches between two characters), the bytes of the merged
copy, and the largest logit difference between merged and fused on a 200-token prompt,
each against the float32 fused logits. Writes decode-step.json beside this script.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from neeko_app.bench.results import machine
from neeko_app.config import Settings
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.storage import atomic_write_json

CHARACTER = "socrates"
OTHER = "newton"  # the character switched to when timing a merge


def step_ms(runtime: Runtime, gated: bool, merged: bool, prompt: torch.Tensor) -> float:
    """Median milliseconds of one decode step after `prompt`."""
    model = runtime.model
    model.merge_single_blocks(merged)
    gate = model.gate_for([CHARACTER]) if gated else None
    cache = DynamicCache()
    times = []
    with torch.no_grad():
        model.hidden_states(prompt, gate=gate, past_key_values=cache, use_cache=True)
        token = prompt[:, -1:]
        for _ in range(20):
            started = time.perf_counter()
            model.hidden_states(token, gate=gate, past_key_values=cache, use_cache=True)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def merge_cost(runtime: Runtime, switches: int = 6) -> tuple[float, int]:
    """Median seconds to merge a block into every wrapped linear, switching between two
    characters as a user would, and the merged copy's bytes."""
    model = runtime.model
    model.merge_single_blocks(True)
    blocks = [model.block_index(CHARACTER), model.block_index(OTHER)]
    layers = [layer for _, layer in model.lora_layers()]
    times = []
    for switch in range(switches):
        started = time.perf_counter()
        merged = [layer._merged_weight(blocks[switch % 2]) for layer in layers]
        times.append(time.perf_counter() - started)
    return statistics.median(times), sum(w.nbytes for w in merged)


def logits(runtime: Runtime, merged: bool, prompt: torch.Tensor) -> torch.Tensor:
    runtime.model.merge_single_blocks(merged)
    with torch.no_grad():
        return runtime.model(prompt, gate=runtime.model.gate_for([CHARACTER])).logits.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    prompt = torch.randint(1000, 5000, (1, 300), generator=torch.Generator().manual_seed(0))
    cases = {"bare": (False, False), "fused gate": (True, False), "merged": (True, True)}
    results, reference = {}, None
    for dtype in ("float32", "auto"):
        runtime = load_runtime(Settings.from_env(dtype=dtype), report=lambda _: None)
        samples: dict[str, list[float]] = {case: [] for case in cases}
        for done in range(args.rounds + 1):
            order = list(cases.items()) if done % 2 else list(cases.items())[::-1]
            for case, (gated, merged) in order:
                value = step_ms(runtime, gated, merged, prompt)
                print(f"{dtype} round {done} {case}: {value:.1f} ms", flush=True)
                if done:
                    samples[case].append(value)
        seconds, nbytes = merge_cost(runtime)
        fused, merged = logits(runtime, False, prompt[:, :200]), logits(runtime, True,
                                                                        prompt[:, :200])
        reference = fused if reference is None else reference
        medians = {case: statistics.median(v) for case, v in samples.items()}
        results[dtype] = {
            "dtype": str(runtime.base.dtype), "step ms": medians,
            "merged x fused": medians["merged"] / medians["fused gate"],
            "merged x bare": medians["merged"] / medians["bare"],
            "merge one block s": seconds, "merged copy MB": nbytes / 2**20,
            "max |logit - float32 fused|": {
                "fused": (fused - reference).abs().max().item(),
                "merged": (merged - reference).abs().max().item()},
            "top-1 agrees with float32 fused": {
                "fused": (fused.argmax(-1) == reference.argmax(-1)).float().mean().item(),
                "merged": (merged.argmax(-1) == reference.argmax(-1)).float().mean().item()},
            "samples": samples}
        print({k: v for k, v in results[dtype].items() if k != "samples"}, flush=True)
        device = runtime.base.device
        del runtime
    atomic_write_json(Path(__file__).parent / "decode-step.json",
                      {"machine": machine(device), "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()

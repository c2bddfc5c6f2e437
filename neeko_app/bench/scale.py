"""Benchmark 3, scale in characters: per-token decode time with 8 to 1000 characters loaded,
the fused (sparse) gate against the dense reference, the paper's way, which computes every
loaded block for every token; and the memory one character takes.

The store is built once with the most characters and cut down (`truncate_blocks`) for each
smaller count; at every count the bare base is timed beside the two gates.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from neeko_app.bench.mixed_batch import decode_seconds
from neeko_app.bench.results import BenchResult, machine
from neeko_app.bench.shapes import (
    ModelOptions,
    bench_models,
    bench_settings,
    block_bytes,
)
from neeko_app.bench.timing import interleaved_samples, paired_ratio

FLAT_WITHIN = 0.10  # the goal: ours stays within 10% from the fewest to the most characters


@dataclass(frozen=True)
class ScaleOptions(ModelOptions):
    counts: tuple[int, ...] = (8, 64, 256, 1000)
    batch: int = 8
    prompt_tokens: int = 32
    decode_steps: int = 8
    rounds: int = 5


def run(options: ScaleOptions = ScaleOptions()) -> BenchResult:
    counts = sorted(options.counts, reverse=True)
    started = time.perf_counter()
    models = bench_models(options, counts[0])
    build_s = time.perf_counter() - started
    neeko, device = models.neeko, models.device
    ids = torch.randint(3, min(models.vocab_size, 5000), (options.batch, options.prompt_tokens),
                        device=device)
    per_character = block_bytes(neeko)
    result = BenchResult("scale", "Scale in characters: decode per token, fused gate vs dense",
                         bench_settings(options, models), machine(device))
    with torch.no_grad():
        for count in counts:
            neeko.truncate_blocks(count)
            # the rows' characters spread over the whole store, as in a real mix (with fewer
            # characters than rows, some rows share one)
            names = [models.names[i * count // options.batch] for i in range(options.batch)]
            cases = {
                "bare": None,
                "ours (fused)": neeko.gate_for(names),
                "dense (paper)": neeko.gate_for(names, path="dense"),
            }
            samples = interleaved_samples({
                case: (lambda g=gate: decode_seconds(
                    lambda x, **kw: neeko(x, gate=g, **kw), ids, options.decode_steps, device))
                for case, gate in cases.items()}, options.rounds, label=f"{count} characters")
            per_token = {case: statistics.median(values) / options.batch * 1000
                         for case, values in samples.items()}
            result.add(characters=count, bare_ms_per_token=per_token["bare"],
                       ours_ms_per_token=per_token["ours (fused)"],
                       ours_x_bare=paired_ratio(samples, "ours (fused)", "bare"),
                       dense_ms_per_token=per_token["dense (paper)"],
                       dense_x_bare=paired_ratio(samples, "dense (paper)", "bare"),
                       blocks_mb=count * per_character / 2**20)
    rows = sorted(result.rows, key=lambda row: row["characters"])
    result.rows = rows
    ratios = [row["ours_x_bare"] for row in rows]
    spread = max(ratios) / min(ratios) - 1
    verdict = "met" if spread <= FLAT_WITHIN else "missed"
    result.notes += [
        f"memory per character: {per_character / 2**20:.2f} MiB "
        f"(rank {neeko.config.rank} on {len(neeko.lora_names)} linears)",
        f"ours relative to the bare base, {rows[0]['characters']} to {rows[-1]['characters']} "
        f"characters: x{min(ratios):.3f} to x{max(ratios):.3f}, a spread of {spread:.1%}; "
        f"goal within {FLAT_WITHIN:.0%}: {verdict}",
        f"dense from {rows[0]['characters']} to {rows[-1]['characters']}: "
        f"x{rows[-1]['dense_ms_per_token'] / rows[0]['dense_ms_per_token']:.1f}",
        f"building {counts[0]} random blocks took {build_s:.0f} s",
    ]
    return result

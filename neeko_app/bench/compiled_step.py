"""Benchmark 5, the compiled decode step: eager (today's scheduler path, a growing cache)
against the fixed-shape step (`StaticDecoder`) compiled with `torch.compile`, for the bare
base model and for a batch whose rows are all different characters. Also the bare step's
memory-bound limit: the weight bytes read once at the device's measured copy bandwidth.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from neeko_app.bench.results import BenchResult, machine
from neeko_app.bench.shapes import ModelOptions, bench_models, bench_settings
from neeko_app.bench.timing import interleaved_samples, paired_ratio, synchronize
from neeko_app.chat.dynamic_decode import DynamicDecoder
from neeko_app.chat.static_decode import StaticDecoder, cache_length

BARE_EAGER = "bare base, eager (today)"
OURS_EAGER = "ours, eager (today)"
BARE_COMPILED = "bare base, compiled"
OURS_COMPILED = "ours, compiled"


@dataclass(frozen=True)
class CompiledStepOptions(ModelOptions):
    batch: int = 8
    prompt_tokens: int = 128
    decode_steps: int = 16


def copy_bandwidth(device: torch.device, megabytes: int = 256, rounds: int = 5) -> float:
    """Bytes per second one device copy moves (read plus write), best of `rounds`."""
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device).fill_(1)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(rounds):
        synchronize(device)
        started = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * source.numel() / best


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters a decode step reads (the tied embedding once)."""
    unique = {p.data_ptr(): p for p in model.parameters()}
    return sum(p.numel() * p.element_size() for p in unique.values())


def decode_seconds(decoder, ids: torch.Tensor, rows: list, steps: int,
                   device: torch.device) -> float:
    """Seconds per decode step of `decoder` after an untimed prefill of `ids`."""
    mask = torch.ones_like(ids)
    positions = torch.arange(ids.shape[1], device=device).expand_as(ids)
    logits = decoder.prefill(ids, mask, positions, rows)
    active = list(range(ids.shape[0]))
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        logits = decoder.step(active, logits.argmax(-1).tolist())
    synchronize(device)
    return (time.perf_counter() - started) / steps


def run(options: CompiledStepOptions = CompiledStepOptions()) -> BenchResult:
    batch = options.batch
    models = bench_models(options, batch)
    neeko, device = models.neeko, models.device
    ids = torch.randint(3, min(models.vocab_size, 5000), (batch, options.prompt_tokens),
                        device=device)
    bare = [((), ())] * batch
    mixed = [((neeko.block_index(name),), (1.0,)) for name in models.names]
    shape = (batch, cache_length(options.prompt_tokens + options.decode_steps + 1), 1)
    compiled = StaticDecoder(neeko, *shape, compiled=True)
    compile_seconds = {}
    for name, rows in ((BARE_COMPILED, bare), (OURS_COMPILED, mixed)):  # compile both graphs
        started = time.perf_counter()
        decode_seconds(compiled, ids, rows, 1, device)
        compile_seconds[name] = time.perf_counter() - started
    cases = {
        BARE_EAGER: (DynamicDecoder(neeko), bare),
        OURS_EAGER: (DynamicDecoder(neeko), mixed),
        BARE_COMPILED: (compiled, bare),
        OURS_COMPILED: (compiled, mixed),
    }
    with torch.no_grad():
        samples = interleaved_samples(
            {name: (lambda d=decoder, r=rows: decode_seconds(d, ids, r, options.decode_steps,
                                                             device))
             for name, (decoder, rows) in cases.items()}, options.rounds, label="decode")
    read_bandwidth = copy_bandwidth(device) / 2
    weights = weight_bytes(neeko.base_model)
    limit = weights / read_bandwidth
    result = BenchResult("compiled_step", f"Decode step at batch {batch}: eager and compiled",
                         bench_settings(options, models), machine(device))
    for name in cases:
        result.add(case=name, decode_ms_per_step=statistics.median(samples[name]) * 1000,
                   x_bare_eager=paired_ratio(samples, name, BARE_EAGER),
                   x_memory_limit=statistics.median(samples[name]) / limit,
                   first_step_s=compile_seconds.get(name))

    def ratio(case: str, reference: str) -> str:
        return f"x{paired_ratio(samples, case, reference):.3f}"

    result.notes += [
        f"ours compiled, {batch} characters / bare eager (today): "
        f"{ratio(OURS_COMPILED, BARE_EAGER)} (goal < 1.0)",
        f"gate overhead: compiled {ratio(OURS_COMPILED, BARE_COMPILED)} (goal <= 1.10), "
        f"eager {ratio(OURS_EAGER, BARE_EAGER)}",
        f"compiled / eager: bare {ratio(BARE_COMPILED, BARE_EAGER)}, "
        f"ours {ratio(OURS_COMPILED, OURS_EAGER)}",
        f"memory-bound limit of the bare step: {limit * 1000:.2f} ms "
        f"({weights / 1e9:.2f} GB of weights at {read_bandwidth / 1e9:.1f} GB/s read)",
        "compilation (first step of each graph): "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in compile_seconds.items()),
    ]
    return result

"""Benchmark 2, mixed batches: a batch whose rows are all different characters, against
the same batch as one character, the bare base model, PEFT and running characters one
after another. Prefill (the prompt) and decode (one new token per row, KV cache) are
timed separately: decode is where a per-layer overhead shows.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from neeko_app.bench.peft_twin import export_adapters, layer_errors, peft_model, same_logits
from neeko_app.bench.results import BenchResult, machine
from neeko_app.bench.shapes import ModelOptions, bench_models, bench_settings
from neeko_app.bench.timing import interleaved_samples, paired_ratio, synchronize, timed
from neeko_app.model.kv_cache import returned_cache, with_cache
from neeko_app.model.last_position import last_position
from neeko_app.moelora import Gate

Forward = Callable[..., object]  # (input_ids, **kwargs) -> model output
SLOW_CASES = ("ours: one character after another", "PEFT adapter_names")


@dataclass(frozen=True)
class MixedBatchOptions(ModelOptions):
    batch: int = 8
    prompt_tokens: int = 64
    decode_steps: int = 16
    rounds: int = 7


def prefill_seconds(forward: Forward, ids: torch.Tensor, device: torch.device) -> float:
    """One forward pass over the prompt (only the last position's logits, as in generation)."""
    return timed(lambda: forward(ids, use_cache=True, logits_to_keep=last_position(ids)), device)


def decode_seconds(forward: Forward, ids: torch.Tensor, steps: int,
                   device: torch.device) -> float:
    """Seconds per decode step after an untimed prefill of `ids`."""
    out = forward(ids, use_cache=True, logits_to_keep=last_position(ids))
    cache, token = returned_cache(out), out.logits[:, -1:].argmax(-1)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        out = forward(token, use_cache=True, logits_to_keep=1, **with_cache(cache))
        cache, token = returned_cache(out), out.logits[:, -1:].argmax(-1)
    synchronize(device)
    return (time.perf_counter() - started) / steps


def run(options: MixedBatchOptions = MixedBatchOptions()) -> BenchResult:
    batch = options.batch
    # 4x the batch is loaded, so a batch can also take characters scattered over the store
    models = bench_models(options, 4 * batch, with_plain_twin=True)
    neeko, device = models.neeko, models.device
    mixed, scattered = models.names[:batch], models.names[::4][:batch]
    ids = torch.randint(3, min(models.vocab_size, 5000), (batch, options.prompt_tokens),
                        device=device)

    def steps(case: str) -> int:
        """Decode steps timed: a quarter for the slow reference cases (per step the same)."""
        slow = any(case.startswith(prefix) for prefix in SLOW_CASES)
        return max(2, options.decode_steps // 4) if slow else options.decode_steps

    def ours(gate: Gate | None) -> Forward:
        return lambda input_ids, **kw: neeko(input_ids, gate=gate, **kw)

    def one_after_another(measure: Callable[[Forward, torch.Tensor], float]) -> float:
        return sum(measure(ours(neeko.gate_for([name])), ids[row:row + 1])
                   for row, name in enumerate(mixed))

    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        peft = peft_model(models, export_adapters(models, mixed, Path(tmp)))

        def peft_forward(names: list[str] | None) -> Forward:
            extra = {} if names is None else {"adapter_names": names}
            return lambda input_ids, **kw: peft(input_ids=input_ids, **extra, **kw)

        forwards: dict[str, Forward] = {
            "bare base (no gate)": ours(None),
            "ours: 1 character, all rows": ours(neeko.gate_for([mixed[0]] * batch)),
            f"ours: {batch} characters, one each": ours(neeko.gate_for(mixed)),
            f"ours: {batch} characters scattered over {4 * batch}":
                ours(neeko.gate_for(scattered)),
            f"dense gate (paper), {batch} of {4 * batch} blocks":
                ours(neeko.gate_for(mixed, path="dense")),
            "PEFT: 1 adapter, all rows": peft_forward(None),
            f"PEFT adapter_names: {batch} adapters": peft_forward(mixed),
        }
        agrees = _check_peft(neeko, peft, ids, mixed)
        errors = layer_errors(models, peft, mixed)
        prefill = interleaved_samples(
            {name: (lambda f=f: prefill_seconds(f, ids, device)) for name, f in forwards.items()}
            | {"ours: one character after another": lambda: one_after_another(
                lambda f, x: prefill_seconds(f, x, device))}, options.rounds,
            label="prefill")
        decode = interleaved_samples(
            {name: (lambda f=f, n=name: decode_seconds(f, ids, steps(n), device))
             for name, f in forwards.items()}
            | {"ours: one character after another": lambda: one_after_another(
                lambda f, x: decode_seconds(f, x, steps(SLOW_CASES[0]), device))},
            options.rounds, label="decode")

    result = BenchResult("mixed_batch", f"Mixed batch of {batch}: prefill and decode",
                         bench_settings(options, models), machine(device))
    bare = "bare base (no gate)"
    for case in prefill:
        result.add(case=case, prefill_ms=statistics.median(prefill[case]) * 1000,
                   prefill_x_bare=paired_ratio(prefill, case, bare),
                   decode_ms_per_step=statistics.median(decode[case]) * 1000,
                   decode_x_bare=paired_ratio(decode, case, bare))
    peft_mixed = f"PEFT adapter_names: {batch} adapters"
    ours_mixed = f"ours: {batch} characters, one each"
    result.notes += [
        f"decode, {batch} different characters: ours "
        f"x{paired_ratio(decode, ours_mixed, bare):.3f} of the bare base; PEFT adapter_names "
        f"x{paired_ratio(decode, peft_mixed, bare):.3f}; ours is "
        f"{paired_ratio(decode, peft_mixed, ours_mixed):.2f}x faster than PEFT",
        f"PEFT adapter_names rows equal ours (same weights): {agrees}",
        f"layer by layer against fp32 (largest error / largest value): ours "
        f"{errors['ours']:.1e}, PEFT {errors['peft']:.1e}",
    ]
    return result


def _check_peft(neeko, peft, ids: torch.Tensor, names: list[str]) -> bool:
    """PEFT's mixed-adapter batch gives our mixed batch's logits."""
    return same_logits(neeko(ids, gate=neeko.gate_for(names), logits_to_keep=1).logits,
                       peft(input_ids=ids, adapter_names=names, logits_to_keep=1).logits)

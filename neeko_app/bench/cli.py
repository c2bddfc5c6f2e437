"""`neeko bench`: run the benchmarks, print their tables, save JSON and a summary plot."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from neeko_app.bench import compiled_step, mixed_batch, scale, switching
from neeko_app.bench.plot import write_summary_plot
from neeko_app.bench.results import BenchResult

BENCHMARKS = ("switching", "mixed-batch", "scale", "compiled-step", "end-to-end")


def _model_options(args: argparse.Namespace) -> dict:
    options = {"shape": args.shape, "device": args.device or "auto",
               "dtype": args.dtype or "auto", "layers": args.layers}
    if args.rounds:
        options["rounds"] = args.rounds
    return options


def _runners(args: argparse.Namespace) -> dict[str, Callable[[], BenchResult]]:
    model = _model_options(args)
    batched = model | ({"batch": args.batch} if args.batch else {})
    quick = args.quick
    return {
        "switching": lambda: switching.run(switching.SwitchingOptions(
            **model, **({"ours_calls": 200, "peft_calls": 5, "slow_calls": 2} if quick else {}))),
        "mixed-batch": lambda: mixed_batch.run(mixed_batch.MixedBatchOptions(
            **batched, **({"decode_steps": 4, "prompt_tokens": 32} if quick else {}))),
        "scale": lambda: scale.run(scale.ScaleOptions(
            **batched, **({"counts": (8, 64, 256), "decode_steps": 2} if quick else {}))),
        "compiled-step": lambda: compiled_step.run(compiled_step.CompiledStepOptions(
            **batched, **({"decode_steps": 4, "prompt_tokens": 32} if quick else {}))),
        "end-to-end": lambda: _end_to_end(args),
    }


def _end_to_end(args: argparse.Namespace) -> BenchResult:
    """The app-level benchmark, imported only when asked for: it needs the whole app (Chroma,
    LangChain), which the model benchmarks on a bare GPU host do without."""
    from neeko_app.bench import end_to_end

    quick = {"replies": 1, "sessions": (1, 4), "expansion_steps": 3,
             "memory_sizes": (1_000, 10_000), "queries": 20} if args.quick else {}
    return end_to_end.run(end_to_end.EndToEndOptions(
        base_model=args.base_model or "embedded",
        device=args.device if args.device not in (None, "auto") else "cpu", **quick),
        report=lambda stage: print(f"  {stage} ...", flush=True))


def run_bench_command(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks in order; each prints its table as soon as it is done."""
    names = args.benchmarks or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    out = Path(args.out)
    runners = _runners(args)
    for name in names:
        print(f"== {name} ==", flush=True)
        result = runners[name]()
        print(result.report(), flush=True)
        print(f"saved {result.save(out)}\n", flush=True)
    device = "cuda" if (args.device or "").startswith("cuda") else "cpu"
    saved = {path.stem.rsplit("-", 1)[0]: json.loads(path.read_text())
             for path in sorted(out.glob(f"*-{device}.json"))}
    if saved:
        print(f"plot: {write_summary_plot(saved, out / f'summary-{device}.png')}")
    return 0

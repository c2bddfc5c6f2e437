"""Side-by-side timing: every case runs once per round, rounds interleave the cases, and a
case's figure is the median over rounds, so slow phases of a noisy machine hit all cases."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from tqdm import tqdm


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes (GPU work included)."""
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - started


def interleaved_samples(cases: dict[str, Callable[[], float]], rounds: int,
                        warmup: int = 1, label: str | None = None) -> dict[str, list[float]]:
    """What each call returns (seconds), per case, one call per case and round, the cases
    interleaved. With `label`, a progress bar (on stderr) counts the calls.

    Each case function measures itself and returns seconds, so it can leave set-up (a
    prefill before the timed decode steps, say) out of the figure."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    samples: dict[str, list[float]] = {name: [] for name in cases}
    with tqdm(total=(warmup + rounds) * len(cases), desc=label, unit="run",
              disable=label is None, leave=False) as bar:
        for done in range(warmup + rounds):
            for name, fn in cases.items():
                seconds = fn()
                if done >= warmup:
                    samples[name].append(seconds)
                bar.update()
    return samples


def interleaved(cases: dict[str, Callable[[], float]], rounds: int,
                warmup: int = 1) -> dict[str, float]:
    """The median over rounds of each case of `interleaved_samples`."""
    return {name: statistics.median(values)
            for name, values in interleaved_samples(cases, rounds, warmup).items()}


def paired_ratio(samples: dict[str, list[float]], case: str, reference: str) -> float:
    """The median over rounds of `case / reference` within each round: the two ran moments
    apart, so a slow phase of the machine cancels out of their ratio."""
    return statistics.median(a / b for a, b in zip(samples[case], samples[reference],
                                                   strict=True))


def medians_against(samples: dict[str, dict[str, list[float]]], reference: str,
                    ratio_label: str) -> list[dict]:
    """One row per configuration of `samples` (configuration -> case -> values, one per
    round): each case's median, its ratio to `reference`'s median as "<case> x
    <ratio_label>", and the median of the ratios within each round (`paired_ratio`) as
    "<case> x <ratio_label>, paired"."""
    rows = []
    for name, cases in samples.items():
        row: dict = {"configuration": name}
        for case, values in cases.items():
            row[case] = statistics.median(values)
            row[f"{case} x {ratio_label}"] = row[case] / statistics.median(samples[reference][case])
            row[f"{case} x {ratio_label}, paired"] = paired_ratio(
                {name: values, reference: samples[reference][case]}, name, reference)
        rows.append(row)
    return rows


def per_call(fn: Callable[[], object], calls: int, device: torch.device) -> Callable[[], float]:
    """A case function: the mean seconds of one call of `fn` over `calls` back-to-back calls."""
    def run() -> float:
        return timed(lambda: [fn() for _ in range(calls)], device) / calls
    return run


def percentile(values: list[float], share: float) -> float:
    """The `share` (0..1) percentile of `values`, by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

"""Benchmark 1, switching: how long until the next request plays another character.

Ours: choosing a block index (a one-row gate). PEFT, the usual way to serve LoRA
adapters: `set_adapter` between loaded adapters, `load_adapter` from disk, and merging
the adapter into the base weights (unmerge, switch, merge). After each kind of switch the
next forward pass is checked against ours for that character, so every method is timed
doing a switch that really takes effect.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from neeko_app.bench.peft_twin import export_adapters, peft_model, same_logits
from neeko_app.bench.results import BenchResult, machine
from neeko_app.bench.shapes import ModelOptions, bench_models, bench_settings
from neeko_app.bench.timing import interleaved, per_call

GOAL_MS = 0.05


@dataclass(frozen=True)
class SwitchingOptions(ModelOptions):
    characters: int = 8
    rounds: int = 5
    ours_calls: int = 2000  # switches timed back to back, per round: ours (microseconds)
    peft_calls: int = 20  # ... PEFT set_adapter (milliseconds)
    slow_calls: int = 3  # ... and the ones that touch weights


def run(options: SwitchingOptions = SwitchingOptions()) -> BenchResult:
    models = bench_models(options, options.characters, with_plain_twin=True)
    names, device, neeko = models.names, models.device, models.neeko
    probe = torch.randint(3, min(models.vocab_size, 5000), (1, 16), device=device)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        adapters = export_adapters(models, names, Path(tmp))
        peft = peft_model(models, adapters)
        cycle = itertools.cycle(names)
        loaded = itertools.count()
        state: dict[str, str | None] = {"merged": names[0], "fresh": None, "from": None}

        def ours() -> None:
            neeko.gate_for([next(cycle)])

        def set_adapter() -> None:
            peft.set_adapter(next(cycle))

        def load_adapter() -> None:  # a character not in memory yet: read it from disk
            name = next(cycle)
            fresh = f"disk{next(loaded)}"
            peft.load_adapter(adapters[name], adapter_name=fresh)
            peft.set_adapter(fresh)
            if state["fresh"]:
                peft.delete_adapter(state["fresh"])
            state["fresh"], state["from"] = fresh, name

        def merged() -> None:  # weights merged for speed: unmerge, switch, merge again
            peft.unmerge_adapter()
            name = next(cycle)
            peft.set_adapter(name)
            peft.merge_adapter()
            state["merged"] = name

        timings = interleaved({
            "ours: gate index": per_call(ours, options.ours_calls, device),
            "PEFT set_adapter": per_call(set_adapter, options.peft_calls, device),
        }, options.rounds)
        peft.set_adapter(names[0])
        peft.merge_adapter()
        timings |= interleaved({"PEFT unmerge + merge": per_call(merged, options.slow_calls,
                                                                 device)}, options.rounds)
        agrees: dict[str, bool | str] = {
            "PEFT unmerge + merge": _agrees(neeko, peft, probe, state["merged"])}
        peft.unmerge_adapter()
        timings |= interleaved({"PEFT load_adapter (disk)": per_call(
            load_adapter, options.slow_calls, device)}, options.rounds)
        agrees["PEFT load_adapter (disk)"] = _agrees(neeko, peft, probe, state["from"])
        agrees["PEFT set_adapter"] = all(_switched_and_agrees(neeko, peft, probe, name)
                                         for name in names[:2])
    agrees["ours: gate index"] = "reference"

    result = BenchResult("switching", "Switching characters: time until the next request "
                         "plays another one", bench_settings(options, models), machine(device))
    ours_ms = timings["ours: gate index"] * 1000
    for case, seconds in timings.items():
        result.add(method=case, ms_per_switch=seconds * 1000, x_ours=seconds * 1000 / ours_ms,
                   output_checked=agrees[case])
    verdict = "met" if ours_ms <= GOAL_MS else "missed"
    result.notes.append(f"goal: ours <= {GOAL_MS} ms per switch: {verdict} ({ours_ms:.4f} ms)")
    return result


def _switched_and_agrees(neeko, peft, probe: torch.Tensor, name: str) -> bool:
    peft.set_adapter(name)
    return _agrees(neeko, peft, probe, name)


def _agrees(neeko, peft, probe: torch.Tensor, name: str) -> bool:
    """PEFT's next forward pass after a switch to `name` gives our logits for `name`."""
    return same_logits(neeko(probe, gate=neeko.gate_for([name])).logits,
                       peft(input_ids=probe).logits)

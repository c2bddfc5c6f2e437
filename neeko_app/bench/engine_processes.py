"""Chat engines of several configurations timed each in a process of its own, in turn.

Engines in one process share libgomp's pools of OpenMP threads (`compute_threads`): every
scheduler that has computed keeps a pool, and all run slower once there are more pool
threads than cores. So here every round of every configuration runs in a fresh child
process (`python -m neeko_app.bench.engine_processes --child ...`), configurations in turn
within each round, and the parent computes nothing. A child starts its engine, warms it up
with one reply and one batch of eight, and measures the four cases of
`engine_comparison.measure_round` once.

A configuration is a mapping with `settings` (`Settings` fields by name), `decoding`
(`DecodingSettings` fields for all its replies), `plain_weights` (serve without the copies
laid out for oneDNN) and `start`: "app" starts as the app does (`build_engine`), "main
thread" loads and indexes in the main thread, as the app did before 2026-12-06.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from neeko_app.bench.end_to_end import sessions_at_once, timed_reply
from neeko_app.bench.engine_comparison import (
    CASES,
    LONG_REPLIES,
    QUESTIONS,
    measure_round,
    sampled_openers,
)
from neeko_app.bench.results import machine
from neeko_app.bench.timing import medians_against
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.startup import build_engine, load_engine
from neeko_app.config import Settings

STARTS = ("app", "main thread")


def start_engine(config: Mapping, scratch: Path) -> ChatEngine:
    """The chat engine of `config`, with its memory in `scratch` (indexed if need be)."""
    settings = Settings.from_env(memory_dir=scratch / "memory", sessions_dir=scratch / "sessions",
                                 **config.get("settings", {}))
    decoding = replace(LONG_REPLIES, **config.get("decoding", {}))
    start = config.get("start", "app")
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if start == "app":
        engine = build_engine(settings, decoding, report=lambda _: None)
    else:
        engine = load_engine(settings, decoding, True, lambda _: None, None)
    if config.get("plain_weights"):
        engine.runtime.model.prepack_weights(False)
    return engine


def openers_for(slugs: list[str]) -> list[tuple[str, str]]:
    """The stored held-out openers of those characters among `slugs` that have them; for
    a characters folder with none of them, the benchmark's questions to the first one."""
    return ([(slug, question) for slug, question in sampled_openers() if slug in slugs]
            or [(slugs[0], question) for question in QUESTIONS])


def child(config: Mapping, done: int, scratch: Path) -> dict[str, float]:
    """One round of `config` in this process: its cases by name."""
    engine = start_engine(config, scratch)
    try:
        slugs = sorted(engine.runtime.characters)
        timed_reply(engine, slugs[-1], QUESTIONS[-1], "warm-up")
        sessions_at_once(engine, 8)
        measured = measure_round(engine, done, slugs, openers_for(slugs),
                                 config.get("decoding", {}))
    finally:
        engine.close()
    return dict(zip(CASES, measured, strict=True))


def compare_engine_processes(configs: Mapping[str, Mapping], rounds: int,
                             ratio_label: str = "reference") -> dict:
    """Time every configuration (the first is the reference) for `rounds` rounds, each
    round of each in a fresh process; prints every measurement and returns medians with
    ratios to the reference (`bench.timing.medians_against`) and every sample."""
    scratch = Path(tempfile.mkdtemp(prefix="neeko-engine-processes-"))
    samples = {name: {case: [] for case in CASES} for name in configs}
    for done in range(rounds):
        for name, config in configs.items():
            run = subprocess.run(
                [sys.executable, "-m", "neeko_app.bench.engine_processes", "--child",
                 json.dumps(config), "--round", str(done), "--scratch", str(scratch)],
                capture_output=True, text=True)
            if run.returncode:
                raise RuntimeError(f"{name}, round {done} failed:\n{run.stderr[-3000:]}")
            measured = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"round {done} {name}: " + ", ".join(f"{measured[c]:.2f} {c}" for c in CASES),
                  flush=True)
            for case in CASES:
                samples[name][case].append(measured[case])
    rows = medians_against(samples, next(iter(configs)), ratio_label)
    for row in rows:
        print(row, flush=True)
    return {"machine": machine(torch.device("cpu")), "rounds": rounds,
            "reply_tokens": LONG_REPLIES.max_new_tokens, "configurations": dict(configs),
            "rows": rows, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description="one round of one configuration (a child "
                                                 "of compare_engine_processes)")
    parser.add_argument("--child", required=True, help="the configuration, as JSON")
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--scratch", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(child(json.loads(args.child), args.round, args.scratch)), flush=True)


if __name__ == "__main__":
    main()

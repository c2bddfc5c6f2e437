"""The same decode step in the main thread and in a thread of its own, as the scheduler runs.

    python reports/scheduler-thread-2026-12-05/thread_step.py [--dtype bfloat16] [--rounds 3]

Loads the embedded model with the shipped blocks and times one decode step (the layers
and the output head, batch 1, a 300-token prompt, one character's block; median of 20
steps) three ways, each in a child process of its own so that the OpenMP thread teams
start fresh:
- `main`: in the main thread, which also loaded the model (as a script or a notebook);
- `thread`: in a second thread after the main thread loaded the model and ran a step (as
  the chat app does: the scheduler's thread decodes, other threads embed and load);
- `thread-only`: in a second thread, the main thread having loaded the model with one
  torch thread, so that only the second thread ever runs a team of two.
Prints each child's medians per round and writes thread-step.json beside this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from neeko_app.bench.results import machine
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
PROMPT, STEPS = 300, 20
WAYS = ("main", "thread", "thread-only")


def step_ms(runtime, rounds: int) -> list[float]:
    """Median ms of a decode step of one character's row, per round."""
    from neeko_app.model.kv_cache import returned_cache, with_cache
    from neeko_app.moelora import Gate

    model, head = runtime.model, runtime.model.base_model.get_output_embeddings().weight
    ids = torch.randint(10, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    gate = Gate.from_rows([((0,), (1.0,))])
    medians = []
    with torch.no_grad():
        for _ in range(rounds):
            cache = returned_cache(model.hidden_states(ids, gate=gate, use_cache=True))
            times = []
            for k in range(STEPS):
                started = time.perf_counter()
                hidden = model.hidden_states(
                    torch.tensor([[5]]), gate=gate, use_cache=True,
                    position_ids=torch.tensor([[PROMPT + k]]), **with_cache(cache))
                torch.nn.functional.linear(hidden.last_hidden_state[:, -1], head)
                times.append(time.perf_counter() - started)
            medians.append(1000 * statistics.median(times))
    return medians


def child(way: str, dtype: str, rounds: int) -> None:
    """One way, in this process; prints its medians as JSON."""
    from neeko_app.config import Settings
    from neeko_app.runtime import load_runtime

    threads = torch.get_num_threads()
    if way == "thread-only":
        torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="neeko-thread-"))
    runtime = load_runtime(Settings.from_env(dtype=dtype, memory_dir=scratch / "memory",
                                             sessions_dir=scratch / "sessions"),
                           report=lambda _: None)
    result: list[float] = []
    if way == "main":
        result = step_ms(runtime, rounds)
    else:
        if way == "thread":
            step_ms(runtime, 1)  # the main thread has computed too, as in the app

        def work() -> None:
            torch.set_num_threads(threads)
            result.extend(step_ms(runtime, rounds))

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=WAYS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dtype, args.rounds)
        return
    rows = {}
    for way in WAYS:
        run = subprocess.run([sys.executable, __file__, "--child", way, "--dtype", args.dtype,
                              "--rounds", str(args.rounds)], capture_output=True, text=True,
                             check=True)
        rows[way] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{way}: {', '.join(f'{ms:.1f}' for ms in rows[way])} ms a step", flush=True)
    main_ms = statistics.median(rows["main"])
    summary = {way: {"ms": statistics.median(ms), "x main": statistics.median(ms) / main_ms}
               for way, ms in rows.items()}
    print(summary)
    atomic_write_json(HERE / f"thread-step-{args.dtype}.json", {
        "machine": machine(torch.device("cpu")), "dtype": args.dtype, "rounds": rows,
        "summary": summary})


if __name__ == "__main__":
    main()

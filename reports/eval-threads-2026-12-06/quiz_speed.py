"""How long an evaluation's replies take when the evaluating thread keeps its pool of OpenMP
workers beside the scheduler's (as evaluations ran before), and when it gives the pool back
and waits on one core (`evaluation.scheduling.evaluation_scheduler`), side by side in one
process.

    python reports/eval-threads-2026-12-06/quiz_speed.py [--rounds 3] [--per-character 8] \
        > quiz-speed.txt

The embedded model with the shipped blocks (as `neeko quiz` loads them), the first
`--per-character` quiz questions of every character answered by the blocks system, greedy
as the quiz decodes, batches of 8. Before every round the main thread computes on every
core, so both ways start with its pool alive, as after loading; the two ways alternate.
Prints seconds per round, the ratio of medians, and whether the replies are the same.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from neeko_app.compute_threads import while_another_decodes
from neeko_app.config import Settings
from neeko_app.evaluation import heldout, scheduling
from neeko_app.evaluation.quiz import GREEDY, character_quiz
from neeko_app.evaluation.systems import system_request
from neeko_app.runtime import load_runtime

WAYS = {"caller keeps its pool (before)": nullcontext,  # the scheduler started as before
        "caller gives it back, one core (now)": while_another_decodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-character", type=int, default=8)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env(), report=lambda _: None)
    requests = [system_request("blocks", runtime, character, [], question.question, None,
                               GREEDY)[1]
                for character in runtime.characters.values() if character.slug
                in runtime.model.block_names
                for question in character_quiz(character)[:args.per_character]]
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    replies: dict[str, list[str]] = {}
    print(f"{len(requests)} quiz questions, {torch.get_num_threads()} cores, "
          f"{runtime.base.dtype}", flush=True)
    for round_ in range(args.rounds):
        for way, waiting in WAYS.items():
            matrix = torch.randn(1024, 1024)
            (matrix @ matrix).sum()  # the main thread's pool is alive, as after loading
            scheduling.while_another_decodes = waiting  # how evaluation_scheduler waits
            started = time.perf_counter()
            replies[way] = heldout.generated_replies(runtime, requests, batch_size=8)[0]
            seconds[way].append(time.perf_counter() - started)
            print(f"round {round_ + 1}, {way}: {seconds[way][-1]:.1f} s", flush=True)
    before, now = (statistics.median(s) for s in seconds.values())
    print(f"\nmedian seconds: before {before:.1f}, now {now:.1f}; before / now = "
          f"{before / now:.2f}")
    print("same replies both ways:", len(set(map(tuple, replies.values()))) == 1)


if __name__ == "__main__":
    main()

"""How long a user waits for a whole reply: one sentence (the default) against no limit.

    python reports/reply-length-2026-12-05/reply_time.py [--rounds 3]

The chat engine on the embedded model with memory, one session at a time, the held-out
openers of `openers-sampled.json` (35 questions, the app's sampling, seed k for question
k). Each round asks every question once with each setting, the two alternating, and
prints the median seconds to the whole reply and their ratio, per round and over all.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from neeko_app.bench.end_to_end import whole_reply_seconds
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.runtime import load_runtime

HERE = Path(__file__).parent
SETTINGS = {"one sentence": 1, "no limit": 0}


def summary(times: dict[str, list[float]]) -> str:
    """Median seconds per setting, and no limit over one sentence."""
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["no limit"] / medians["one sentence"]
    return ", ".join(f"{name} {s:.2f} s" for name, s in medians.items()) + f"; ×{ratio:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    questions = [(a["character"], a["question"]) for a in
                 json.loads((HERE / "openers-sampled.json").read_text())["answers"]]
    runtime = load_runtime(Settings.from_env(), report=lambda _: None)
    slugs = sorted({slug for slug, _ in questions})
    with scratch_knowledge([runtime.character(s) for s in slugs]) as memory:
        engine = ChatEngine(runtime, memory)
        try:
            whole_reply_seconds(engine, *questions[0], engine.decoding)  # warm-up
            times: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for round_ in range(args.rounds):
                this_round: dict[str, list[float]] = {name: [] for name in SETTINGS}
                for k, (slug, question) in enumerate(questions):
                    for name, limit in SETTINGS.items():
                        decoding = DecodingSettings(seed=k, max_sentences=limit)
                        this_round[name].append(
                            whole_reply_seconds(engine, slug, question, decoding))
                print(f"round {round_ + 1}: {summary(this_round)}")
                for name in SETTINGS:
                    times[name] += this_round[name]
        finally:
            engine.close()
    print(f"all rounds: {summary(times)}")


if __name__ == "__main__":
    main()

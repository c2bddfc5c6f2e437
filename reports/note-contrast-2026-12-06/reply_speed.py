"""What the note contrast costs a user: seconds to the whole reply, with and without it,
side by side in one process.

    python reports/note-contrast-2026-12-06/reply_speed.py A [--rounds 5] > reply-speed.txt

One chat engine on the embedded model with the shipped blocks and memory (the app's
defaults: bfloat16 where the CPU multiplies it, a single character's block merged). Per
round, each case in turn: the median seconds to the whole one-sentence reply over 14
held-out openers (`bench.engine_comparison.default_reply_seconds`, seed k for opener k),
the seconds per token of one 64-token reply without a sentence limit, and of eight such
sessions at once (each another character); note contrast 0 against `A`. Round 0 warms
up. Writes reply-speed.json beside this script.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from neeko_app.bench.end_to_end import QUESTIONS, sessions_at_once, timed_reply
from neeko_app.bench.engine_comparison import default_reply_seconds, sampled_openers
from neeko_app.bench.results import machine
from neeko_app.bench.timing import interleaved_samples, paired_ratio
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weight", type=float)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="neeko-contrast-"))
    memory = MemoryStore.open(scratch / "memory")
    settings = Settings.from_env(memory_dir=scratch / "memory", sessions_dir=scratch / "s")
    runtime = load_runtime(settings)
    index_characters(memory, runtime.characters.values())
    asked = sampled_openers()
    engines = {weight: ChatEngine(runtime, memory, DecodingSettings(note_contrast=weight))
               for weight in (0.0, args.weight)}
    long_replies = DecodingSettings(max_new_tokens=64, seed=0, max_sentences=0)

    def whole(weight: float) -> float:
        return default_reply_seconds(engines[weight], asked)

    def per_token(sessions: int) -> Callable[[float], float]:
        def seconds(weight: float) -> float:
            engine = engines[weight]
            engine.decoding = replace(long_replies, note_contrast=weight)
            try:
                if sessions == 1:
                    return 1 / timed_reply(engine, "caesar", QUESTIONS[0], "speed")[1]
                return 1 / sessions_at_once(engine, sessions)
            finally:
                engine.decoding = DecodingSettings(note_contrast=weight)
        return seconds

    kinds = {"whole reply s": whole, "s per token": per_token(1),
             "8 sessions s per token": per_token(8)}
    cases = {f"{kind} contrast {w:g}": (lambda fn=fn, w=w: fn(w))
             for kind, fn in kinds.items() for w in engines}
    samples = interleaved_samples(cases, args.rounds, label="rounds")
    for name, values in samples.items():
        print(f"{name}: median {statistics.median(values):.3f} ({values})")
    ratios = {kind: paired_ratio(samples, f"{kind} contrast {args.weight:g}", f"{kind} contrast 0")
              for kind in kinds}
    print({kind: round(value, 3) for kind, value in ratios.items()})
    for engine in engines.values():
        engine.close()
    atomic_write_json(Path(__file__).parent / "reply-speed.json", {
        "machine": machine(runtime.base.device), "rounds": args.rounds, "weight": args.weight,
        "samples": samples, "paired_ratios": ratios})


if __name__ == "__main__":
    main()

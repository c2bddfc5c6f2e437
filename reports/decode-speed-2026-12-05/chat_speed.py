"""Chat decode speed on the embedded model, per dtype and decode mode, side by side.

    python reports/decode-speed-2026-12-05/chat_speed.py [--rounds 3] [--tokens 64]

For each configuration (float32/bfloat16 x eager/compiled) one runtime and chat engine are
loaded; a warm-up round compiles what needs compiling, then the rounds interleave the
configurations. A round asks one session alone (tokens/s after the first token) and eight
sessions at once, each its own character (all tokens / wall time). Prints medians and
ratios to today's default (float32, eager) and writes chat-speed.json beside this script.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from neeko_app.bench.end_to_end import QUESTIONS, sessions_at_once, timed_reply
from neeko_app.bench.results import machine
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
CONFIGS = [("float32", "eager"), ("float32", "compiled"), ("bfloat16", "eager"),
           ("bfloat16", "compiled")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="neeko-speed-"))
    decoding = DecodingSettings(max_new_tokens=args.tokens, seed=0, max_sentences=0)
    engines = {}
    memory = MemoryStore.open(scratch / "memory")
    for dtype, decode in CONFIGS:
        settings = Settings.from_env(dtype=dtype, decode=decode, memory_dir=scratch / "memory",
                                     sessions_dir=scratch / "sessions")
        runtime = load_runtime(settings, report=lambda _: None)
        engines[(dtype, decode)] = ChatEngine(runtime, memory, decoding)
    index_characters(memory, engines[CONFIGS[0]].runtime.characters.values())
    slugs = sorted(engines[CONFIGS[0]].runtime.characters)
    samples: dict[tuple[str, str], dict[str, list[float]]] = {
        c: {"one session": [], "8 sessions": []} for c in CONFIGS}
    for done in range(args.rounds + 1):  # round 0 warms up (and compiles)
        for config, engine in engines.items():
            started = time.perf_counter()
            one = timed_reply(engine, slugs[done % len(slugs)], QUESTIONS[done % len(QUESTIONS)],
                              f"speed-{time.time()}")[1]
            eight = sessions_at_once(engine, 8)
            print(f"round {done} {config}: {one:.1f} tok/s alone, {eight:.1f} tok/s x8 "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
            if done:
                samples[config]["one session"].append(one)
                samples[config]["8 sessions"].append(eight)
    rows = []
    for config in CONFIGS:
        row = {"dtype": config[0], "decode": config[1]}
        for case in ("one session", "8 sessions"):
            value = statistics.median(samples[config][case])
            today = statistics.median(samples[CONFIGS[0]][case])
            row[f"{case} tokens/s"] = value
            row[f"{case} x today"] = value / today
        rows.append(row)
        print(row, flush=True)
    for engine in engines.values():
        engine.close()
    atomic_write_json(HERE / "chat-speed.json", {
        "machine": machine(engines[CONFIGS[0]].runtime.base.device), "rounds": args.rounds,
        "reply_tokens": args.tokens, "rows": rows,
        "samples": {f"{d}/{m}": s for (d, m), s in samples.items()}})


if __name__ == "__main__":
    main()

"""Chat speed with the output head narrowed to the tokens the script guard allows.

    python reports/output-head-2026-12-05/chat_speed.py [--rounds 3] [--tokens 64]

Four chat engines on the embedded model and the shipped blocks, side by side in one
process: today's default (float32, eager, the whole head every step), the same with the
narrowed head, and bfloat16 eager and compiled with it. Round 0 warms up (and compiles);
each later round asks one session alone (time to first token, tokens/s after it) and eight
sessions at once, each its own character (all tokens / wall time). Prints medians and
ratios to today's default and writes chat-speed.json beside this script.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from neeko_app.bench.end_to_end import QUESTIONS, sessions_at_once, timed_reply
from neeko_app.bench.results import machine
from neeko_app.bench.timing import medians_against
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
CONFIGS = {  # name: (dtype, decode, narrowed head)
    "float32 eager, whole head (today)": ("float32", "eager", False),
    "float32 eager, narrowed head": ("float32", "eager", True),
    "bfloat16 eager, narrowed head": ("bfloat16", "eager", True),
    "bfloat16 compiled, narrowed head": ("bfloat16", "compiled", True),
}
CASES = ("first token s", "one session tokens/s", "8 sessions tokens/s")


def engine_for(dtype: str, decode: str, narrowed: bool, memory: MemoryStore, scratch: Path,
               decoding: DecodingSettings) -> ChatEngine:
    settings = Settings.from_env(dtype=dtype, decode=decode, memory_dir=scratch / "memory",
                                 sessions_dir=scratch / "sessions")
    engine = ChatEngine(load_runtime(settings, report=lambda _: None), memory, decoding)
    if not narrowed:
        engine.scheduler.head.narrow_at_most = 0.0
    return engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="neeko-head-"))
    decoding = DecodingSettings(max_new_tokens=args.tokens, seed=0, max_sentences=0)
    memory = MemoryStore.open(scratch / "memory")
    engines = {name: engine_for(*config, memory, scratch, decoding)
               for name, config in CONFIGS.items()}
    today = next(iter(engines))
    index_characters(memory, engines[today].runtime.characters.values())
    slugs = sorted(engines[today].runtime.characters)
    samples: dict[str, dict[str, list[float]]] = {name: {c: [] for c in CASES}
                                                   for name in engines}
    for done in range(args.rounds + 1):
        for name, engine in engines.items():
            question = QUESTIONS[done % len(QUESTIONS)]
            measured = (*timed_reply(engine, slugs[done % len(slugs)], question,
                                     f"speed-{time.time()}"), sessions_at_once(engine, 8))
            print(f"round {done} {name}: " + ", ".join(f"{v:.2f} {c}" for c, v in
                                                      zip(CASES, measured, strict=True)),
                  flush=True)
            if done:
                for case, value in zip(CASES, measured, strict=True):
                    samples[name][case].append(value)
    rows = medians_against(samples, today, "today")
    for row in rows:
        print(row, flush=True)
    for engine in engines.values():
        engine.close()
    atomic_write_json(HERE / "chat-speed.json", {
        "machine": machine(engines[today].runtime.base.device), "rounds": args.rounds,
        "reply_tokens": args.tokens, "rows": rows, "samples": samples})


if __name__ == "__main__":
    main()

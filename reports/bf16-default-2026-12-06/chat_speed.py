"""Chat speed with the new "auto" dtype (bfloat16 on a CPU that multiplies it natively)
against float32, side by side in one process.

    python reports/bf16-default-2026-12-06/chat_speed.py [--rounds 3] > chat-speed.txt

Three chat engines on the embedded model, the shipped blocks and memory: float32 eager (the
CPU default until 2026-12-06), "auto" (today's default; bfloat16 eager on this CPU) and
bfloat16 with the compiled step. Round 0 warms up (and compiles). Each later round, per
engine in turn: time to the first token and tokens/s after it for one session (64-token
replies, no sentence limit, as `neeko bench end-to-end`), tokens/s of eight sessions at once
(each its own character), and the median seconds to the whole reply at the app's defaults
(one sentence, sampled) over 14 held-out openers. Prints medians and ratios to float32 and
writes chat-speed.json beside this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from neeko_app.bench.end_to_end import (
    QUESTIONS,
    sessions_at_once,
    timed_reply,
    whole_reply_seconds,
)
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
OPENERS = HERE.parent / "reply-length-2026-12-05" / "openers-sampled.json"
CONFIGS = {  # name: (dtype, decode)
    "float32 eager (before)": ("float32", "eager"),
    "auto eager (default)": ("auto", "eager"),
    "bfloat16 compiled": ("bfloat16", "compiled"),
}
CASES = ("first token s", "one session tokens/s", "8 sessions tokens/s",
         "whole default reply s")


def openers() -> list[tuple[str, str]]:
    """Two held-out openers a character (the first two of each in the stored sample)."""
    answers = json.loads(OPENERS.read_text())["answers"]
    chosen: dict[str, list[str]] = {}
    for answer in answers:
        chosen.setdefault(answer["character"], [])
        if len(chosen[answer["character"]]) < 2:
            chosen[answer["character"]].append(answer["question"])
    return [(slug, q) for slug, questions in sorted(chosen.items()) for q in questions]


def default_reply_seconds(engine: ChatEngine, asked: list[tuple[str, str]]) -> float:
    """Median seconds to the whole reply at the app's defaults, seed k for opener k."""
    return statistics.median(whole_reply_seconds(engine, slug, question, DecodingSettings(seed=k))
                             for k, (slug, question) in enumerate(asked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="neeko-bf16-"))
    memory = MemoryStore.open(scratch / "memory")
    long_replies = DecodingSettings(max_new_tokens=64, seed=0, max_sentences=0)
    engines = {}
    for name, (dtype, decode) in CONFIGS.items():
        settings = Settings.from_env(dtype=dtype, decode=decode, memory_dir=scratch / "memory",
                                     sessions_dir=scratch / "sessions")
        engines[name] = ChatEngine(load_runtime(settings, report=lambda _: None), memory,
                                   long_replies)
    before = next(iter(engines))
    index_characters(memory, engines[before].runtime.characters.values())
    slugs, asked = sorted(engines[before].runtime.characters), openers()
    samples = {name: {case: [] for case in CASES} for name in engines}
    for done in range(args.rounds + 1):
        for name, engine in engines.items():
            question = QUESTIONS[done % len(QUESTIONS)]
            measured = (*timed_reply(engine, slugs[done % len(slugs)], question,
                                     f"speed-{time.time()}"),
                        sessions_at_once(engine, 8), default_reply_seconds(engine, asked))
            print(f"round {done} {name} ({engine.runtime.base.dtype}): " + ", ".join(
                f"{v:.2f} {c}" for c, v in zip(CASES, measured, strict=True)), flush=True)
            if done:
                for case, value in zip(CASES, measured, strict=True):
                    samples[name][case].append(value)
    rows = medians_against(samples, before, "before")
    for row in rows:
        row["dtype"] = str(engines[row["configuration"]].runtime.base.dtype)
        print(row, flush=True)
    for engine in engines.values():
        engine.close()
    atomic_write_json(HERE / "chat-speed.json", {
        "machine": machine(engines[before].runtime.base.device), "rounds": args.rounds,
        "reply_tokens": long_replies.max_new_tokens, "rows": rows, "samples": samples})


if __name__ == "__main__":
    main()

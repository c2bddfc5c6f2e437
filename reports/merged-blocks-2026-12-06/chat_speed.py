"""Chat speed with a single character's block merged into the weights (`decode = "merged"`)
against the fused gate, side by side in one process.

    python reports/merged-blocks-2026-12-06/chat_speed.py [--rounds 3] > chat-speed.txt

Four chat engines on the embedded model, the shipped blocks and memory: float32 eager (the
CPU default until 2026-12-06, the reference), "auto" eager (bfloat16 on this CPU, the
default until this change), "auto" merged (the default now) and float32 merged (what a CPU
without native bfloat16 now runs). Round 0 warms up. Each later round, per engine in turn
(`bench.engine_comparison`): first token and tokens/s of one session (64-token replies, no
sentence limit, as `neeko bench end-to-end`), tokens/s of eight sessions at once (each its
own character), and the median seconds to the whole reply at the app's defaults over 14
held-out openers. Writes chat-speed.json beside this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neeko_app.bench.engine_comparison import compare_engines
from neeko_app.storage import atomic_write_json

CONFIGS = {
    "float32 eager": {"dtype": "float32", "decode": "eager"},
    "auto eager (default before)": {"dtype": "auto", "decode": "eager"},
    "auto merged (default now)": {"dtype": "auto", "decode": "merged"},
    "float32 merged": {"dtype": "float32", "decode": "merged"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    measured = compare_engines(CONFIGS, args.rounds, ratio_label="float32 eager")
    atomic_write_json(Path(__file__).parent / "chat-speed.json", measured)


if __name__ == "__main__":
    main()

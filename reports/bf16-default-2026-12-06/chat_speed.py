"""Chat speed with the new "auto" dtype (bfloat16 on a CPU that multiplies it natively)
against float32, side by side in one process.

    python reports/bf16-default-2026-12-06/chat_speed.py [--rounds 3] > chat-speed.txt

Three chat engines on the embedded model, the shipped blocks and memory: float32 eager (the
CPU default until 2026-12-06), "auto" (that day's default; bfloat16 eager on this CPU) and
bfloat16 with the compiled step. Round 0 warms up (and compiles). Each later round, per
engine in turn: time to the first token and tokens/s after it for one session (64-token
replies, no sentence limit, as `neeko bench end-to-end`), tokens/s of eight sessions at once
(each its own character), and the median seconds to the whole reply at the app's defaults
(one sentence, sampled) over 14 held-out openers (`bench.engine_comparison`). Prints
medians and ratios to float32 and writes chat-speed.json beside this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neeko_app.bench.engine_comparison import compare_engines
from neeko_app.storage import atomic_write_json

CONFIGS = {
    "float32 eager (before)": {"dtype": "float32", "decode": "eager"},
    "auto eager (default)": {"dtype": "auto", "decode": "eager"},
    "bfloat16 compiled": {"dtype": "bfloat16", "decode": "compiled"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    measured = compare_engines(CONFIGS, args.rounds, ratio_label="before")
    atomic_write_json(Path(__file__).parent / "chat-speed.json", measured)


if __name__ == "__main__":
    main()

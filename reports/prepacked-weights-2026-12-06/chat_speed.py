"""Chat speed with the serving weights laid out for oneDNN (`model.prepacked`) against plain
weights, side by side in one process.

    python reports/prepacked-weights-2026-12-06/chat_speed.py [--rounds 4] > chat-speed.txt

Five chat engines on the embedded model, the shipped blocks and memory: the app as it was
when issue 25 was filed (float32 eager, plain weights, no note contrast: the reference),
bfloat16 merged with plain weights (the default until this change), bfloat16 merged
prepacked (the default now), and float32 merged plain and prepacked (what a CPU without
native bfloat16 runs, before and now). All but the reference run the app's other defaults
(the note contrast, the tuned knowledge encoder). Round 0 warms up. Each later round, per
engine in turn (`bench.engine_comparison`): first token and tokens/s of one session
(64-token replies, no sentence limit), tokens/s of eight sessions at once (each its own
character), and the median seconds to the whole reply at the app's defaults over 14
held-out openers. Writes chat-speed.json beside this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neeko_app.bench.engine_comparison import compare_engines
from neeko_app.runtime import Runtime
from neeko_app.storage import atomic_write_json

REFERENCE = "float32 eager, no note contrast (issue 25's day)"
CONFIGS = {
    REFERENCE: {"dtype": "float32", "decode": "eager"},
    "bfloat16 merged, plain (default before)": {"dtype": "auto", "decode": "merged"},
    "bfloat16 merged, prepacked (default now)": {"dtype": "auto", "decode": "merged"},
    "float32 merged, plain": {"dtype": "float32", "decode": "merged"},
    "float32 merged, prepacked": {"dtype": "float32", "decode": "merged"},
}


def plain_weights(runtime: Runtime) -> None:
    runtime.model.prepack_weights(False)


PREPARE = {REFERENCE: plain_weights,
           "bfloat16 merged, plain (default before)": plain_weights,
           "float32 merged, plain": plain_weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    measured = compare_engines(CONFIGS, args.rounds, ratio_label="issue 25's day",
                               prepare=PREPARE, decoding={REFERENCE: {"note_contrast": 0.0}})
    atomic_write_json(Path(__file__).parent / "chat-speed.json", measured)


if __name__ == "__main__":
    main()

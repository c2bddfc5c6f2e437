"""Chat speed when only the scheduler's thread computes on every core (`compute_threads`),
against the app as it started before, each round of each configuration in a process of
its own (`bench.engine_processes`).

    python reports/one-team-2026-12-06/chat_speed.py [--rounds 4] [--out chat-speed.json] \
        > chat-speed.txt

Three configurations on the embedded model, the shipped blocks and memory:
- the app when issue 25 was filed (the reference): float32, eager, plain weights, no note
  contrast, loaded and indexed in the main thread;
- this morning's default (bfloat16 merged, prepacked, the note contrast), loaded and
  indexed in the main thread, so that the main thread's pool of OpenMP threads lives beside
  the scheduler's;
- the same default started as the app now starts (`chat.startup.build_engine`): loading and
  indexing on every core in a thread that ends, the scheduler's thread the only team.
Per round and configuration: first token and tokens/s of one session (64-token replies),
tokens/s of eight sessions at once, and the median seconds to the whole reply at the app's
defaults over 14 held-out openers. Writes the JSON (`--out`) beside this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neeko_app.bench.engine_processes import compare_engine_processes
from neeko_app.storage import atomic_write_json

REFERENCE = "float32 eager, no note contrast, main thread (issue 25's day)"
CONFIGS = {
    REFERENCE: {"settings": {"dtype": "float32", "decode": "eager"},
                "decoding": {"note_contrast": 0.0}, "plain_weights": True,
                "start": "main thread"},
    "bfloat16 merged prepacked, main thread (this morning)": {"start": "main thread"},
    "bfloat16 merged prepacked, one team (now)": {"start": "app"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default="chat-speed.json", help="file name, beside this script")
    args = parser.parse_args()
    measured = compare_engine_processes(CONFIGS, args.rounds, ratio_label="issue 25's day")
    atomic_write_json(Path(__file__).parent / args.out, measured)


if __name__ == "__main__":
    main()

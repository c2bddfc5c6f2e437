"""The character's block at a weight below 1 when notes are in the prompt: does the base
model's own reading of the notes, mixed back in, answer the quiz better?

    python reports/block-weight-2026-12-06/block_weight.py W [W ...] --out-dir DIR

The greedy quiz, blocks + memory, all characters, one-sentence replies as the app gives
them, with each character's own block at weight `W` (1: the app; 0: the bare base model
with the same notes). The change lives in this script only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.evaluation import systems
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.evaluation.quiz import format_quiz_report
from neeko_app.moelora import Gate
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=float, nargs="+")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    own_gate = systems.system_gate
    runtime = load_runtime(Settings.from_env())
    for weight in args.weights:
        def scaled_gate(system, runtime, character, weight=weight):
            gate = own_gate(system, runtime, character)
            return None if gate is None else Gate(gate.indices, gate.weights * weight)

        systems.system_gate = scaled_gate
        report = quiz_with_bars(runtime, sorted(runtime.characters), [SYSTEM],
                                heldout_decoding(False, None, 0), f"w{weight:g}")
        print(f"block weight {weight:g}\n{format_quiz_report(report)}", flush=True)
        atomic_write_json(args.out_dir / f"quiz-weight-{weight:g}.json", report.to_dict())


if __name__ == "__main__":
    main()

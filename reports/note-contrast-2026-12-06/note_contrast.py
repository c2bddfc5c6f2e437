"""Decoding against the prompt without its notes: does weighing the logits with the fact
notes against those without them make the blocks name what the notes say?

    python reports/note-contrast-2026-12-06/note_contrast.py A [A ...] --out-dir DIR

The greedy quiz, blocks + memory, all characters, one-sentence replies as the app gives
them, with `note_contrast` = A (0: the app before this experiment).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.evaluation.quiz import format_quiz_report
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=float, nargs="+")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env())
    for weight in args.weights:
        decoding = replace(heldout_decoding(False, None, 0), note_contrast=weight)
        report = quiz_with_bars(runtime, sorted(runtime.characters), [SYSTEM], decoding,
                                f"contrast{weight:g}")
        print(f"note contrast {weight:g}\n{format_quiz_report(report)}", flush=True)
        atomic_write_json(args.out_dir / f"quiz-contrast-{weight:g}.json", report.to_dict())


if __name__ == "__main__":
    main()

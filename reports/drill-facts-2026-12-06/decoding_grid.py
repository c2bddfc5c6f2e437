"""The fact quiz of drilled blocks under other memory-decoding settings: does a block that
knows its facts still want the note contrast and the note-copy bias tuned for blocks that
did not?

    python reports/drill-facts-2026-12-06/decoding_grid.py newton --contrast 0 0.5 \
        --copy-bias 0 2 --out-dir DIR

The greedy quiz as `neeko quiz` puts it (one-sentence replies), blocks + memory, once for
each pair of `note_contrast` and `copy_bias`; writes DIR/quiz-contrast-A-copy-B.json.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from itertools import product
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("characters", nargs="+")
    parser.add_argument("--contrast", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--copy-bias", type=float, nargs="+", default=[0.0, 2.0])
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env())
    for contrast, copy in product(args.contrast, args.copy_bias):
        decoding = replace(heldout_decoding(False, None, 0), note_contrast=contrast,
                           copy_bias=copy)
        report = quiz_with_bars(runtime, args.characters, [SYSTEM], decoding)
        print(f"note contrast {contrast:g}, copy bias {copy:g}: {report.accuracy(SYSTEM):.3f}",
              flush=True)
        atomic_write_json(args.out_dir / f"quiz-contrast-{contrast:g}-copy-{copy:g}.json",
                          report.to_dict())


if __name__ == "__main__":
    main()

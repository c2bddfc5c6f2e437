"""The blocks' sampled held-out replies with the script guard off and on, same seeds.

    python reports/script-guard-2026-12-03/paired_seeds.py SEED OUT_DIR

Writes OUT_DIR/sampled-seedSEED-guard-{off,on}.json (`neeko eval-heldout --systems blocks
--limit 20 --batch-size 16 --no-perplexity --sample --seed SEED`, guard off, then on).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.heldout import HeldoutOptions, run_heldout_evaluation
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json


def main(seed: int, out: Path) -> None:
    runtime = load_runtime(Settings.from_env())
    for guard in (False, True):
        decoding = replace(heldout_decoding(True, None, seed, max_sentences=0),
                           script_guard=guard)
        options = HeldoutOptions(limit=20, batch_size=16, perplexity=False, systems=("blocks",),
                                 decoding=decoding)
        report = run_heldout_evaluation(runtime, list(runtime.model.block_names), options)
        path = out / f"sampled-seed{seed}-guard-{'on' if guard else 'off'}.json"
        atomic_write_json(path, report.to_dict())
        print(path, report.accuracy("blocks"), f"{report.seconds:.0f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))

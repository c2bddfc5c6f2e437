"""How likely each block thinks its turn ends where the held-out reply really ends.

    python reports/heldout-caesar-batch-2026-12-02/turn_end_probability.py [CHARACTERS_DIR]

For the first 24 held-out conversations of each character: the probability the character's
own block gives the end-of-turn token right after each written reply (median and mean).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.evaluation.turn_end import turn_end_chances
from neeko_app.runtime import load_runtime
from neeko_app.training.data import load_dialogues


def main(characters_dir: Path) -> None:
    runtime = load_runtime(Settings(characters_dir=characters_dir))
    for slug in sorted(runtime.model.block_names):
        character = runtime.character(slug)
        conversations = load_dialogues(character.folder / "heldout.jsonl")[:24]
        chances = turn_end_chances(runtime, character, conversations)
        print(f"{slug}: median {statistics.median(chances):.3f}, "
              f"mean {statistics.mean(chances):.3f} over {len(chances)} turn ends")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "characters"))

"""What the note contrast costs the prepacked default in chat speed, side by side.

    python reports/prepacked-weights-2026-12-06/contrast_cost.py [--rounds 3] > contrast-cost.txt

Three chat engines (`bench.engine_comparison`), as in chat_speed.py: the app when issue 25
was filed (the reference), the default now, and the default now without the note contrast
(`note_contrast` 0: one row per session). Writes contrast-cost.json beside this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neeko_app.bench.engine_comparison import compare_engines
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import chat_speed  # noqa: E402

NOW = "bfloat16 merged, prepacked (default now)"
WITHOUT = "default now, no note contrast"
CONFIGS = {chat_speed.REFERENCE: chat_speed.CONFIGS[chat_speed.REFERENCE],
           NOW: chat_speed.CONFIGS[NOW], WITHOUT: chat_speed.CONFIGS[NOW]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    no_contrast = {"note_contrast": 0.0}
    measured = compare_engines(CONFIGS, args.rounds, ratio_label="issue 25's day",
                               prepare={chat_speed.REFERENCE: chat_speed.plain_weights},
                               decoding={chat_speed.REFERENCE: no_contrast,
                                         WITHOUT: no_contrast})
    atomic_write_json(HERE / "contrast-cost.json", measured)


if __name__ == "__main__":
    main()

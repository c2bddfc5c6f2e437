"""Side by side: the same held-out questions and seeds, before and after the script guard.

    python reports/script-guard-2026-12-03/compare.py BEFORE.json AFTER.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neeko_app.chat.writing_systems import writing_systems


def foreign(reply: str) -> bool:
    return bool(writing_systems(reply) - {"LATIN"})


def main(before_path: str, after_path: str) -> None:
    before, after = (json.loads(Path(path).read_text()) for path in (before_path, after_path))
    print("| system | replies | identical | with other scripts, before / after "
          "| role-ID before / after | ended their turn before / after |")
    print("| --- | --- | --- | --- | --- | --- |")
    for system in sorted({a["system"] for a in after["answers"]}):
        old = [a for a in before["answers"] if a["system"] == system]
        new = [a for a in after["answers"] if a["system"] == system]
        assert [a["question"] for a in old] == [a["question"] for a in new], system
        same = sum(a["reply"] == b["reply"] for a, b in zip(old, new, strict=True))
        print(f"| {system} | {len(new)} | {same} | {sum(foreign(a['reply']) for a in old)} / "
              f"{sum(foreign(a['reply']) for a in new)} | "
              f"{before['role_identification'][system]['overall']:.2f} / "
              f"{after['role_identification'][system]['overall']:.2f} | "
              f"{before['ended_turn_rate'][system]:.2f} / {after['ended_turn_rate'][system]:.2f} |")
    systems = {a["system"] for a in after["answers"]}
    paired = zip((a for a in before["answers"] if a["system"] in systems), after["answers"],
                 strict=True)
    for a, b in paired:
        if foreign(a["reply"]):
            print(f"\n{a['character']} ({a['system']}), {a['question']!r}\n  before: {a['reply']}"
                  f"\n  after:  {b['reply']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

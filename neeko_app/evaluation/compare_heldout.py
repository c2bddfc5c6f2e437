"""Two `neeko eval-heldout` reports of the same questions side by side: a decoding change's
before and after.

    python -m neeko_app.evaluation.compare_heldout BEFORE.json AFTER.json

Prints a Markdown table per system (replies, how many stayed identical, how many hold letters
of a writing system other than Latin, role identification and the share that ended their
turn, before / after), then every reply that had another script's letters before, with its
reply after. Made for the script guard (reports/script-guard-2026-12-03/); any two runs
of the same questions with the same seeds compare this way.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from neeko_app.chat.writing_systems import writing_systems


def foreign(reply: str) -> bool:
    """Whether `reply` holds a letter of any writing system but Latin."""
    return bool(writing_systems(reply) - {"LATIN"})


def comparison(before: dict, after: dict) -> list[str]:
    """The lines of the comparison of two eval-heldout reports (`to_dict()` form)."""
    systems = sorted({a["system"] for a in after["answers"]})
    lines = ["| system | replies | identical | with other scripts, before / after "
             "| role-ID before / after | ended their turn before / after |",
             "| --- | --- | --- | --- | --- | --- |"]
    for system in systems:
        old = [a for a in before["answers"] if a["system"] == system]
        new = [a for a in after["answers"] if a["system"] == system]
        if [a["question"] for a in old] != [a["question"] for a in new]:
            raise ValueError(f"{system}: the two reports do not answer the same questions")
        same = sum(a["reply"] == b["reply"] for a, b in zip(old, new, strict=True))
        lines.append(
            f"| {system} | {len(new)} | {same} | {sum(foreign(a['reply']) for a in old)} / "
            f"{sum(foreign(a['reply']) for a in new)} | "
            f"{before['role_identification'][system]['overall']:.2f} / "
            f"{after['role_identification'][system]['overall']:.2f} | "
            f"{before['ended_turn_rate'][system]:.2f} / {after['ended_turn_rate'][system]:.2f} |")
    for system in systems:
        old = [a for a in before["answers"] if a["system"] == system]
        new = [a for a in after["answers"] if a["system"] == system]
        for a, b in zip(old, new, strict=True):
            if foreign(a["reply"]):
                lines.append(f"\n{a['character']} ({system}), {a['question']!r}\n"
                             f"  before: {a['reply']}\n  after:  {b['reply']}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m neeko_app.evaluation.compare_heldout",
        description="Two eval-heldout reports of the same questions side by side.")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    before, after = (json.loads(path.read_text()) for path in (args.before, args.after))
    print("\n".join(comparison(before, after)))


if __name__ == "__main__":
    main()

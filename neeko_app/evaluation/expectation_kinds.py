"""Expectation pass rates of `neeko eval` runs, by kind of check.

    python -m neeko_app.evaluation.expectation_kinds RUN_DIR [RUN_DIR ...]

RUN_DIR is a folder `neeko eval --out` wrote (`replies.jsonl`, `results.json`). "facts":
checks with `mentions_any`/`mentions_all` (a name, number or place the reply must hold);
"in-character": `in_character`/`avoids`; "era": `era_bound`. A check of several kinds counts
for each. Then the report's overall scores per system. Made for
reports/decoding-penalty-2026-12-02/, where the overall pass rate hid that facts barely moved.
"""

from __future__ import annotations

import argparse
import collections
import json
from collections.abc import Sequence
from pathlib import Path

from neeko_app.evaluation.script import Expectation, load_script

SCRIPTS = Path(__file__).parent / "scripts"
KINDS = ("facts", "in-character", "era")


def kinds_of(expect: Expectation) -> list[str]:
    """The kinds of check `expect` makes."""
    kinds = []
    if expect.mentions_any or expect.mentions_all:
        kinds.append("facts")
    if expect.in_character or expect.avoids:
        kinds.append("in-character")
    if expect.era_bound:
        kinds.append("era")
    return kinds


def checks(scripts: Path = SCRIPTS) -> dict[tuple[str, int, int], list[str]]:
    """(script, exchange, turn) -> kinds of its expectation, for every script in `scripts`."""
    found = {}
    for path in sorted(scripts.glob("*.yaml")):
        script = load_script(path)
        for e, exchange in enumerate(script.exchanges):
            for t, turn in enumerate(exchange.turns):
                if turn.expect:
                    found[(script.name, e, t)] = kinds_of(turn.expect)
    return found


def counts_by_system(run: Path, kinds: dict[tuple[str, int, int], list[str]]
                     ) -> dict[str, collections.Counter]:
    """system -> {kind: checks, kind + " ok": passed} over `run`'s replies log."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in (run / "replies.jsonl").read_text().splitlines():
        reply = json.loads(line)
        for kind in kinds.get((reply["script"], reply["exchange"], reply["turn"]), []):
            counts[reply["system"]][kind] += 1
            counts[reply["system"]][kind + " ok"] += not reply["failures"]
    return counts


def summary(run: Path, kinds: dict[tuple[str, int, int], list[str]]) -> list[str]:
    """One line per system of `run`: pass counts by kind, then the overall scores."""
    scores = json.loads((run / "results.json").read_text())["scores"]
    lines = []
    for system, c in counts_by_system(run, kinds).items():
        rates = "; ".join(f"{k} {c[k + ' ok']}/{c[k]}" for k in KINDS)
        o = scores[system]["overall"]
        lines.append(f"{run.name} {system}: {rates}; role-ID {o['role_identification']:.2f}, "
                     f"relevance {o['relevance']:.2f}, "
                     f"expectations {o['expectation_pass_rate']:.2f}, "
                     f"first person {o['first_person']:.2f}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m neeko_app.evaluation.expectation_kinds",
        description="Expectation pass rates of `neeko eval` runs, by kind of check.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--scripts", type=Path, default=SCRIPTS,
                        help="folder of the evaluation scripts (default: the shipped ones)")
    args = parser.parse_args(argv)
    kinds = checks(args.scripts)
    for run in args.runs:
        print("\n".join(summary(run, kinds)))


if __name__ == "__main__":
    main()

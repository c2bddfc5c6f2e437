"""Expectation pass rates of scripted-evaluation runs, by kind of check.

    python reports/decoding-penalty-2026-12-02/compare_expectations.py RUN_DIR [RUN_DIR ...]

"facts": checks with `mentions_any`/`mentions_all` (a name, number or place the reply must
hold); "in-character": `in_character`/`avoids`; "era": `era_bound`. Then the report's overall
scores per system.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import neeko_app.evaluation as evaluation
from neeko_app.evaluation.script import Expectation, load_script

SCRIPTS = Path(evaluation.__file__).parent / "scripts"
KINDS = ("facts", "in-character", "era")


def kinds_of(expect: Expectation) -> list[str]:
    kinds = []
    if expect.mentions_any or expect.mentions_all:
        kinds.append("facts")
    if expect.in_character or expect.avoids:
        kinds.append("in-character")
    if expect.era_bound:
        kinds.append("era")
    return kinds


def checks() -> dict[tuple[str, int, int], list[str]]:
    """(script, exchange, turn) -> kinds of its expectation."""
    found = {}
    for path in SCRIPTS.glob("*.yaml"):
        script = load_script(path)
        for e, exchange in enumerate(script.exchanges):
            for t, turn in enumerate(exchange.turns):
                if turn.expect:
                    found[(script.name, e, t)] = kinds_of(turn.expect)
    return found


def main(runs: list[str]) -> None:
    kinds = checks()
    for run in map(Path, runs):
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for line in (run / "replies.jsonl").read_text().splitlines():
            reply = json.loads(line)
            for kind in kinds.get((reply["script"], reply["exchange"], reply["turn"]), []):
                counts[reply["system"]][kind] += 1
                counts[reply["system"]][kind + " ok"] += not reply["failures"]
        scores = json.loads((run / "results.json").read_text())["scores"]
        for system, c in counts.items():
            rates = "; ".join(f"{k} {c[k + ' ok']}/{c[k]}" for k in KINDS)
            o = scores[system]["overall"]
            print(f"{run.name} {system}: {rates}; role-ID {o['role_identification']:.2f}, "
                  f"relevance {o['relevance']:.2f}, expectations {o['expectation_pass_rate']:.2f}, "
                  f"first person {o['first_person']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

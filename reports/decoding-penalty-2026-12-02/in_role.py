"""Role identification of `neeko eval-heldout` reports, with and without the replies that
do not speak as the character.

    python reports/decoding-penalty-2026-12-02/in_role.py REPORT.json [REPORT.json ...]

"identified": the issue's measure (nearest profile among the seven). "identified and in the
first person": the same, counting a reply only when it also speaks as the character (the
chat app's first-person test), so restating the card ("You are Caesar: …") scores nothing.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

from neeko_app.evaluation.voice import speaks_in_first_person


def main(reports: list[str]) -> None:
    for path in map(Path, reports):
        answers = json.loads(path.read_text())["answers"]
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for answer in answers:
            c = counts[answer["system"]]
            own = answer["identified_as"] == answer["character"]
            c["replies"] += 1
            c["identified"] += own
            c["in role"] += own and speaks_in_first_person(answer["reply"])
        for system, c in counts.items():
            print(f"{path.name} {system}: identified {c['identified'] / c['replies']:.2f}, "
                  f"identified and in the first person {c['in role'] / c['replies']:.2f} "
                  f"({c['replies']} replies)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""How many fact notes, and in which order: does a one-sentence reply name the right fact
more often with fewer notes, or with the best note nearest the question?

    python reports/note-count-2026-12-06/note_count.py K [--best-last] --out FILE

The greedy quiz, blocks + memory, all characters, replies ending after their first
sentence as the app's do, with the `K` best knowledge notes (the app: 3, best first). With
`--best-last` the notes are listed worst first, so the best one stands just above the
question. The change lives in this script only.
"""

from __future__ import annotations

import argparse

from neeko_app.chat.about_user import character_knowledge
from neeko_app.config import Settings
from neeko_app.evaluation import systems
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.evaluation.quiz import format_quiz_report
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notes", type=int)
    parser.add_argument("--best-last", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    def chosen_notes(memory, slug, message, _k):
        found = character_knowledge(memory, slug, message, args.notes)
        return found[::-1] if args.best_last else found

    systems.character_knowledge = chosen_notes
    runtime = load_runtime(Settings.from_env())
    label = f"notes{args.notes}" + ("-best-last" if args.best_last else "")
    report = quiz_with_bars(runtime, sorted(runtime.characters), [SYSTEM],
                            heldout_decoding(False, None, 0), label)
    print(format_quiz_report(report))
    atomic_write_json(args.out, report.to_dict())


if __name__ == "__main__":
    main()

"""The greedy fact quiz with more fact notes in the prompt.

    python reports/five-notes-2026-12-05/notes_quiz.py 5 reports/five-notes-2026-12-05/quiz-k5.json

Every character's quiz put to blocks+memory greedily, as `neeko quiz` does, with K fact
notes retrieved per question instead of the app's 3 (`ContextLimits.knowledge_k`); the
report to OUT. Read its replies with reports/in-role-reading-2026-12-05/reading.py.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from neeko_app.chat.engine import ContextLimits
from neeko_app.config import Settings
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.evaluation.quiz import GREEDY, format_quiz_report
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"
WHOLE_REPLIES = replace(GREEDY, max_sentences=0)  # as it ran: before the sentence limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notes", type=int)
    parser.add_argument("out")
    args = parser.parse_args()
    ContextLimits.knowledge_k = args.notes  # the quiz's systems read the class default
    runtime = load_runtime(Settings.from_env())
    slugs = sorted(runtime.characters)
    report = quiz_with_bars(runtime, slugs, [SYSTEM], WHOLE_REPLIES, f"k{args.notes}")
    print(format_quiz_report(report))
    atomic_write_json(args.out, report.to_dict())


if __name__ == "__main__":
    main()

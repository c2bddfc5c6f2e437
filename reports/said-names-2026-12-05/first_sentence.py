"""Quiz reports re-scored the strict way: is the answer in the reply's first sentence?

    python reports/said-names-2026-12-05/first_sentence.py REPORT.json [REPORT.json ...]

For each report and system: accuracy as the quiz counts it (the answer pattern anywhere in
the reply) beside the share answered in the first sentence, overall and per character.
Reports written before `answered_first` was recorded are re-scored from their replies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neeko_app.characters.card_text import first_sentence
from neeko_app.characters.facts import QUIZ_FILE
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.evaluation.quiz import character_quiz


def questions() -> dict:
    """Every shipped quiz question by id."""
    characters = discover_characters(Settings().characters_dir).characters.values()
    return {q.id: q for c in characters if (c.folder / QUIZ_FILE).is_file()
            for q in character_quiz(c)}


def main() -> None:
    quiz = questions()
    for path in map(Path, sys.argv[1:]):
        report = json.loads(path.read_text())
        for system in report["systems"]:
            answers = [a for a in report["answers"] if a["system"] == system]
            rows = {}
            for a in answers:
                first = quiz[a["question_id"]].is_answered_by(first_sentence(a["reply"],
                                                                              limit=None))
                for key in ("overall", a["character"]):
                    rows.setdefault(key, []).append((a["correct"], first))
            cells = ", ".join(f"{key} {sum(c for c, _ in v) / len(v):.2f}/"
                              f"{sum(f for _, f in v) / len(v):.2f}" for key, v in rows.items())
            print(f"{path.name} [{system}] anywhere/first sentence: {cells}")


if __name__ == "__main__":
    main()

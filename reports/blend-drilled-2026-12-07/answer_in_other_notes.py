"""How often do the other notes still hold the answer when the asked fact's note is withheld?

    python reports/blend-drilled-2026-12-07/answer_in_other_notes.py

For every quiz question of every character, the notes `blocks+other-notes` puts in the
header (memory's notes for the question, the asked fact's note left out) are checked with
the question's answer pattern: where one matches, that system can still answer from a note
(another fact that names the same thing), not from what the block knows. No model runs.
"""

from __future__ import annotations

import json

from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.evaluation import OTHER_NOTES
from neeko_app.evaluation.quiz import asked_notes
from neeko_app.evaluation.systems import system_context
from neeko_app.memory.scratch import scratch_knowledge


def main() -> None:
    characters = discover_characters(Settings.from_env().characters_dir).characters
    quizzed = [c for c in characters.values() if (c.folder / "quiz.jsonl").is_file()]
    counts = {}
    with scratch_knowledge(quizzed) as memory:
        for character in quizzed:
            asked = asked_notes(character)
            held = sum(
                any(question.is_answered_by(chunk.text) for chunk in system_context(
                    OTHER_NOTES, character, question.question, memory, withheld=note).knowledge)
                for question, note in asked)
            counts[character.slug] = {"questions": len(asked), "answer_in_other_notes": held}
            print(json.dumps({character.slug: counts[character.slug]}), flush=True)
    total = sum(c["questions"] for c in counts.values())
    held = sum(c["answer_in_other_notes"] for c in counts.values())
    print(json.dumps({"overall": {"questions": total, "answer_in_other_notes": held,
                                  "share": held / total}}))


if __name__ == "__main__":
    main()

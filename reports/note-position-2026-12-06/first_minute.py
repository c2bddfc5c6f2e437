"""Plain first-minute questions (where were you born, your mother's name, your wife...):
is the note that answers each one retrieved first?

    python reports/note-position-2026-12-06/first_minute.py > first-minute.txt

`first-minute-questions.json`: four questions a character, each with the fact id that
answers it. Prints the rank of that fact's note among the 5 retrieved (0: not among them)
and, where it is not first, the note that is.
"""

from __future__ import annotations

import json
from pathlib import Path

from neeko_app.characters.facts import FACTS_FILE, load_facts
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.memory.scratch import scratch_knowledge

QUESTIONS = Path(__file__).with_name("first-minute-questions.json")


def main() -> None:
    characters = discover_characters(Settings().characters_dir).characters
    asked = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    first = 0
    with scratch_knowledge(list(characters.values())) as memory:
        for item in asked:
            folder = characters[item["character"]].folder
            gold = {f.id: f.fact.strip() for f in load_facts(folder / FACTS_FILE)}[item["fact"]]
            notes = [chunk.text.strip() for chunk in
                     memory.search_knowledge(item["character"], item["question"], 5)]
            rank = notes.index(gold) + 1 if gold in notes else 0
            first += rank == 1
            instead = "" if rank == 1 else f" | first: {notes[0]}"
            print(f"{rank} {item['character']}: {item['question']}{instead}")
    print(f"right note first: {first} of {len(asked)}")


if __name__ == "__main__":
    main()

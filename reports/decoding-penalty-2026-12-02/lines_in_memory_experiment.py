"""Experiment (not in the app): memory that also holds each of the character's training
replies (the reply alone, no question), beside the profile paragraphs and example lines.

    python reports/decoding-penalty-2026-12-02/lines_in_memory_experiment.py \\
        eval beethoven-interview caesar-interview ... --systems blocks+memory \\
        --perplexity 0 --batch-size 16 --out /tmp/lines

Runs `neeko ...` with `character_chunks` widened, so retrieval can bring back a line in
which the character already said a fact, in its own voice.
"""

from __future__ import annotations

import sys

import neeko_app.memory.knowledge as knowledge
from neeko_app.characters.card import DIALOGUES_FILE, Character
from neeko_app.cli import main
from neeko_app.memory.chunks import MAX_CHUNK_CHARS, KnowledgeChunk
from neeko_app.training.data import load_dialogues

profile_and_examples = knowledge.character_chunks


def with_training_replies(character: Character) -> list[KnowledgeChunk]:
    chunks = profile_and_examples(character)
    for conversation in load_dialogues(character.folder / DIALOGUES_FILE):
        chunks += [KnowledgeChunk(turn.text[:MAX_CHUNK_CHARS], "example")
                   for turn in conversation.turns if turn.role == "character"]
    return chunks


if __name__ == "__main__":
    knowledge.character_chunks = with_training_replies
    sys.exit(main(sys.argv[1:]))

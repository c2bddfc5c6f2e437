"""Experiment (not in the app): memory that also holds the character's training exchanges.

    python reports/heldout-caesar-batch-2026-12-02/dialogue_memory_experiment.py \\
        eval caesar-interview --systems blocks+memory --characters caesar --perplexity 0 \\
        --out /tmp/interview-dialogue-memory

Runs `neeko ...` with each training conversation's first exchange (question and reply, at
most 800 characters) indexed as an extra knowledge chunk beside the profile paragraphs and
example lines, so retrieval can find the lines where a fact was already said in voice.
"""

from __future__ import annotations

import sys

import neeko_app.memory.knowledge as knowledge
from neeko_app.characters.card import DIALOGUES_FILE, Character
from neeko_app.cli import main
from neeko_app.memory.chunks import MAX_CHUNK_CHARS, KnowledgeChunk
from neeko_app.training.data import load_dialogues

profile_and_examples = knowledge.character_chunks


def with_training_exchanges(character: Character) -> list[KnowledgeChunk]:
    chunks = profile_and_examples(character)
    for conversation in load_dialogues(character.folder / DIALOGUES_FILE):
        question, reply = conversation.turns[:2]
        text = f"{question.text}\n{reply.text}"[:MAX_CHUNK_CHARS]
        chunks.append(KnowledgeChunk(text, "example"))
    return chunks


if __name__ == "__main__":
    knowledge.character_chunks = with_training_exchanges
    sys.exit(main(sys.argv[1:]))

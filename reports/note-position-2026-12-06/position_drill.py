"""Teach a shipped block to read the note that answers, wherever it stands: a drill on its
knowledge exchanges, each with three fact notes in its header.

    python reports/note-position-2026-12-06/position_drill.py SLUG --placement shuffled \
        --out-dir DIR [--epochs 1 --lr 3e-4 --replay 4]

Every knowledge exchange is trained with its own fact notes (those it teaches) and the best
retrieved notes that are not among them, three in all. `--placement first` lists the
exchange's own notes first, as retrieval does for a training question (the block learns
"the first note is the answer"); `shuffled` puts them at a random place (seed 0), so only
what the note says tells it apart (as in RAFT, Zhang et al., arXiv 2403.10131). The recall
exchanges and every `--replay`-th dialogue (no notes) are trained too. Bf16 autocast,
batch 4, from the shipped block. The trained block is written into a copy of the
characters folder, DIR/characters, for `position_probe.py` to quiz with
`NEEKO_CHARACTERS_DIR=DIR/characters`; the shipped folder is untouched. (Only the last
epoch's block can be written: during a run the trained weights are copies that go back into
the model at its end, so a block saved between epochs is the shipped one.)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from neeko_app.characters.facts import KNOWLEDGE_FILE, known_facts
from neeko_app.chat.context import RetrievedContext, memory_header
from neeko_app.chat.prompt import character_header
from neeko_app.config import Settings
from neeko_app.jsonl import jsonl_records
from neeko_app.memory import KnowledgeChunk
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import load_runtime
from neeko_app.training.data import DialogueError, load_dialogues, tokenize_conversation
from neeko_app.training.grounding import retrieved_knowledge
from neeko_app.training.knowledge_data import last_question, recall_examples
from neeko_app.training.trainer import EXPANSION_TRAINING, run_training
from neeko_app.training.workflows import examples_for

NOTES = 3


def exchange_facts(folder: Path) -> dict[str, list[str]]:
    """Knowledge exchange id -> the fact ids it teaches."""
    return {raw["id"]: raw["facts"] for _, raw in
            jsonl_records(folder / KNOWLEDGE_FILE, DialogueError)}


def noted_examples(character, tokenizer, max_tokens: int, placement: str, seed: int):
    """Every knowledge exchange with its own notes and the best others, placed as asked."""
    conversations = load_dialogues(character.folder / KNOWLEDGE_FILE)
    taught = exchange_facts(character.folder)
    texts = {fact.id: fact.fact for fact in known_facts(character.folder)}
    found = retrieved_knowledge(character, [last_question(c) for c in conversations],
                                NOTES + 2)
    rng = random.Random(seed)
    header = character_header(character)
    examples, moved = [], 0
    for conversation, retrieved in zip(conversations, found, strict=True):
        own = [KnowledgeChunk(texts[i], "fact") for i in taught[conversation.id] if i in texts]
        own_texts = {chunk.text.strip() for chunk in own}
        others = [c for c in retrieved if c.text.strip() not in own_texts]
        notes = own[:NOTES] + others[:max(0, NOTES - len(own))]
        if placement == "shuffled":
            rng.shuffle(notes)
        moved += notes[0].text.strip() not in own_texts
        context = RetrievedContext(knowledge=tuple(notes))
        examples.append(tokenize_conversation(
            conversation, memory_header(header, character.name, context), tokenizer,
            character.slug, max_tokens))
    return examples, moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slug")
    parser.add_argument("--placement", choices=["first", "shuffled"], required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--replay", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    settings = Settings.from_env()
    runtime = load_runtime(settings, serving=False)
    character, tokenizer = runtime.character(args.slug), runtime.base.tokenizer
    config = replace(EXPANSION_TRAINING, epochs=args.epochs, lr=args.lr, batch_size=4,
                     bf16=True, seed=args.seed)
    examples, moved = noted_examples(character, tokenizer, config.max_tokens, args.placement,
                                     args.seed)
    noted = len(examples)
    examples += recall_examples(character, tokenizer, config.max_tokens)
    if args.replay:
        examples += examples_for([character], tokenizer, config.max_tokens)[::args.replay]
    started = time.perf_counter()
    losses = run_training(runtime.model, examples, [args.slug], config,
                          tokenizer.pad_token_id)
    seconds = time.perf_counter() - started
    characters = args.out_dir / "characters"
    if not characters.exists():
        shutil.copytree(settings.characters_dir, characters)
    save_block(runtime.model, args.slug, characters / args.slug / "block.safetensors",
               runtime.base.model_id)
    summary = {"character": args.slug, "placement": args.placement, "epochs": args.epochs,
               "lr": args.lr, "replay": args.replay, "examples": len(examples),
               "noted_exchanges": noted, "first_note_not_own": moved,
               "loss_first_20": statistics.mean(losses[:20]),
               "loss_last_20": statistics.mean(losses[-20:]), "train_seconds": round(seconds, 1)}
    print(json.dumps(summary))
    (args.out_dir / "drill.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()

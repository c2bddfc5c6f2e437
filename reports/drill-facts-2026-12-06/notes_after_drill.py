"""Can a drilled block learn to read its notes again without forgetting its facts?

    python reports/drill-facts-2026-12-06/notes_after_drill.py newton --epochs 1 \
        --lr 5e-4 --out DIR/notes-after-drill-newton.json

Starts from the character's block as it is in the characters folder (run it on a drilled
one): one more pass over the drill's exchanges (knowledge and paraphrases, replies cut after
10 words), every other one with the notes memory retrieves for its question in the header,
as the shipped blocks were trained; then the greedy one-sentence quiz, blocks alone and
blocks + memory with the note contrast off and at the app's 0.5. The block file is not
changed.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json
from neeko_app.training.fact_drill import answer_first
from neeko_app.training.knowledge_data import (
    knowledge_conversations,
    noted_examples,
    plain_examples,
    recall_examples,
)
from neeko_app.training.trainer import DrillConfig, run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env(), serving=False)
    character, tokenizer = runtime.character(args.character), runtime.base.tokenizer
    drill = DrillConfig()
    config = replace(drill.phases()["settle"], epochs=args.epochs, lr=args.lr, seed=2)
    conversations = [answer_first(c, drill.answer_words)
                     for c in knowledge_conversations(character, paraphrases=True)]
    examples = (noted_examples(character, conversations[::2], tokenizer, config.max_tokens)
                + plain_examples(character, conversations[1::2], tokenizer, config.max_tokens)
                + recall_examples(character, tokenizer, config.max_tokens))
    started = time.perf_counter()
    run_training(runtime.model, examples, [character.slug], config, tokenizer.pad_token_id)
    result = {"character": character.slug, "epochs": args.epochs, "lr": args.lr,
              "examples": len(examples), "train_seconds": time.perf_counter() - started}
    runtime.model.eval()
    for contrast in (0.0, 0.5):
        decoding = replace(heldout_decoding(False, None, 0), note_contrast=contrast)
        systems = ["blocks", "blocks+memory"] if contrast == 0 else ["blocks+memory"]
        report = quiz_with_bars(runtime, [character.slug], systems, decoding)
        for system in systems:
            result[f"{system} contrast {contrast:g}"] = report.accuracy(system)
        atomic_write_json(args.out.with_suffix(f".contrast-{contrast:g}.replies.json"),
                          report.to_dict())
    print(json.dumps(result), flush=True)
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()

"""Does a block learn its facts without unlearning its notes when the notes are in the
drill from its first step?

    python reports/notes-drill-2026-12-07/notes_drill.py newton \
        --block-out /tmp/notes-drill/newton.safetensors \
        --out reports/notes-drill-2026-12-07/notes-drill-newton.json

`neeko drill-facts` with one change: every other knowledge exchange carries, in its header,
the notes the chat app's memory retrieves for its question (as the shipped blocks were
trained), from the first epoch on; the other half, and the recall exchanges, are as in the
drill. Same phases (4 epochs at 2e-3, 2 at 5e-4, batch 4, bf16 autocast), starting from the
character's block in the characters folder. Each phase checkpoints under the cache, so the
same command resumes; the checkpoints go once the block is written. After each phase: the
greedy one-sentence quiz, blocks alone, blocks + memory (the app's decoding) and blocks +
other notes. The characters folder is not changed; the drilled block goes to --block-out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.evaluation import OTHER_NOTES
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json
from neeko_app.training.fact_drill import answer_first
from neeko_app.training.knowledge_data import (
    knowledge_conversations,
    noted_examples,
    plain_examples,
    recall_examples,
)
from neeko_app.training.trainer import (
    DrillConfig,
    Progress,
    discard_checkpoint,
    run_fingerprint,
    run_training,
)

SYSTEMS = ["blocks", "blocks+memory", OTHER_NOTES]


def report_progress(phase: str, progress: Progress) -> None:
    """One log line every 50 steps and at the end of each epoch."""
    if progress.step % 50 == 0 or progress.step == progress.total:
        print(f"{phase} step {progress.step}/{progress.total} epoch {progress.epoch} "
              f"loss {progress.loss:.3f} {progress.seconds:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("--block-out", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings.from_env()
    runtime = load_runtime(settings, serving=False)
    character, tokenizer = runtime.character(args.character), runtime.base.tokenizer
    drill = DrillConfig()
    phases = drill.phases()
    max_tokens = phases["facts"].max_tokens
    conversations = [answer_first(c, drill.answer_words)
                     for c in knowledge_conversations(character, paraphrases=True)]
    examples = (noted_examples(character, conversations[::2], tokenizer, max_tokens)
                + plain_examples(character, conversations[1::2], tokenizer, max_tokens)
                + recall_examples(character, tokenizer, max_tokens))
    digest = hashlib.sha256(character.block_path.read_bytes()).hexdigest()[:16]
    checkpoints = settings.cache_dir / "checkpoints" / "notes-drill" / f"{character.slug}-{digest}"
    folder = checkpoints
    result = {"character": character.slug, "examples": len(examples),
              "noted": len(conversations[::2]), "phases": {}}
    for phase, config in phases.items():
        fingerprint = run_fingerprint(runtime.model, examples, [character.slug], config)
        folder = folder / f"{phase}-{fingerprint[:12]}"
        started = time.perf_counter()
        run_training(runtime.model, examples, [character.slug], config, tokenizer.pad_token_id,
                     folder, lambda progress, phase=phase: report_progress(phase, progress))
        runtime.model.eval()
        quiz = quiz_with_bars(runtime, [character.slug], SYSTEMS, heldout_decoding(False, None, 0),
                              label=phase)
        accuracy = {system: quiz.accuracy(system) for system in quiz.systems}
        result["phases"][phase] = {"epochs": config.epochs, "lr": config.lr,
                                   "seconds_this_call": time.perf_counter() - started,
                                   **accuracy, "answers": quiz.to_dict()["answers"]}
        print(json.dumps({phase: accuracy}), flush=True)
        atomic_write_json(args.out, result)
    args.block_out.parent.mkdir(parents=True, exist_ok=True)
    save_block(runtime.model, character.slug, args.block_out, runtime.base.model_id)
    discard_checkpoint(checkpoints)


if __name__ == "__main__":
    main()

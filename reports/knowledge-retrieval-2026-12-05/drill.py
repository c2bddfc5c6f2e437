"""Knowledge drill: the shipped block of one character trained on, on its knowledge and
recall exchanges (and every `--replay`-th dialogue), quizzed after every epoch.

    python reports/knowledge-retrieval-2026-12-05/drill.py newton --epochs 6 --lr 1e-3 \
        --out reports/knowledge-retrieval-2026-12-05/drill-newton.json [--replay 4]

Unlike `quiz_curve.py` (a fresh block on all the data), the block starts from the one
shipped in `characters/<slug>/`. Before training and after every epoch the character's quiz
is put to `--systems` (greedy) and a row is written to the JSON; the weights of every epoch
are saved beside it (`<out stem>/epoch-<n>/<slug>/block.safetensors`, not committed); the
characters folder is untouched. `--notes-every 1` trains every knowledge exchange with the
notes memory retrieves for it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from neeko_app.config import Settings
from neeko_app.evaluation.quiz import run_quiz
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json
from neeko_app.training.knowledge_data import knowledge_examples
from neeko_app.training.trainer import EXPANSION_TRAINING, Progress, run_training
from neeko_app.training.workflows import examples_for


def drill(settings: Settings, slug: str, epochs: int, lr: float, batch_size: int,
          replay: int, notes_every: int, systems: tuple[str, ...], out: Path,
          skip_start_quiz: bool = False) -> list[dict]:
    """Train `slug`'s shipped block on for `epochs`, quizzing it after each."""
    runtime = load_runtime(settings)
    model, tokenizer = runtime.model, runtime.base.tokenizer
    character = runtime.character(slug)
    config = replace(EXPANSION_TRAINING, epochs=epochs, lr=lr, batch_size=batch_size, bf16=True)
    examples = knowledge_examples(character, tokenizer, config.max_tokens, notes_every)
    if replay:
        examples += examples_for([character], tokenizer, config.max_tokens)[::replay]
    rows: list[dict] = []
    summary = {"character": slug, "lr": lr, "batch_size": batch_size, "replay": replay,
               "notes_every": notes_every, "examples": len(examples), "rows": rows}
    with scratch_knowledge([character]) as memory:
        def quiz(epoch: int, loss: float | None, seconds: float) -> None:
            model.eval()
            started = time.perf_counter()
            report = run_quiz(runtime, [slug], systems, memory=memory)
            model.train()
            row = {"epoch": epoch, "loss": loss, "train_seconds": seconds,
                   "quiz_seconds": time.perf_counter() - started,
                   **{s: report.accuracy(s) for s in systems}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_json(out, summary)

        def on_progress(progress: Progress) -> None:
            if progress.step * epochs % progress.total == 0:
                save_block(model, slug, out.parent / out.stem / f"epoch-{progress.epoch}" / slug
                           / "block.safetensors", runtime.base.model_id)
                quiz(progress.epoch, progress.loss, progress.seconds)

        if not skip_start_quiz:
            quiz(0, None, 0.0)
        run_training(model, examples, [slug], config, tokenizer.pad_token_id,
                     on_progress=on_progress)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--replay", type=int, default=4,
                        help="also train on every N-th dialogue (0: none)")
    parser.add_argument("--notes-every", type=int, default=2,
                        help="one knowledge exchange in N is trained with its retrieved notes")
    parser.add_argument("--systems", nargs="+", default=["blocks", "blocks+memory"])
    parser.add_argument("--skip-start-quiz", action="store_true",
                        help="no quiz before training (the shipped block's is known)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    drill(Settings.from_env(), args.character, args.epochs, args.lr, args.batch_size,
          args.replay, args.notes_every, tuple(args.systems), args.out, args.skip_start_quiz)


if __name__ == "__main__":
    main()

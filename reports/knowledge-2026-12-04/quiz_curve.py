"""Quiz accuracy against epoch: one character's block trained afresh, quizzed after each epoch.

    python reports/knowledge-2026-12-04/quiz_curve.py caesar --lr 3e-4 1e-3 --epochs 4 \
        --out reports/knowledge-2026-12-04/curve-caesar.json [--bf16] [--batch-size 2]

For each learning rate the character's block is replaced by a fresh one (as expansion
makes it), trained alone on its dialogues, knowledge and recall exchanges, and after every
epoch its quiz is put to `blocks` and `blocks+memory` (greedy). The run keeps the weights of
the epoch with the most quiz answers right (both systems together; the earlier epoch on a
tie) and saves them to `<out stem>-lr<lr>/<slug>/block.safetensors`, beside the JSON
(written after every epoch) and a plot; the characters folder is untouched.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from neeko_app.config import Settings
from neeko_app.evaluation.quiz import GREEDY, run_quiz
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import character_role, load_runtime
from neeko_app.storage import atomic_write_json
from neeko_app.training.best_epoch import BestEpochs
from neeko_app.training.trainer import EXPANSION_TRAINING, Progress, run_training
from neeko_app.training.workflows import job_examples

SYSTEMS = ("blocks", "blocks+memory")
WHOLE_REPLIES = replace(GREEDY, max_sentences=0)  # as it ran: before the sentence limit


class EpochQuiz:
    """A progress callback: quiz the block after each epoch, keep the best epoch's weights."""

    def __init__(self, runtime, slug: str, memory, lr: float, epochs: int,
                 rows: list[dict], write: Callable[[], None]) -> None:
        self.runtime, self.slug, self.memory, self.lr = runtime, slug, memory, lr
        self.epochs, self.rows, self.write = epochs, rows, write
        self.best = BestEpochs(runtime.model, keep_weights=True)

    def __call__(self, progress: Progress) -> None:
        if progress.step * self.epochs % progress.total:
            return
        model = self.runtime.model
        was_training = model.training
        model.eval()
        try:
            report = run_quiz(self.runtime, [self.slug], SYSTEMS, WHOLE_REPLIES,
                              memory=self.memory)
        finally:
            model.train(was_training)
        row = {"lr": self.lr, "epoch": progress.epoch, "loss": progress.loss,
               "seconds": progress.seconds, **{s: report.accuracy(s) for s in SYSTEMS}}
        self.best.update(progress.epoch, {self.slug: -sum(row[s] for s in SYSTEMS)})
        if progress.step == progress.total:
            self.best.restore(self.epochs)  # committed when the run ends
            row["kept_epoch"] = self.best.epochs[self.slug]
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        self.write()


def quiz_curve(settings: Settings, slug: str, lrs: list[float], epochs: int, batch_size: int,
               bf16: bool, out: Path, pack_tokens: int = 0) -> list[dict]:
    """Train `slug`'s block afresh at each of `lrs` and quiz it after every epoch."""
    runtime = load_runtime(settings)
    model, tokenizer = runtime.model, runtime.base.tokenizer
    character = runtime.character(slug)
    rows: list[dict] = []
    with scratch_knowledge([character]) as memory:
        for lr in lrs:
            config = replace(EXPANSION_TRAINING, epochs=epochs, lr=lr, batch_size=batch_size,
                             bf16=bf16, pack_tokens=pack_tokens)
            if slug in model.block_names:
                model.remove_block(slug)
            model.add_blocks([slug], character_role(character)[None], seed=config.seed)
            examples, _ = job_examples([character], tokenizer, config)
            summary = {"character": slug, "batch_size": batch_size, "bf16": bf16,
                       "examples": len(examples), "rows": rows}
            run_training(model, examples, [slug], config, tokenizer.pad_token_id,
                         on_progress=EpochQuiz(runtime, slug, memory, lr, epochs, rows,
                                               lambda s=summary: atomic_write_json(out, s)))
            save_block(model, slug, out.parent / f"{out.stem}-lr{lr:g}" / slug /
                       "block.safetensors", runtime.base.model_id)
    plot(rows, out.with_suffix(".png"), slug)
    return rows


def plot(rows: list[dict], path: Path, slug: str) -> None:
    """Quiz accuracy against epoch, one line per learning rate and system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for lr in sorted({row["lr"] for row in rows}):
        picked = [row for row in rows if row["lr"] == lr]
        for system, style in zip(SYSTEMS, ("-o", "--s"), strict=True):
            axes.plot([r["epoch"] for r in picked], [r[system] for r in picked], style,
                      label=f"{system}, lr {lr:g}")
    axes.set_xticks(sorted({row["epoch"] for row in rows}))
    axes.set(xlabel="epoch", ylabel="quiz accuracy", ylim=(0, 1),
             title=f"{slug}: held-out fact quiz after each epoch")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("--lr", type=float, nargs="+", default=[EXPANSION_TRAINING.lr])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=EXPANSION_TRAINING.batch_size)
    parser.add_argument("--pack-tokens", type=int, default=0)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--base-model", default=None)
    parser.add_argument("--characters-dir", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    settings = Settings.from_env(base_model=args.base_model, characters_dir=args.characters_dir)
    quiz_curve(settings, args.character, args.lr, args.epochs, args.batch_size, args.bf16,
               args.out, args.pack_tokens)


if __name__ == "__main__":
    main()

"""`neeko train`, `neeko add-character` and `neeko drill-facts` in a terminal: a tqdm bar
with loss and ETA."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tqdm import tqdm

from neeko_app.characters.registry import discover_characters
from neeko_app.cli import drill_config, training_config
from neeko_app.config import Settings
from neeko_app.training.baselines import train_lora_mix
from neeko_app.training.fact_drill import drill_facts
from neeko_app.training.knowledge_data import knowledge_conversations
from neeko_app.training.trainer import Progress
from neeko_app.training.workflows import TrainingJob, add_character, pretrain


class ProgressBar:
    """Feeds `Progress` reports into one tqdm bar (created at the first report); after the
    last epoch it says which blocks keep an earlier epoch's weights (`keeps_best`)."""

    def __init__(self, description: str, keeps_best: bool = False):
        self.description = description
        self.keeps_best = keeps_best
        self.bar: tqdm | None = None

    def __call__(self, progress: Progress) -> None:
        if self.bar is None:
            self.bar = tqdm(total=progress.total, initial=progress.step - 1,
                            desc=self.description, unit="step")
        self.bar.update(progress.step - self.bar.n)
        self.bar.set_postfix(epoch=progress.epoch, loss=f"{progress.loss:.3f}")
        if progress.heldout_loss is not None:
            self.bar.write(f"epoch {progress.epoch}: held-out loss {progress.heldout_loss:.3f} "
                           f"(perplexity {math.exp(progress.heldout_loss):.1f})")
        if self.keeps_best and progress.step == progress.total and progress.best_epochs:
            for block, epoch in progress.best_epochs.items():
                if epoch != progress.epoch:
                    self.bar.write(f"{block} keeps its weights after epoch {epoch} (its lowest "
                                   "held-out loss)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_training_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run `train` or `add-character` with a progress bar; interrupted runs resume next time."""
    config = training_config(args)
    bar = ProgressBar("training" if args.command == "train" else f"adding ({args.mode})",
                      config.keep_best_epoch)
    job = TrainingJob(config, on_progress=bar)
    try:
        if args.command == "train":
            train = train_lora_mix if args.mix else pretrain
            losses = train(settings, args.characters, job)
            what = "the LoRA-mix baseline on " if args.mix else ""
            print(f"trained {what}{', '.join(args.characters)}: loss {losses[0]:.3f} -> "
                  f"{losses[-1]:.3f}" if losses else "nothing left to train")
        else:
            character = add_character(settings, Path(args.path), args.mode, job)
            print(f"added {character.slug} ({args.mode})")
    finally:
        bar.close()
    return 0


def run_drill_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run `drill-facts` with one progress bar per character and phase; an interrupted run
    resumes with the same command, and no block changes until every character is done."""
    slugs = args.characters or [
        c.slug for c in discover_characters(*settings.character_dirs).characters.values()
        if c.block_path.is_file() and knowledge_conversations(c)]
    if not slugs:
        raise ValueError("no character has knowledge exchanges and a block of its own")
    bars: dict[tuple[str, str], ProgressBar] = {}

    def show(slug: str, phase: str, progress: Progress) -> None:
        if (slug, phase) not in bars:
            bars[slug, phase] = ProgressBar(f"{slug}: {phase}")
        bars[slug, phase](progress)

    try:
        characters = drill_facts(settings, slugs, drill_config(args), show)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"drilled {', '.join(c.slug for c in characters)}: blocks written; "
          "`neeko quiz` measures them")
    return 0

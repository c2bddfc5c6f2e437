"""`neeko tune-retriever`: tune the knowledge encoder on the characters' knowledge exchanges,
with a progress bar; the adapter file is replaced only when the run finishes."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.memory.knowledge_encoder import ENCODER_FILE
from neeko_app.training.knowledge_encoder import (
    EncoderTraining,
    encoder_pairs,
    save_encoder,
    tune_encoder,
)


def run_tune_retriever_command(settings: Settings, args: argparse.Namespace) -> int:
    """Tune on the shipped characters (or those named) and write the adapter (default
    `characters/knowledge-encoder.safetensors`, which the app then uses)."""
    registry = discover_characters(*settings.character_dirs).characters
    unknown = sorted(set(args.characters) - set(registry))
    if unknown:
        raise KeyError(f"unknown character(s) {', '.join(unknown)}; available: "
                       f"{', '.join(sorted(registry))}")
    shipped = discover_characters(settings.characters_dir).characters
    chosen = [registry[slug] for slug in args.characters] or list(shipped.values())
    pairs = encoder_pairs(chosen)
    training = EncoderTraining()
    if args.epochs:
        training = replace(training, epochs=args.epochs)
    total = sum(len(p) for p in pairs.values())
    print(f"tuning the knowledge encoder on {total} questions of {len(pairs)} characters "
          f"({', '.join(pairs)}), {training.epochs} epochs")
    out = Path(args.out) if args.out else settings.characters_dir / ENCODER_FILE
    start = time.time()
    with tqdm(desc="tuning", unit="step") as bar:
        def progress(step: int, steps: int, loss: float) -> None:
            bar.total = steps
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.3f}")

        encoder = tune_encoder(pairs, training, progress)
    save_encoder(out, encoder, training, total)
    print(f"wrote {out} in {time.time() - start:.0f} s; knowledge is re-embedded with it the "
          "next time the app indexes the characters")
    return 0

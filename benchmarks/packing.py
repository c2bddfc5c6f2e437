"""Training throughput: padded batches vs packed rows, side by side in one process.

    python benchmarks/packing.py [--character caesar] [--steps 6] [--rounds 3]

Trains a fresh block on the character's real training data (dialogues, knowledge and recall
exchanges) on the embedded model, alternating the two layouts round by round, and prints
each one's real (non-padding) tokens per second and their ratio. The batch sizes give both
layouts about the same tokens per step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neeko_app.characters.card import load_character
from neeko_app.config import Settings
from neeko_app.embedding import role_embedding
from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.training.data import batches_from, pack_examples
from neeko_app.training.loop import IGNORE, block_training
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import job_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--character", default="caesar")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pack-tokens", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)
    settings = Settings()
    character = load_character(settings.characters_dir / args.character)
    base = load_base_model("embedded", settings.cache_dir, "cpu")
    model = NeekoModel(base.model, MoeLoraConfig())
    model.add_blocks([character.slug], role_embedding(character.profile_text())[None])
    examples, _ = job_examples([character], base.tokenizer, TrainingConfig())
    packed = pack_examples(examples, args.pack_tokens, seed=0)
    mean_tokens = sum(len(e.input_ids) for e in examples) / len(examples)
    padded_batch = max(1, round(args.pack_tokens / mean_tokens))
    layouts = {"padded": (examples, padded_batch), "packed": (packed, 1)}
    print(f"{len(examples)} conversations, {mean_tokens:.0f} tokens on average; "
          f"{len(packed)} packed rows of at most {args.pack_tokens}")
    rates: dict[str, list[float]] = {name: [] for name in layouts}
    pad = base.tokenizer.pad_token_id
    with block_training(model, [character.slug], lr=1e-4) as trainer:
        for round_ in range(args.rounds):
            for name, (rows, batch_size) in layouts.items():
                batches = batches_from(rows, batch_size, pad, seed=0, epoch=round_)
                tokens, started = 0, time.perf_counter()
                for _, batch in zip(range(args.steps), batches, strict=False):
                    trainer.step(batch)
                    tokens += int((batch.input_ids != pad).sum()) if batch.attention_mask is \
                        None else int(batch.attention_mask.sum())
                rates[name].append(tokens / (time.perf_counter() - started))
    for name, (_, batch_size) in layouts.items():
        print(f"{name:7s} batch {batch_size:2d}: {statistics.median(rates[name]):7.0f} "
              "real tokens/s (median of rounds)")
    ratio = statistics.median(rates["packed"]) / statistics.median(rates["padded"])
    print(f"packed / padded: {ratio:.2f}x")
    labelled = sum(sum(label != IGNORE for label in e.labels) for e in examples)
    print(f"labelled share of tokens: {labelled / sum(len(e.input_ids) for e in examples):.2f}")


if __name__ == "__main__":
    main()

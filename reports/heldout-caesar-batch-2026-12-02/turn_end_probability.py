"""How likely each block thinks its turn ends where the held-out reply really ends.

    python reports/heldout-caesar-batch-2026-12-02/turn_end_probability.py [CHARACTERS_DIR]

For the first 24 held-out conversations of each character: the probability the character's
own block gives the end-of-turn token right after each written reply (median and mean).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

from neeko_app.chat.prompt import TURN_END
from neeko_app.config import Settings
from neeko_app.runtime import load_runtime
from neeko_app.training.data import character_examples, load_dialogues


def main(characters_dir: Path) -> None:
    runtime = load_runtime(Settings(characters_dir=characters_dir))
    tokenizer = runtime.base.tokenizer
    turn_end = tokenizer.convert_tokens_to_ids(TURN_END)
    for slug in sorted(runtime.model.block_names):
        character = runtime.character(slug)
        conversations = load_dialogues(character.folder / "heldout.jsonl")[:24]
        chances = []
        for example in character_examples(character, conversations, tokenizer, 384):
            ends = [t for t, label in enumerate(example.labels) if label == turn_end]
            with torch.no_grad():
                logits = runtime.model(torch.tensor([example.input_ids]),
                                       gate=runtime.gate_for(character),
                                       logits_to_keep=torch.tensor(ends) - 1).logits[0]
            chances += logits.float().softmax(-1)[:, turn_end].tolist()
        print(f"{slug}: median {statistics.median(chances):.3f}, "
              f"mean {statistics.mean(chances):.3f} over {len(chances)} turn ends")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "characters"))

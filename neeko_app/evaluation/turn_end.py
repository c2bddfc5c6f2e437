"""Does a block know where its character's turn ends? A block that does not runs every chat
reply to the length cap.

    python -m neeko_app.evaluation.turn_end [SLUG ...] [--characters-dir DIR] [--limit 24]

prints, for each character with a block (or each SLUG), the median and mean probability its
own block gives the end-of-turn token right after each of its first `--limit` written
held-out replies. A healthy block gives well above 0.02 at the median (the shipped-characters
test's threshold); Caesar's first expansion block gave 0.002 and ran every reply to the cap
(reports/heldout-caesar-batch-2026-12-02/).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from neeko_app.characters.card import HELDOUT_FILE, Character
from neeko_app.chat.prompt import TURN_END
from neeko_app.config import Settings
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.training.data import Conversation, character_examples, load_dialogues


def turn_end_chances(runtime: Runtime, character: Character,
                     conversations: Sequence[Conversation], max_tokens: int = 384) -> list[float]:
    """The probability `character`'s gate gives the end-of-turn token right after each of
    the character's written replies in `conversations` (short training header)."""
    tokenizer = runtime.base.tokenizer
    turn_end = tokenizer.convert_tokens_to_ids(TURN_END)
    gate = runtime.gate_for(character)
    chances: list[float] = []
    for example in character_examples(character, conversations, tokenizer, max_tokens):
        ends = [t for t, label in enumerate(example.labels) if label == turn_end]
        with torch.no_grad():  # only the logits that predict each turn end
            logits = runtime.model(torch.tensor([example.input_ids]), gate=gate,
                                   logits_to_keep=torch.tensor(ends) - 1).logits[0]
        chances += logits.float().softmax(-1)[:, turn_end].tolist()
    return chances


@dataclass(frozen=True)
class TurnEnds:
    """One character's end-of-turn probabilities, summarised."""

    character: str
    median: float
    mean: float
    turn_ends: int

    def __str__(self) -> str:
        return (f"{self.character}: median {self.median:.3f}, mean {self.mean:.3f} "
                f"over {self.turn_ends} turn ends")


def turn_end_summary(runtime: Runtime, slugs: Sequence[str] | None = None,
                     limit: int = 24) -> list[TurnEnds]:
    """`turn_end_chances` over the first `limit` held-out conversations of each of `slugs`
    (default: every character with a block of its own), sorted by slug."""
    rows = []
    for slug in sorted(slugs or runtime.model.block_names):
        character = runtime.character(slug)
        conversations = load_dialogues(character.folder / HELDOUT_FILE)[:limit]
        chances = turn_end_chances(runtime, character, conversations)
        rows.append(TurnEnds(slug, statistics.median(chances), statistics.mean(chances),
                             len(chances)))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m neeko_app.evaluation.turn_end",
        description="How likely each block thinks its turn ends where the held-out reply "
                    "really ends.")
    parser.add_argument("slugs", nargs="*", help="characters (default: every one with a block)")
    parser.add_argument("--characters-dir", type=Path, default=None,
                        help="characters folder (default: NEEKO_CHARACTERS_DIR or the shipped one)")
    parser.add_argument("--limit", type=int, default=24,
                        help="the first N held-out conversations per character (default 24)")
    args = parser.parse_args(argv)
    runtime = load_runtime(Settings.from_env(characters_dir=args.characters_dir),
                           report=lambda _: None)
    for row in turn_end_summary(runtime, args.slugs, args.limit):
        print(row, flush=True)


if __name__ == "__main__":
    main()

"""The note-copy bias weighted by the notes' retrieval rank: does favouring the first note's
names more than the others' put the right name in the one-sentence reply more often?

    python reports/ranked-copy-2026-12-05/ranked_copy.py WEIGHT [WEIGHT ...] [--out FILE]

One weight per knowledge note, best-ranked first (the app: 2 2 2). The greedy quiz, blocks +
memory, all characters, replies ending after their first sentence as the app's do; a token
that begins or continues a name of several notes gets the largest of their weights. The
bias lives in this script only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import torch
from transformers.generation.logits_process import LogitsProcessor

from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.note_copy import NoteCopyBias
from neeko_app.config import Settings
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.evaluation.quiz import GREEDY, format_quiz_report
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"


def knowledge_notes(tokenizer, quotable: list[int]) -> list[list[int]]:
    """The token ids of each knowledge note ("- text" lines under "What you know:"), in the
    order the prompt shows them (best-ranked first)."""
    text = tokenizer.decode(quotable)
    section = text.split("What you know:\n", 1)[-1].split("\n\n", 1)[0] if (
        "What you know:" in text) else ""
    return [tokenizer(line, add_special_tokens=False).input_ids
            for line in section.splitlines() if line.startswith("- ")]


class RankedNoteCopyBias(LogitsProcessor):
    """`NoteCopyBias` per note with its own weight; each token gets the largest."""

    def __init__(self, tokenizer, notes: list[list[int]], prompt_ids, weights) -> None:
        self.parts = [NoteCopyBias(tokenizer, ids, prompt_ids, weight)
                      for ids, weight in zip(notes, weights, strict=False) if weight]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        added = torch.zeros_like(scores)
        for part in self.parts:
            added = torch.maximum(added, part(input_ids, torch.zeros_like(scores)))
        return scores + added


@dataclass(frozen=True)
class WithRankedCopy(DecodingSettings):
    """The app's decoding with the note-copy bias weighted by rank (greedy: the biases only
    add to logits, so where they stand among the processors does not matter)."""

    rank_weights: tuple[float, ...] = ()

    def logits_processors(self, prompt_ids, tokenizer, quotable=()):
        unbiased = replace(self, copy_bias=0.0)
        processors = DecodingSettings.logits_processors(unbiased, prompt_ids, tokenizer,
                                                        quotable)
        notes = knowledge_notes(tokenizer, list(quotable)) if quotable else []
        if notes:
            processors.append(RankedNoteCopyBias(tokenizer, notes, prompt_ids,
                                                 self.rank_weights))
        return processors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=float)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env())
    decoding = WithRankedCopy(**{**GREEDY.__dict__, "rank_weights": tuple(args.weights)})
    label = "ranked" + "-".join(f"{w:g}" for w in args.weights)
    report = quiz_with_bars(runtime, sorted(runtime.characters), [SYSTEM], decoding, label)
    print(format_quiz_report(report))
    atomic_write_json(args.out, report.to_dict())


if __name__ == "__main__":
    main()

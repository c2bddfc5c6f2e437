"""`neeko eval-heldout` in a terminal: one tqdm bar per stage, a Markdown report, JSON out."""

from __future__ import annotations

import argparse
from dataclasses import replace

from tqdm import tqdm

from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.evaluation.heldout import HeldoutOptions, format_report, run_heldout_evaluation
from neeko_app.evaluation.systems import evaluation_memory
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json


class StageBars:
    """A progress callback `(stage, done, total)` that shows one tqdm bar per stage."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: tqdm | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, tqdm(total=total, desc=stage)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def heldout_decoding(sample: bool, max_new_tokens: int | None, seed: int,
                     max_sentences: int | None = None) -> DecodingSettings:
    """Greedy with a 64-token cap, or with `sample` the chat app's decoding from `seed`;
    replies end after the chat app's number of sentences unless `max_sentences` is given."""
    if sample:
        chat = DecodingSettings(seed=seed)
        decoding = replace(chat, max_new_tokens=max_new_tokens or chat.max_new_tokens)
    else:
        decoding = DecodingSettings(max_new_tokens=max_new_tokens or 64, temperature=0.0)
    return sentence_limited(decoding, max_sentences)


def sentence_limited(decoding: DecodingSettings, max_sentences: int | None) -> DecodingSettings:
    """`decoding` with the evaluation's `--max-sentences`, when one was given."""
    return decoding if max_sentences is None else replace(decoding, max_sentences=max_sentences)


def run_heldout_command(settings: Settings, args: argparse.Namespace) -> int:
    """Evaluate the chosen characters (default: all with a trained block) and print a report."""
    runtime = load_runtime(settings)
    slugs = args.characters or list(runtime.model.block_names)
    if not slugs:
        raise ValueError("no character has a trained block yet; run `neeko train` first")
    options = HeldoutOptions(
        limit=args.limit, batch_size=args.batch_size, perplexity=not args.no_perplexity,
        systems=tuple(args.systems),
        decoding=heldout_decoding(args.sample, args.max_new_tokens, args.seed,
                                  args.max_sentences))
    bars = StageBars()
    characters = [runtime.character(slug) for slug in slugs]
    with evaluation_memory(options.systems, characters) as memory:
        try:
            report = run_heldout_evaluation(runtime, slugs, options, bars, memory)
        finally:
            bars.close()
    print(format_report(report))
    if args.out:
        atomic_write_json(args.out, report.to_dict())
        print(f"\nreport with every reply written to {args.out}")
    return 0

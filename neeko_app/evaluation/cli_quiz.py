"""`neeko quiz` and `neeko eval-recall` in a terminal: progress bars, Markdown tables, the
report as JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from neeko_app.characters.facts import QUIZ_FILE
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.compute_threads import while_another_decodes
from neeko_app.config import Settings
from neeko_app.evaluation.cli_heldout import StageBars, heldout_decoding
from neeko_app.evaluation.quiz import (
    GREEDY,
    QuizReport,
    format_quiz_report,
    replace_blocks,
    run_quiz,
)
from neeko_app.evaluation.recall import run_recall
from neeko_app.evaluation.systems import evaluation_memory
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.storage import atomic_write_json


def merged(previous: QuizReport, new: QuizReport) -> QuizReport:
    """`previous` with `new`'s systems added (a system run again replaces its answers)."""
    rerun = set(new.systems)
    answers = [a for a in previous.answers if a.system not in rerun] + new.answers
    characters = list(dict.fromkeys([*previous.characters, *new.characters]))
    return QuizReport(characters, answers, new.decoding, previous.seconds + new.seconds)


def quiz_with_bars(runtime: Runtime, slugs: Sequence[str], systems: Sequence[str],
                   decoding: DecodingSettings, label: str = "",
                   batch_size: int = 8) -> QuizReport:
    """`run_quiz` of `slugs` on a fresh evaluation memory, with progress bars in the
    terminal."""
    bars = StageBars()
    with evaluation_memory(systems, [runtime.character(slug) for slug in slugs]) as memory:
        try:
            return run_quiz(runtime, slugs, systems, decoding, memory, label, batch_size, bars)
        finally:
            bars.close()


def run_quiz_command(settings: Settings, args: argparse.Namespace) -> int:
    """Quiz the chosen characters (default: every one with a quiz) and print the tables;
    with --out, add the systems to that report (so runs of other blocks join one table)."""
    runtime = load_runtime(settings)
    slugs = args.characters or sorted(
        slug for slug, c in runtime.characters.items() if (c.folder / QUIZ_FILE).is_file())
    if not slugs:
        raise ValueError(f"no character has a {QUIZ_FILE}")
    if args.blocks_from:
        replace_blocks(runtime, Path(args.blocks_from), slugs)
    decoding = heldout_decoding(args.sample, args.max_new_tokens, args.seed,
                                args.max_sentences)
    report = quiz_with_bars(runtime, slugs, args.systems, decoding, args.label,
                            args.batch_size)
    if args.out and Path(args.out).is_file():
        report = merged(QuizReport.from_dict(json.loads(Path(args.out).read_text())), report)
    print(format_quiz_report(report))
    if args.out:
        atomic_write_json(args.out, report.to_dict())
        print(f"\nreport with every reply written to {args.out}")
    return 0


def run_recall_command(settings: Settings, args: argparse.Namespace) -> int:
    """Put the recall probes to the chosen characters (default: all) and print the scores."""
    runtime = load_runtime(settings)
    slugs = args.characters or sorted(runtime.characters)
    characters = [runtime.character(slug) for slug in slugs]
    bars = StageBars()
    with scratch_knowledge(characters) as memory, while_another_decodes():
        engine = ChatEngine(runtime, memory, GREEDY)  # its scheduler decodes on every core
        try:
            report = run_recall(engine, memory, slugs, progress=bars)
        finally:
            bars.close()
            engine.close()
    print("| character | facts recalled |\n|---|---|")
    for slug in slugs:
        print(f"| {slug} | {report.accuracy(slug):.2f} |")
    print(f"| **overall** | {report.accuracy():.2f} |\n\nturn 1 put back in the prompt by "
          f"memory: {report.retrieved_rate():.2f} of the probes")
    if args.out:
        atomic_write_json(args.out, report.to_dict())
        print(f"\nreport with every reply written to {args.out}")
    return 0

"""`neeko eval`: run dialogue scripts through the chat model, score them, write the report."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from neeko_app.characters.card import HELDOUT_FILE
from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.evaluation.cli_heldout import StageBars, sentence_limited
from neeko_app.evaluation.heldout import HeldoutOptions, run_heldout_evaluation
from neeko_app.evaluation.incremental import (
    IncrementalResult,
    incremental_result,
    replay_scripts,
)
from neeko_app.evaluation.judge import Judge, judge_replies
from neeko_app.evaluation.report import PerplexityMatrix, write_report
from neeko_app.evaluation.role_identification import identification_cast, profile_embedding
from neeko_app.evaluation.runner import ReplyLog, ScriptedReply, run_scripts
from neeko_app.evaluation.scoring import Scores, score
from neeko_app.evaluation.script import (
    SHIPPED_SCRIPTS,
    first_exchanges,
    load_script,
    only_characters,
)
from neeko_app.evaluation.systems import evaluation_memory
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.training.baselines import load_lora_mix


def script_paths(names: list[str]) -> list[Path]:
    """Paths of the scripts named (a path, or a shipped script's name); all shipped ones
    when none is named."""
    if not names:
        return sorted(SHIPPED_SCRIPTS.glob("*.yaml"))
    paths = []
    for name in names:
        path = Path(name) if name.endswith((".yaml", ".yml")) else SHIPPED_SCRIPTS / f"{name}.yaml"
        if not path.is_file():
            shipped = ", ".join(p.stem for p in sorted(SHIPPED_SCRIPTS.glob("*.yaml")))
            raise ValueError(f"no script {name!r}; shipped scripts: {shipped}")
        paths.append(path)
    return paths


def run_eval_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run, score and report; a re-run with the same --out resumes the replies log."""
    scripts = [first_exchanges(load_script(path), args.limit)
               for path in script_paths(args.scripts)]
    if args.characters:
        scripts = [s for s in (only_characters(s, args.characters) for s in scripts) if s]
        if not scripts:
            raise ValueError(f"no script puts questions to {', '.join(args.characters)}")
    runtime = load_runtime(settings)
    if "lora-mix" in args.systems:
        load_lora_mix(runtime.model, settings)
    if args.incremental and (args.incremental not in runtime.model.block_names
                             or "blocks" not in args.systems):
        raise ValueError(f"--incremental {args.incremental} needs that character's own "
                         "block and the blocks system")
    out = Path(args.out) if args.out else settings.reports_dir / "latest"
    started = time.perf_counter()
    decoding = sentence_limited(DecodingSettings(max_new_tokens=args.max_new_tokens,
                                                 temperature=0.0), args.max_sentences)
    with evaluation_memory(args.systems, runtime.characters.values()) as memory, \
            _bar("replies") as progress:
        replies = run_scripts(runtime, scripts, args.systems, ReplyLog(out / "replies.jsonl"),
                              memory, decoding, args.batch_size, progress)
    evaluated = sorted({r.character for r in replies})  # those of earlier runs in --out too
    profiles = {c.slug: profile_embedding(c)
                for c in identification_cast(runtime.characters, evaluated)}
    table = score(replies, profiles)
    perplexity = _perplexity(runtime, evaluated, args.perplexity, args.batch_size)
    incremental = None
    if args.incremental:
        incremental = _incremental(runtime, scripts, replies, table, profiles, args, decoding,
                                   out)
    judged = None
    if args.judge_url:
        judge = Judge(args.judge_url, args.judge_model, args.judge_key)
        try:
            judged = judge_replies(judge, runtime.characters, replies)
        finally:
            judge.close()
    meta = {"scripts": sorted({r.script for r in replies}),
            "systems": list(dict.fromkeys(r.system for r in replies)),
            "base_model": runtime.base.model_id, "max_new_tokens": args.max_new_tokens,
            "max_sentences": decoding.max_sentences,
            "turns_per_script": args.limit,
            "identified_among": list(profiles),
            "judge": args.judge_model if args.judge_url else None,
            "seconds": round(time.perf_counter() - started, 1)}
    paths = write_report(out, table, "Scripted evaluation", meta, judged, perplexity,
                         incremental)
    print((out / "report.md").read_text())
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


@contextmanager
def _bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar fed by the runner's (done, total) reports."""
    with tqdm(desc=description, unit="reply") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def _perplexity(runtime: Runtime, evaluated: list[str], conversations: int,
                batch_size: int) -> PerplexityMatrix | None:
    """The perplexity matrix over the evaluated characters that have a block and a held-out
    set (`conversations` of it each); None when off or fewer than two such characters."""
    slugs = [s for s in evaluated if s in runtime.model.block_names
             and (runtime.character(s).folder / HELDOUT_FILE).is_file()]
    if conversations == 0 or len(slugs) < 2:
        return None
    bars = StageBars()
    try:
        report = run_heldout_evaluation(runtime, slugs, HeldoutOptions(
            limit=conversations, batch_size=batch_size, systems=()), bars)
    finally:
        bars.close()
    return PerplexityMatrix(slugs, report.perplexity, conversations)


def _incremental(runtime: Runtime, scripts: list, replies: list[ScriptedReply],
                 table: dict[str, dict[str, Scores]], profiles: dict, args: argparse.Namespace,
                 decoding: DecodingSettings, out: Path) -> IncrementalResult:
    """Before/after adding `args.incremental`: a sample of the other characters' replies
    regenerated with its block removed (the runtime is not used afterwards)."""
    runtime.model.remove_block(args.incremental)
    with _bar(f"replies without {args.incremental}") as progress:
        replayed = run_scripts(runtime, replay_scripts(scripts, args.incremental), ["blocks"],
                               ReplyLog(out / "replies-before.jsonl"), None, decoding,
                               args.batch_size, progress)
    return incremental_result(table, replies, replayed, profiles, args.incremental)

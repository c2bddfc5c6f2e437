"""`neeko eval`: run dialogue scripts through the chat model, score them, write the report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.evaluation.judge import Judge, judge_replies
from neeko_app.evaluation.report import write_report
from neeko_app.evaluation.role_identification import profile_embedding
from neeko_app.evaluation.runner import ReplyLog, run_scripts
from neeko_app.evaluation.scoring import score
from neeko_app.evaluation.script import SHIPPED_SCRIPTS, load_script
from neeko_app.evaluation.systems import evaluation_memory
from neeko_app.runtime import load_runtime
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
    scripts = [load_script(path) for path in script_paths(args.scripts)]
    runtime = load_runtime(settings)
    if "lora-mix" in args.systems:
        load_lora_mix(runtime.model, settings)
    out = Path(args.out)
    started = time.perf_counter()
    with evaluation_memory(args.systems, runtime.characters.values()) as memory, \
            tqdm(desc="replies", unit="reply") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        replies = run_scripts(
            runtime, scripts, args.systems, ReplyLog(out / "replies.jsonl"), memory,
            DecodingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0),
            args.batch_size, progress)
    evaluated = sorted({c for script in scripts for c in script.characters})
    profiles = {slug: profile_embedding(runtime.character(slug)) for slug in evaluated}
    table = score(replies, profiles)
    judged = None
    if args.judge_url:
        judge = Judge(args.judge_url, args.judge_model, args.judge_key)
        try:
            judged = judge_replies(judge, runtime.characters, replies)
        finally:
            judge.close()
    meta = {"scripts": [s.name for s in scripts], "systems": list(args.systems),
            "base_model": runtime.base.model_id, "max_new_tokens": args.max_new_tokens,
            "judge": args.judge_model if args.judge_url else None,
            "seconds": round(time.perf_counter() - started, 1)}
    paths = write_report(out, table, "Scripted evaluation", meta, judged)
    print((out / "report.md").read_text())
    print("written: " + ", ".join(str(p) for p in paths))
    return 0

"""The fact quiz (blocks + memory, greedy) with the note-copy bias at the given values.

    python reports/note-copy-2026-12-05/copy_bias_quiz.py 0 1.5 3 [--characters SLUG ...]

Writes quiz-copy-bias-<value>[-<dtype>].json beside this script (the dtype part when
NEEKO_DTYPE is set) and prints one accuracy line per run.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from neeko_app.characters.facts import QUIZ_FILE
from neeko_app.config import Settings
from neeko_app.evaluation.quiz import GREEDY, run_quiz
from neeko_app.evaluation.systems import evaluation_memory
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("biases", nargs="+", type=float)
    parser.add_argument("--characters", nargs="*")
    args = parser.parse_args()
    settings = Settings.from_env()
    suffix = "" if settings.dtype == "auto" else f"-{settings.dtype}"
    runtime = load_runtime(settings)
    slugs = args.characters or sorted(
        slug for slug, c in runtime.characters.items() if (c.folder / QUIZ_FILE).is_file())
    characters = [runtime.character(slug) for slug in slugs]
    with evaluation_memory(["blocks+memory"], characters) as memory:
        for bias in args.biases:
            decoding = dataclasses.replace(GREEDY, copy_bias=bias, max_sentences=0)
            report = run_quiz(runtime, slugs, ["blocks+memory"], decoding, memory)
            atomic_write_json(HERE / f"quiz-copy-bias-{bias:g}{suffix}.json", report.to_dict())
            per = " ".join(f"{s}={report.accuracy('blocks+memory', s):.2f}" for s in slugs)
            print(f"bias {bias:g}{suffix}: accuracy {report.accuracy('blocks+memory'):.3f} "
                  f"in-role {report.in_role_rate('blocks+memory'):.3f} "
                  f"relevance {report.relevance('blocks+memory'):.3f} | {per}", flush=True)


if __name__ == "__main__":
    main()

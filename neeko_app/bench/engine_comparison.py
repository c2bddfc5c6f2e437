"""Chat engines of several configurations timed side by side in one process, as a user
meets them: first token, one session's long replies, eight sessions at once, and the whole
reply at the app's defaults. Report scripts name the configurations; this runs them."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from neeko_app.bench.end_to_end import (
    QUESTIONS,
    sessions_at_once,
    timed_reply,
    whole_reply_seconds,
)
from neeko_app.bench.results import machine
from neeko_app.bench.timing import medians_against
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import PROJECT_ROOT, Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import Runtime, load_runtime

OPENERS = PROJECT_ROOT / "reports" / "reply-length-2026-12-05" / "openers-sampled.json"
CASES = ("first token s", "one session tokens/s", "8 sessions tokens/s",
         "whole default reply s")
LONG_REPLIES = DecodingSettings(max_new_tokens=64, seed=0, max_sentences=0)


def sampled_openers(path: Path = OPENERS, per_character: int = 2) -> list[tuple[str, str]]:
    """(character, opener) pairs: the first `per_character` openers of each character in a
    stored sample of held-out openers."""
    chosen: dict[str, list[str]] = {}
    for answer in json.loads(path.read_text())["answers"]:
        asked = chosen.setdefault(answer["character"], [])
        if len(asked) < per_character:
            asked.append(answer["question"])
    return [(slug, q) for slug, questions in sorted(chosen.items()) for q in questions]


def default_reply_seconds(engine: ChatEngine, asked: list[tuple[str, str]],
                          overrides: Mapping[str, object] | None = None) -> float:
    """Median seconds to the whole reply at the app's defaults (but `overrides`, decoding
    settings by name), seed k for opener k."""
    return statistics.median(
        whole_reply_seconds(engine, slug, question, DecodingSettings(seed=k, **(overrides or {})))
        for k, (slug, question) in enumerate(asked))


def measure_round(engine: ChatEngine, done: int, slugs: list[str], asked: list[tuple[str, str]],
                  overrides: Mapping[str, object]) -> tuple[float, ...]:
    """The CASES of round `done` for `engine`: first token and tokens/s of one session
    (question and character by round), tokens/s of 8 sessions at once, and the median
    whole reply at the app's defaults (`overrides` aside) to the `asked` openers."""
    return (*timed_reply(engine, slugs[done % len(slugs)], QUESTIONS[done % len(QUESTIONS)],
                         f"speed-{time.time()}"),
            sessions_at_once(engine, 8),
            default_reply_seconds(engine, asked, overrides))


def compare_engines(configs: Mapping[str, Mapping[str, str]], rounds: int,
                    ratio_label: str = "reference",
                    prepare: Mapping[str, Callable[[Runtime], None]] | None = None,
                    decoding: Mapping[str, Mapping[str, object]] | None = None) -> dict:
    """Time one chat engine per configuration (`Settings` fields by name; the first is the
    reference) on the embedded model with memory, `rounds` rounds after a warm-up round,
    engines in turn within each round. `prepare` is called, by configuration name, on that
    runtime once loaded (for switches that no setting holds); `decoding` changes, by
    configuration name, decoding settings of all its replies. Prints every measurement;
    returns medians with ratios to the reference (named "<case> x <ratio_label>"), and every
    sample.

    The engines share the process's pools of OpenMP threads, and every scheduler that has
    computed keeps one (`compute_threads`), so all of them run slower than one alone would:
    fair for comparing settings, not for what the app does (`bench.engine_processes`)."""
    scratch = Path(tempfile.mkdtemp(prefix="neeko-engines-"))
    memory = MemoryStore.open(scratch / "memory")
    overrides = {name: dict((decoding or {}).get(name, {})) for name in configs}
    engines = {}
    for name, fields in configs.items():
        settings = Settings.from_env(memory_dir=scratch / "memory",
                                     sessions_dir=scratch / "sessions", **fields)
        runtime = load_runtime(settings, report=lambda _: None)
        if prepare and name in prepare:
            prepare[name](runtime)
        engines[name] = ChatEngine(runtime, memory, replace(LONG_REPLIES, **overrides[name]))
    reference = next(iter(engines))
    index_characters(memory, engines[reference].runtime.characters.values())
    slugs, asked = sorted(engines[reference].runtime.characters), sampled_openers()
    samples = {name: {case: [] for case in CASES} for name in engines}
    for done in range(rounds + 1):
        for name, engine in engines.items():
            measured = measure_round(engine, done, slugs, asked, overrides[name])
            print(f"round {done} {name} ({engine.runtime.base.dtype}): " + ", ".join(
                f"{v:.2f} {c}" for c, v in zip(CASES, measured, strict=True)), flush=True)
            if done:
                for case, value in zip(CASES, measured, strict=True):
                    samples[name][case].append(value)
    rows = medians_against(samples, reference, ratio_label)
    for row in rows:
        row["dtype"] = str(engines[row["configuration"]].runtime.base.dtype)
        print(row, flush=True)
    for engine in engines.values():
        engine.close()
    return {"machine": machine(engines[reference].runtime.base.device), "rounds": rounds,
            "reply_tokens": LONG_REPLIES.max_new_tokens, "rows": rows, "samples": samples}

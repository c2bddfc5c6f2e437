"""How often does a new version of a one-sentence reply ("↻ Regenerate") repeat one the
user has already seen?

    python reports/reply-length-2026-12-05/versions.py [--versions 3]

The 35 openers of `openers-sampled.json` through the chat engine on the embedded model
(memory on, one sentence), each answered `--versions` times with other seeds: once with the
first sentence sampled at the opening temperature (0.3) for every version, once with the
versions after the first sampled at the temperature (0.7) throughout. Prints, for each,
the share of later versions identical to an earlier one of the same question.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.prompt import Turn
from neeko_app.config import Settings
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.runtime import load_runtime

HERE = Path(__file__).parent


def repeats(engine: ChatEngine, questions, versions: int, hot_after_first: bool) -> float:
    """The share of versions after the first that repeat an earlier version."""
    repeated = 0
    for k, (slug, question) in enumerate(questions):
        seen: list[str] = []
        for v in range(versions):
            decoding = replace(engine.decoding, seed=1000 * v + k)
            if v and hot_after_first:
                decoding = replace(decoding, opening_temperature=0.0)
            text = engine.reply(slug, [Turn("user", question)], decoding=decoding).result()
            repeated += v > 0 and text.strip() in seen
            seen.append(text.strip())
    return repeated / (len(questions) * (versions - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=3)
    args = parser.parse_args()
    questions = [(a["character"], a["question"]) for a in
                 json.loads((HERE / "openers-sampled.json").read_text())["answers"]]
    runtime = load_runtime(Settings.from_env(), report=lambda _: None)
    with scratch_knowledge([runtime.character(s) for s in {s for s, _ in questions}]) as memory:
        engine = ChatEngine(runtime, memory)
        try:
            for hot in (False, True):
                rule = "later versions at 0.7" if hot else "every version opened at 0.3"
                print(f"{rule}: {repeats(engine, questions, args.versions, hot):.2f} of "
                      "later versions repeat an earlier one")
        finally:
            engine.close()


if __name__ == "__main__":
    main()

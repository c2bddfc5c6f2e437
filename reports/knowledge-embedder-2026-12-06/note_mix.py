"""Which notes should go beside the first? The greedy quiz (blocks + memory, one sentence,
the app's defaults) with the three notes taken from two rankings: the tuned knowledge
encoder's and plain MiniLM's.

    python reports/knowledge-embedder-2026-12-06/note_mix.py VARIANT ... --out FILE

Variants: "tuned" (the app with the tuned encoder), "plain" (the app before it), and
"tuned-first": the tuned encoder's best note, then plain MiniLM's best others.
"""

from __future__ import annotations

import argparse
import json

from neeko_app.config import Settings
from neeko_app.evaluation import systems
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.memory import MiniLMEmbeddings
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"
APP_NOTES = systems.character_knowledge
VARIANTS = ("tuned", "plain", "tuned-first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", choices=VARIANTS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env())
    slugs = sorted(runtime.characters)
    results = {}
    with scratch_knowledge(runtime.characters.values(), MiniLMEmbeddings()) as plain:
        for variant in args.variants:
            def chosen_notes(memory, slug, message, k, variant=variant):
                tuned = APP_NOTES(memory, slug, message, k)
                if variant == "tuned" or not tuned:
                    return tuned
                others = APP_NOTES(plain, slug, message, k + 1)
                if variant == "plain":
                    return others[:k]
                return (tuned[:1] + [c for c in others if c.text != tuned[0].text])[:k]

            systems.character_knowledge = chosen_notes
            report = quiz_with_bars(runtime, slugs, [SYSTEM], heldout_decoding(False, None, 0),
                                    variant)
            results[variant] = report.to_dict()
            print(json.dumps({"variant": variant, **report.to_dict()["accuracy"]}), flush=True)
            atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()

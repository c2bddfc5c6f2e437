"""The fact quiz as users meet it (the chat app's sampling), and how alike two swipes open.

    python reports/sampled-quiz-2026-12-05/sampled_quiz.py quiz 0.3 OUT.json [--seed 1000]
    python reports/sampled-quiz-2026-12-05/sampled_quiz.py swipes 0,0.3,0.5 8 swipes.json

`quiz OPENING OUT`: every character's quiz put to blocks+memory with the chat app's
decoding (temperature 0.7, top-p 0.9, 160 tokens, seed SEED + k for reply k) and the first
sentence sampled at most at OPENING (0: at 0.7 throughout), as `neeko quiz --sample`.
`swipes OPENINGS PER OUT`: the first PER held-out opening questions of every character,
answered twice (seeds 0 + k and 1000 + k, 48 tokens, blocks+memory) at each opening
temperature; prints the share of pairs whose first sentences are the same.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from neeko_app.characters.card_text import first_sentence
from neeko_app.chat.generation import DecodingSettings
from neeko_app.config import Settings
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.evaluation.heldout import generated_replies
from neeko_app.evaluation.quiz import format_quiz_report
from neeko_app.evaluation.systems import evaluation_memory, system_request
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json

SYSTEM = "blocks+memory"


def quiz(opening: float, out: str, seed: int = 0) -> None:
    """The sampled quiz at one opening temperature, written to `out`."""
    runtime = load_runtime(Settings.from_env())
    slugs = sorted(runtime.characters)
    decoding = DecodingSettings(seed=seed, opening_temperature=opening,
                                max_sentences=0)
    report = quiz_with_bars(runtime, slugs, [SYSTEM], decoding, f"opening{opening:g}-seed{seed}")
    print(format_quiz_report(report))
    atomic_write_json(out, report.to_dict())


def swipes(openings: list[float], per: int, out: str) -> None:
    """Two seeds' replies to held-out openers at each opening temperature, written to `out`."""
    runtime = load_runtime(Settings.from_env())
    characters = [runtime.character(s) for s in sorted(runtime.characters)]
    asked = [(c, json.loads(line)["turns"][0]["text"]) for c in characters
             for line in (c.folder / "heldout.jsonl").read_text().splitlines()[:per]]
    result = {}
    with evaluation_memory([SYSTEM], characters) as memory:
        for opening in openings:
            decoding = DecodingSettings(max_new_tokens=48, opening_temperature=opening,
                                        max_sentences=0)
            replies = [generated_replies(runtime, [
                system_request(SYSTEM, runtime, character, [], question, memory,
                               replace(decoding, seed=first + k))[1]
                for k, (character, question) in enumerate(asked)], 8)[0]
                for first in (0, 1000)]
            same = [first_sentence(a, limit=None) == first_sentence(b, limit=None)
                    for a, b in zip(*replies, strict=True)]
            result[f"{opening:g}"] = {
                "same_first_sentence": sum(same) / len(same),
                "pairs": [{"character": c.slug, "question": q, "seed0": a, "seed1000": b}
                          for (c, q), a, b in zip(asked, *replies, strict=True)]}
            print(f"opening {opening:g}: same first sentence {sum(same) / len(same):.2f}",
                  flush=True)
    atomic_write_json(out, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("quiz")
    one.add_argument("opening", type=float)
    one.add_argument("out")
    one.add_argument("--seed", type=int, default=0, help="reply k uses seed SEED + k")
    two = commands.add_parser("swipes")
    two.add_argument("openings", type=lambda text: [float(x) for x in text.split(",")])
    two.add_argument("per", type=int)
    two.add_argument("out")
    args = parser.parse_args()
    if args.command == "quiz":
        quiz(args.opening, args.out, args.seed)
    else:
        swipes(args.openings, args.per, args.out)


if __name__ == "__main__":
    main()

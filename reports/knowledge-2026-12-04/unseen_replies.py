"""Replies to questions that are in no training or quiz file, as the chat app makes them
(shipped blocks, memory with the fact notes, the app's sampling, one fresh session each).

    python reports/knowledge-2026-12-04/unseen_replies.py [--seed 0] [--questions FILE] \
        [--max-sentences N] > unseen-replies.md

`--questions` takes a JSON list of [character, question] pairs instead of the ten below.
`--max-sentences` ends each reply after N sentences, as the app does since 2026-12-05
(default 0: whole replies, as this report ran).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn
from neeko_app.config import Settings
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.runtime import load_runtime

QUESTIONS = (
    ("newton", "Sir Isaac, what made you leave Cambridge for London in the end?"),
    ("newton", "Which of your discoveries would you keep if you could keep one?"),
    ("newton", "Did your mother want you to become a farmer?"),
    ("newton", "What do you think of Mr Leibniz these days?"),
    ("newton", "Tell me about the house where you grew up."),
    ("caesar", "Who taught you to speak so well in the courts?"),
    ("caesar", "What was the hardest siege of your life?"),
    ("caesar", "How did you come to be pontifex maximus?"),
    ("socrates", "Who is the woman you married?"),
    ("beethoven", "Which of your symphonies is dearest to you?"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questions", type=Path, default=None)
    parser.add_argument("--max-sentences", type=int, default=0)
    args = parser.parse_args()
    questions = ([tuple(pair) for pair in json.loads(args.questions.read_text(encoding="utf-8"))]
                 if args.questions else QUESTIONS)
    data = Path(__file__).resolve().parents[2] / "characters"
    written = "\n".join(p.read_text(encoding="utf-8") for p in data.glob("*/*.jsonl"))
    leaked = [q for _, q in questions if q in written]
    if leaked:
        raise SystemExit(f"these questions are in a data file: {leaked}")
    runtime = load_runtime(Settings.from_env(), report=lambda _: None)
    slugs = sorted({slug for slug, _ in questions})
    with scratch_knowledge([runtime.character(s) for s in slugs]) as memory:
        engine = ChatEngine(runtime, memory)
        try:
            for k, (slug, question) in enumerate(questions):
                decoding = DecodingSettings(seed=args.seed + k, max_sentences=args.max_sentences)
                reply = engine.reply(slug, [Turn("user", question)], decoding=decoding)
                reply.result()
                notes = "; ".join(chunk.text for chunk in reply.context.knowledge)
                print(f"**{runtime.character(slug).name}** — *{question}*\n\n"
                      f"> {reply.finished_text}\n\nnotes in the prompt: {notes}\n")
        finally:
            engine.close()


if __name__ == "__main__":
    main()

"""Sampled chat replies with the app's decoding, for two characters folders side by side:
how many run to the length cap (the block did not end its turn) or stray into other scripts.

    python reports/heldout-keep-best-2026-12-02/sampled_replies.py LAST_EPOCH_DIR BEST_EPOCH_DIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn, character_header, render_prompt
from neeko_app.chat.scheduler import BatchScheduler, GenerationRequest, gate_row
from neeko_app.config import Settings
from neeko_app.runtime import load_runtime

OTHER_SCRIPTS = re.compile(r"[\u0400-\u04FF\u3000-\u9FFF]")  # Cyrillic, CJK
CHARACTERS = ("cleopatra", "spartacus", "martin-luther-king", "beethoven")
QUESTIONS = ("Who are you, and where do you live?", "What do you think of Octavian?",
             "What is a smartphone?", "Tell me about your childhood.",
             "What are you afraid of?", "Do you like music?")
SEEDS = range(4)


def sample(characters_dir: str) -> list[dict]:
    """Every (character, question, seed) reply from the characters in `characters_dir`."""
    runtime = load_runtime(Settings.from_env(characters_dir=characters_dir),
                           report=lambda _: None)
    tokenizer = runtime.base.tokenizer
    rows, requests = [], []
    for slug in CHARACTERS:
        character = runtime.character(slug)
        for question in QUESTIONS:
            prompt = render_prompt(character_header(character), [Turn("user", question)])
            ids = tuple(tokenizer(prompt, add_special_tokens=False).input_ids)
            for seed in SEEDS:
                rows.append({"character": slug, "question": question, "seed": seed})
                requests.append(GenerationRequest(ids, gate_row(runtime.gate_for(character)),
                                                  DecodingSettings(seed=seed, max_sentences=0)))
    scheduler = BatchScheduler(runtime.model, tokenizer, max_batch=24)
    try:
        streams = scheduler.submit_many(requests)
        for row, stream in zip(rows, streams, strict=True):
            row.update(reply="".join(stream), finish_reason=stream.finish_reason)
    finally:
        scheduler.close()
    return rows


def main(directories: list[str]) -> None:
    results = {}
    for directory in directories:
        results[directory] = rows = sample(directory)
        for slug in CHARACTERS:
            mine = [r for r in rows if r["character"] == slug]
            capped = sum(r["finish_reason"] == "length" for r in mine)
            strays = sum(bool(OTHER_SCRIPTS.search(r["reply"])) for r in mine)
            print(f"{directory}  {slug:20s} length-capped {capped}/{len(mine)}  "
                  f"other scripts {strays}/{len(mine)}", flush=True)
    out = Path(__file__).with_name("sampled-replies.json")
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])

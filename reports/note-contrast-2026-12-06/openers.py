"""Held-out chat openers answered as the app answers them, without and with the note
contrast, side by side for reading.

    python reports/note-contrast-2026-12-06/openers.py A --out openers.md

The 35 held-out openers of `reply-length-2026-12-05` (5 per character), each in a fresh
conversation on the embedded model with the shipped blocks and memory, at the app's
decoding (seed k for opener k), note contrast 0 and `A`. Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from neeko_app.bench.engine_comparison import sampled_openers
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weight", type=float)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="neeko-openers-"))
    memory = MemoryStore.open(scratch / "memory")
    runtime = load_runtime(Settings.from_env(memory_dir=scratch / "memory"))
    index_characters(memory, runtime.characters.values())
    engine = ChatEngine(runtime, memory)
    lines = [f"| character | opener | contrast 0 | contrast {args.weight:g} |", "|---|---|---|---|"]
    for k, (slug, opener) in enumerate(sampled_openers(per_character=5)):
        replies = [engine.reply(slug, [Turn("user", opener)],
                                decoding=DecodingSettings(seed=k, note_contrast=weight)).result()
                   for weight in (0.0, args.weight)]
        lines.append(f"| {slug} | {opener} | " + " | ".join(r.replace("|", "/") for r in replies)
                     + " |")
        print(lines[-1], flush=True)
    engine.close()
    atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

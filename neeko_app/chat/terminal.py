"""`neeko chat`: a streaming chat with one character in the terminal."""

from __future__ import annotations

import argparse
import sys

from neeko_app.chat.generation import DecodingSettings, stream_reply
from neeko_app.chat.prompt import Turn, character_header, fit_history, render_prompt
from neeko_app.config import Settings
from neeko_app.runtime import load_runtime

HELP = "Commands: /reset starts over, /quit (or Ctrl-D) leaves."
PROMPT_BUDGET = 1024


def run_terminal_chat(settings: Settings, args: argparse.Namespace) -> int:
    """Chat with `args.character` until /quit or end of input; returns an exit code."""
    runtime = load_runtime(settings)
    if not runtime.characters:
        raise ValueError(f"no characters found in {settings.characters_dir}")
    character = runtime.character(args.character or next(iter(runtime.characters)))
    gate = runtime.gate_for(character)
    mode = ("own block" if character.slug in runtime.model.block_names
            else "fusion of trained blocks" if gate is not None else "profile only (no blocks)")
    decoding = DecodingSettings(max_new_tokens=args.max_new_tokens,
                                temperature=args.temperature, seed=args.seed)
    tokenizer = runtime.base.tokenizer
    header = character_header(character)
    print(f"{character.name} ({mode}). {HELP}\n")
    print(f"{character.name}: {character.greeting}\n")
    history: list[Turn] = []
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if message in ("/quit", "/exit"):
            return 0
        if message == "/reset":
            history = []
            print("(conversation cleared)\n")
            continue
        if not message:
            continue
        turns = fit_history(history + [Turn("user", message)],
                            lambda text: len(tokenizer(text, add_special_tokens=False).input_ids),
                            PROMPT_BUDGET, header)
        print(f"{character.name}: ", end="", flush=True)
        pieces = []
        for piece in stream_reply(runtime.model, tokenizer, render_prompt(header, turns), gate,
                                  decoding):
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        print("\n")
        history = turns + [Turn("character", "".join(pieces).strip())]

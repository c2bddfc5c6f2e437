"""`neeko chat`: a streaming chat with one character in the terminal.

It runs on the same `ChatEngine` as the web app and the API: the same prompt, retrieval
memory, decoding and saved sessions.
"""

from __future__ import annotations

import argparse
import sys

from neeko_app.characters.registry import discover_characters, find_character
from neeko_app.chat.session import SessionError
from neeko_app.chat.startup import build_engine
from neeko_app.cli import decoding_settings
from neeko_app.config import Settings

HELP = ("Commands: /more goes on with the last reply (replies end after one sentence by "
        "default), /reset starts over, /quit (or Ctrl-D) leaves.")


def run_terminal_chat(settings: Settings, args: argparse.Namespace) -> int:
    """Chat with `args.character` until /quit or end of input; returns an exit code.

    The character is looked up before anything is loaded: a wrong name costs nothing and
    leaves memory untouched."""
    decoding = decoding_settings(args, seed=args.seed)
    characters = discover_characters(*settings.character_dirs).characters
    if not characters:
        raise ValueError("no characters found in "
                         + " or ".join(map(str, settings.character_dirs)))
    slug = find_character(characters, args.character or next(iter(characters))).slug
    engine = build_engine(settings, decoding, use_memory=not args.no_memory,
                          report=lambda line: print(line, file=sys.stderr))
    try:
        runtime = engine.runtime
        character = runtime.character(slug)
        session = engine.open_session([slug])
        print(f"{character.name} ({runtime.playing_mode(character)}). {HELP}\n")
        print(f"{character.name}: {character.greeting}\n")
        while True:
            try:
                message = input("you> ").strip()
            except EOFError:
                print()
                return 0
            if message in ("/quit", "/exit"):
                return 0
            if message == "/reset":
                engine.reset(session)
                print("(conversation cleared)\n")
                continue
            if message == "/more":
                try:
                    reply = engine.continue_reply(session)
                except SessionError:
                    print("(no reply to go on with yet)\n")
                    continue
                _print_reply(f"{character.name} (on)", reply)
                continue
            if message:
                _print_reply(character.name, engine.send(session, message)[0])
    finally:
        engine.close()


def _print_reply(name: str, reply) -> None:
    print(f"{name}: ", end="", flush=True)
    for piece in reply:
        sys.stdout.write(piece)
        sys.stdout.flush()
    print("\n")

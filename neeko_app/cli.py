"""The `neeko` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from neeko_app.config import Settings
from neeko_app.training.trainer import TrainingConfig


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-model", help="'embedded' (default), 'tiny' or a local HF model dir")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", help="auto (default), float32, bfloat16, float16")
    parser.add_argument("--characters-dir", help="folder of characters (default: ./characters)")
    parser.add_argument("--cache-dir", help="model cache (default: ~/.cache/neeko-app)")


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    defaults = TrainingConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens,
                        help="longest training conversation, in tokens")


def _training_config(args: argparse.Namespace) -> TrainingConfig:
    return TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, max_tokens=args.max_tokens)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(base_model=args.base_model, device=args.device, dtype=args.dtype,
                             characters_dir=args.characters_dir, cache_dir=args.cache_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neeko", description="Role-play chat: one base model, many characters.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser("chat", help="chat with a character in the terminal")
    chat.add_argument("character", nargs="?", help="character id (default: the first one)")
    chat.add_argument("--max-new-tokens", type=int, default=160)
    chat.add_argument("--temperature", type=float, default=0.7)
    chat.add_argument("--seed", type=int)
    _add_model_flags(chat)

    train = commands.add_parser("train", help="agent pre-training: train blocks for characters")
    train.add_argument("characters", nargs="+", help="character ids to train together")
    _add_training_flags(train)
    _add_model_flags(train)

    add = commands.add_parser("add-character", help="add a character folder to the app")
    add.add_argument("path", help="folder with character.json (+ dialogues.jsonl for expansion)")
    add.add_argument("--mode", choices=["fusion", "expansion"], default="fusion",
                     help="fusion: no training, mix existing blocks; expansion: train a new block")
    _add_training_flags(add)
    _add_model_flags(add)

    characters = commands.add_parser("characters", help="list characters and their state")
    characters.add_argument("--characters-dir")

    export = commands.add_parser("export", help="export a character's block as a PEFT adapter")
    export.add_argument("character")
    export.add_argument("--peft", required=True, metavar="DIR", help="output directory")
    _add_model_flags(export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from neeko_app.characters.card import CharacterError
    from neeko_app.model import ModelLoadError

    try:
        if args.command == "chat":
            from neeko_app.chat.terminal import run_terminal_chat

            return run_terminal_chat(_settings(args), args)
        if args.command in ("train", "add-character"):
            from neeko_app.training.cli_progress import run_training_command

            return run_training_command(_settings(args), args, _training_config(args))
        if args.command == "characters":
            return _list_characters(Settings.from_env(characters_dir=args.characters_dir))
        if args.command == "export":
            return _export(_settings(args), args)
    except (CharacterError, ModelLoadError, ValueError, KeyError) as err:
        print(f"neeko: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 1


def _list_characters(settings: Settings) -> int:
    from neeko_app.runtime import discover_characters

    characters, problems = discover_characters(settings.characters_dir)
    for slug, character in characters.items():
        state = "trained block" if character.block_path.is_file() else "fusion (no block)"
        print(f"{slug:20} {state:18} {character.name}: {character.description}")
    for slug, problem in problems.items():
        print(f"{slug:20} BROKEN             {problem}")
    if not characters and not problems:
        print(f"no characters in {settings.characters_dir}")
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from neeko_app.moelora.peft_export import export_peft
    from neeko_app.runtime import load_runtime

    runtime = load_runtime(settings)
    runtime.character(args.character)
    if args.character not in runtime.model.block_names:
        raise ValueError(f"{args.character} has no trained block to export (it uses fusion)")
    path = export_peft(runtime.model, args.character, args.peft, runtime.base.model_id)
    print(f"exported {args.character} to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The `neeko` command line: the parser, the flag groups commands share, and the table of
sub-commands. Each command's handler lives beside the code it drives and is imported only
when the command runs, so `neeko --help` stays quick."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import partial
from typing import TYPE_CHECKING

from neeko_app.config import BACKENDS, Settings
from neeko_app.evaluation import (
    ALL_SYSTEMS,
    DEFAULT_SYSTEMS,
    HELDOUT_DEFAULT_SYSTEMS,
    HELDOUT_SYSTEMS,
    QUIZ_SYSTEMS,
)
from neeko_app.training.trainer import EXPANSION_TRAINING, DrillConfig, TrainingConfig

if TYPE_CHECKING:
    from neeko_app.chat.engine import ChatEngine
    from neeko_app.chat.generation import DecodingSettings


def _checked(kind: Callable[[str], float], text: str, ok: Callable[[float], bool],
             wanted: str) -> float:
    """`text` as a `kind` number if `ok` accepts it, else argparse's one-line error."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return int(_checked(int, text, lambda v: v >= 1, "a whole number of at least 1"))


def _non_negative_int(text: str) -> int:
    return int(_checked(int, text, lambda v: v >= 0, "a whole number of at least 0"))


def _positive_float(text: str) -> float:
    return _checked(float, text, lambda v: math.isfinite(v) and v > 0, "a number above 0")


def _non_negative_float(text: str) -> float:
    return _checked(float, text, lambda v: math.isfinite(v) and v >= 0, "a number of at least 0")


def _probability(text: str) -> float:
    return _checked(float, text, lambda v: 0 < v <= 1, "a number above 0 and at most 1")


def _echo_size(text: str) -> int:
    return int(_checked(int, text, lambda v: v == 0 or v >= 2, "0 (off) or a whole number of "
                        "at least 2"))


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def _port(text: str) -> int:
    return int(_checked(int, text, lambda v: 1 <= v <= 65535, "a port number (1-65535)"))


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-model", help="'embedded' (default), 'tiny' or a local HF model dir")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", help="auto (default: bf16 on CUDA and for chat on a CPU that "
                        "multiplies it natively, else fp32; training fp32), float32, bfloat16, "
                        "float16")
    _add_data_flags(parser)
    parser.add_argument("--cache-dir", help="model cache (default: ~/.cache/neeko-app)")


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--characters-dir",
                        help="the shipped characters (default: the app's characters/)")
    parser.add_argument("--data-dir", help="your characters, memory and sessions (default: "
                        "$NEEKO_DATA_DIR, else $XDG_DATA_HOME/neeko-app, else "
                        "~/.local/share/neeko-app)")


def _add_training_flags(parser: argparse.ArgumentParser, defaults: TrainingConfig) -> None:
    parser.add_argument("--epochs", type=_positive_int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size,
                        help=f"conversations per step (default {defaults.batch_size})")
    parser.add_argument("--lr", type=_positive_float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-tokens", type=_positive_int, default=defaults.max_tokens,
                        help="longest training conversation, in tokens")
    parser.add_argument("--with-knowledge", type=_non_negative_int, default=defaults.knowledge_k,
                        metavar="K", help="put the K knowledge chunks the chat app's memory "
                        "retrieves for each conversation's first question into its header "
                        "(default 0: the short header only; raise --max-tokens with it)")
    parser.add_argument("--pack-tokens", type=_non_negative_int, default=defaults.pack_tokens,
                        metavar="N", help="pack each block's conversations into rows of N "
                        f"tokens, no padding (default {defaults.pack_tokens}; 0: one "
                        "conversation a row); --batch-size then counts rows")
    parser.add_argument("--bf16", action="store_true",
                        help="forward passes under bfloat16 autocast, the trained weights "
                        "and optimiser in float32 (about 1.6x faster on a CPU with AMX)")
    parser.add_argument("--keep-best-epoch", action="store_true",
                        help="each block ends with the epoch of its lowest held-out loss "
                             "(characters with a heldout.jsonl; default: the last epoch)")


def _add_drill_flags(parser: argparse.ArgumentParser, defaults: DrillConfig) -> None:
    parser.add_argument("--facts-epochs", type=_positive_int, default=defaults.facts_epochs,
                        help=f"epochs at --facts-lr (default {defaults.facts_epochs})")
    parser.add_argument("--facts-lr", type=_positive_float, default=defaults.facts_lr)
    parser.add_argument("--settle-epochs", type=_non_negative_int,
                        default=defaults.settle_epochs,
                        help="epochs after those at the slower --settle-lr (default "
                             f"{defaults.settle_epochs}; 0: none)")
    parser.add_argument("--settle-lr", type=_positive_float, default=defaults.settle_lr)
    parser.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    parser.add_argument("--fp32", action="store_true",
                        help="forward passes in float32 (default: bfloat16 autocast)")


def _add_memory_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory-dir",
                        help="embedded Chroma store (default: memory/ in the data folder)")
    parser.add_argument("--chroma-url", help="use a `chroma run` server instead, e.g. "
                        "http://127.0.0.1:8001 (default: $NEEKO_CHROMA_URL)")
    parser.add_argument("--no-memory", action="store_true",
                        help="reply without retrieval memory")


# `neeko --help` stays quick: the defaults below are `DecodingSettings`' (a test keeps them
# in step), which is built only when a command runs.
DECODING_FLAGS = {  # flag: (DecodingSettings field, type, help)
    "--max-new-tokens": ("max_new_tokens", _positive_int, "reply length cap in tokens "
                         "(default 160)"),
    "--temperature": ("temperature", _non_negative_float, "sampling temperature (default 0.7; "
                      "0: greedy)"),
    "--top-p": ("top_p", _probability, "sample from the smallest set of tokens holding this "
                "much probability (default 0.9)"),
    "--repetition-penalty": ("repetition_penalty", _positive_float, "penalty on tokens the "
                             "reply has already used (default 1.15; 1: off)"),
    "--no-repeat-ngram": ("no_repeat_ngram_size", _non_negative_int, "no run of this many "
                          "tokens twice in a reply (default 4; 0: off)"),
    "--no-prompt-echo": ("no_prompt_echo", _echo_size, "no run of this many prompt tokens "
                         "repeated in the reply (default 8; 0: off)"),
    "--script-guard": ("script_guard", _on_off, "no letters of a writing system (Cyrillic, "
                       "CJK, ...) the conversation does not use (default on)"),
    "--copy-bias": ("copy_bias", _non_negative_float, "added to the logits of the names and "
                    "numbers of the memory notes (default 2; 0: off)"),
    "--opening-temperature": ("opening_temperature", _non_negative_float, "the reply's first "
                              "sentence, where the answer goes, is sampled at most this hot "
                              "(default 0.3; 0: at --temperature throughout)"),
    "--max-sentences": ("max_sentences", _non_negative_int, "the reply ends after this many "
                        "sentences; Continue asks for more (default 1; 0: no limit)"),
    "--note-contrast": ("note_contrast", _non_negative_float, "weigh the next-token logits "
                        "with the memory notes against those without them, this much, so that "
                        "a reply names what the notes say (default 0.5; 0: off)"),
}


def _add_sentence_flag(parser: argparse.ArgumentParser) -> None:
    """The evaluations' `--max-sentences`: replies as the app ends them, unless told."""
    parser.add_argument("--max-sentences", type=_non_negative_int,
                        help="the replies end after this many sentences (default: the chat "
                             "app's, 1; 0: no limit)")


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    for flag, (_, kind, text) in DECODING_FLAGS.items():
        parser.add_argument(flag, type=kind, help=text)


def decoding_settings(args: argparse.Namespace, **fixed: object) -> DecodingSettings:
    """The `DecodingSettings` the decoding flags ask for (unset ones keep the defaults)."""
    from neeko_app.chat.generation import DecodingSettings

    chosen = {field: getattr(args, flag[2:].replace("-", "_"))
              for flag, (field, _, _) in DECODING_FLAGS.items()}
    return DecodingSettings(**{k: v for k, v in chosen.items() if v is not None}, **fixed)


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--max-request-bytes", type=_positive_int,
                        help="the most body one request may send, chunked or not; more is "
                             "answered 413 unread (default 10 MiB; $NEEKO_MAX_REQUEST_BYTES)")
    _add_memory_flags(parser)
    _add_decoding_flags(parser)
    parser.add_argument("--backend", choices=BACKENDS,
                        help="where replies are generated: local (default) or openai (a model "
                             "server such as vLLM serving the exported blocks)")
    parser.add_argument("--backend-url", help="the model server's OpenAI-compatible base URL, "
                        "e.g. http://gpu-host:8000/v1 (default: $NEEKO_BACKEND_URL)")
    parser.add_argument("--backend-key", default=os.environ.get("NEEKO_BACKEND_KEY"),
                        help="API key of the model server (default: $NEEKO_BACKEND_KEY)")
    _add_model_flags(parser)


def server_engine(settings: Settings, args: argparse.Namespace) -> ChatEngine:
    """The chat engine both servers (`neeko api`, `neeko serve`) run on."""
    from neeko_app.chat.startup import build_engine

    return build_engine(settings, decoding_settings(args),
                        use_memory=not args.no_memory, backend_key=args.backend_key)


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The `TrainingConfig` the training flags ask for."""
    return TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, max_tokens=args.max_tokens,
                          keep_best_epoch=args.keep_best_epoch,
                          knowledge_k=args.with_knowledge, pack_tokens=args.pack_tokens,
                          bf16=args.bf16)


def drill_config(args: argparse.Namespace) -> DrillConfig:
    """The `DrillConfig` the drill flags ask for."""
    return DrillConfig(facts_epochs=args.facts_epochs, facts_lr=args.facts_lr,
                       settle_epochs=args.settle_epochs, settle_lr=args.settle_lr,
                       batch_size=args.batch_size, bf16=not args.fp32)


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the command's flags named like a setting
    (--base-model, --memory-dir, --port, ...). Data an older version left in the app's
    folder is moved into the data folder first."""
    from neeko_app.user_data import move_old_user_data

    settings = Settings.from_env(**{f.name: getattr(args, f.name, None)
                                    for f in fields(Settings)})
    move_old_user_data(settings)
    return settings


def build_parser() -> argparse.ArgumentParser:
    """The `neeko` parser: one sub-parser per command in COMMANDS."""
    # No abbreviated flags: `eval-heldout --characters x` read as `--characters-dir x` and
    # ended in "unknown character ...; available: none".
    parser = argparse.ArgumentParser(
        prog="neeko", description="Role-play chat: one base model, many characters.",
        allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=partial(argparse.ArgumentParser,
                                                          allow_abbrev=False))

    chat = commands.add_parser("chat", help="chat with a character in the terminal")
    chat.add_argument("character", nargs="?", help="character id (default: the first one)")
    _add_decoding_flags(chat)
    chat.add_argument("--seed", type=int, help="make the replies repeatable")
    _add_memory_flags(chat)
    _add_model_flags(chat)

    train = commands.add_parser("train", help="agent pre-training: train blocks for characters")
    train.add_argument("characters", nargs="+", help="character ids to train together")
    train.add_argument("--mix", action="store_true",
                       help="train the LoRA-mix baseline instead: one block on all their "
                            "dialogues (for `neeko eval --systems lora-mix`)")
    _add_training_flags(train, TrainingConfig())
    _add_model_flags(train)

    add = commands.add_parser("add-character", help="add a character folder to the app")
    add.add_argument("path", help="folder with character.json (+ dialogues.jsonl for expansion)")
    add.add_argument("--mode", choices=["fusion", "expansion"], default="fusion",
                     help="fusion: no training, mix existing blocks; expansion: train a new block")
    _add_training_flags(add, EXPANSION_TRAINING)
    _add_model_flags(add)

    drill = commands.add_parser(
        "drill-facts", help="teach characters their own facts (their blocks, two phases)")
    drill.add_argument("characters", nargs="*",
                       help="characters to drill (default: every one with knowledge "
                            "exchanges and a block of its own)")
    _add_drill_flags(drill, DrillConfig())
    _add_model_flags(drill)

    characters = commands.add_parser("characters", help="list characters and their state")
    _add_data_flags(characters)
    characters.add_argument("--check", action="store_true",
                            help="also validate dialogues, held-out sets and blocks")

    api = commands.add_parser("api", help="serve the OpenAI-compatible HTTP API")
    api.add_argument("--port", type=_port, default=8000)
    api.add_argument("--api-key", default=os.environ.get("NEEKO_API_KEY"),
                     help="require `Authorization: Bearer KEY` (default: $NEEKO_API_KEY)")
    _add_server_flags(api)

    serve = commands.add_parser("serve", help="serve the web app (chat, add-character wizard)")
    serve.add_argument("--port", type=_port, help="port (default 7860)")
    serve.add_argument("--auth", metavar="USER:PASSWORD", default=os.environ.get("NEEKO_AUTH"),
                       help="require this login (default: $NEEKO_AUTH)")
    serve.add_argument("--concurrency", type=_positive_int, default=8,
                       help="requests served at once (replies are batched together)")
    _add_server_flags(serve)

    heldout = commands.add_parser(
        "eval-heldout", help="perplexity matrix and role identification on held-out sets")
    heldout.add_argument("characters", nargs="*",
                         help="character ids (default: every character with a trained block)")
    heldout.add_argument("--limit", type=_positive_int, help="held-out conversations per character")
    heldout.add_argument("--batch-size", type=_positive_int, default=8)
    heldout.add_argument("--max-new-tokens", type=_positive_int,
                         help="reply length cap (default: 64 greedy, the chat app's with --sample)")
    heldout.add_argument("--sample", action="store_true",
                         help="decode like the chat app (temperature, top-p) instead of greedy; "
                              "reply k uses seed SEED+k")
    heldout.add_argument("--seed", type=int, default=0, help="first seed with --sample")
    _add_sentence_flag(heldout)
    heldout.add_argument("--systems", nargs="+", choices=HELDOUT_SYSTEMS,
                         default=list(HELDOUT_DEFAULT_SYSTEMS))
    heldout.add_argument("--no-perplexity", action="store_true")
    heldout.add_argument("--out", help="write the full report (every reply) as JSON here")
    _add_model_flags(heldout)

    scripted = commands.add_parser(
        "eval", help="run dialogue scripts (interviews, memory, robustness) and report")
    scripted.add_argument("scripts", nargs="*",
                          help="script names or .yaml paths (default: every shipped script)")
    scripted.add_argument("--systems", nargs="+", choices=ALL_SYSTEMS,
                          default=list(DEFAULT_SYSTEMS))
    scripted.add_argument("--out",
                          help="folder for replies.jsonl (resumed), results.json, report.md and "
                               "plots (default: reports/latest, which the Evaluate tab shows)")
    scripted.add_argument("--batch-size", type=_positive_int, default=16)
    scripted.add_argument("--characters", nargs="+", metavar="CHARACTER",
                          help="put the scripts to these characters only (default: every "
                               "character each script names)")
    scripted.add_argument("--limit", type=_positive_int,
                          help="only the first exchanges of each script, at most N turns per "
                               "character (default: all)")
    scripted.add_argument("--perplexity", type=_non_negative_int, default=10, metavar="N",
                          help="held-out conversations per character for the perplexity "
                               "matrix (default 10; 0: skip it)")
    scripted.add_argument("--incremental", metavar="CHARACTER",
                          help="report the other characters before/after this one was added "
                               "by expansion (and it by fusion vs. expansion with the fusion "
                               "system), e.g. caesar")
    scripted.add_argument("--max-new-tokens", type=_positive_int, default=96)
    _add_sentence_flag(scripted)
    scripted.add_argument("--judge-url", help="OpenAI-compatible endpoint of an LLM judge, "
                          "e.g. http://host:8000/v1 (off by default)")
    scripted.add_argument("--judge-model", default="judge", help="the judge's model name")
    scripted.add_argument("--judge-key", default=os.environ.get("NEEKO_JUDGE_KEY"),
                          help="API key of the judge (default: $NEEKO_JUDGE_KEY)")
    _add_model_flags(scripted)

    quiz = commands.add_parser(
        "quiz", help="held-out fact quiz: accuracy, in-role rate and relevance per system")
    quiz.add_argument("characters", nargs="*",
                      help="characters to quiz (default: every one with a quiz.jsonl)")
    quiz.add_argument("--systems", nargs="+", choices=QUIZ_SYSTEMS, default=list(QUIZ_SYSTEMS),
                      help="blocks+other-notes: blocks+memory with the asked fact's note "
                           "withheld, as when retrieval misses it")
    quiz.add_argument("--blocks-from", metavar="DIR",
                      help="play the characters with DIR/<slug>/block.safetensors instead "
                           "(blocks trained before, to compare); use with --label")
    quiz.add_argument("--label", default="",
                      help="report the systems as SYSTEM@LABEL (e.g. before)")
    quiz.add_argument("--batch-size", type=_positive_int, default=8)
    quiz.add_argument("--max-new-tokens", type=_positive_int,
                      help="reply length cap (default 64 greedy, the chat app's with --sample)")
    quiz.add_argument("--sample", action="store_true",
                      help="decode as the chat app does (seeded) instead of greedily")
    quiz.add_argument("--seed", type=int, default=0, help="first seed with --sample")
    _add_sentence_flag(quiz)
    quiz.add_argument("--out", help="JSON report (every reply); an existing one gains the "
                                    "systems of this run")
    _add_model_flags(quiz)

    retriever = commands.add_parser(
        "tune-retriever", help="tune the knowledge encoder that finds a question's fact notes")
    retriever.add_argument("characters", nargs="*",
                           help="characters whose knowledge exchanges to tune on (default: "
                                "every shipped character)")
    retriever.add_argument("--epochs", type=_positive_int,
                           help="passes over the questions (default 3)")
    retriever.add_argument("--out", help="adapter file to write (default: "
                                         "CHARACTERS_DIR/knowledge-encoder.safetensors)")
    _add_data_flags(retriever)

    recall = commands.add_parser(
        "eval-recall", help="does a character recall what the user said before the history "
                            "overflowed? (memory probes)")
    recall.add_argument("characters", nargs="*", help="characters to probe (default: all)")
    recall.add_argument("--out", help="write the report (every reply) as JSON here")
    _add_model_flags(recall)

    bench = commands.add_parser(
        "bench", help="benchmarks: switching, mixed batches, scale, compiled step, end to end "
                      "(ratios + JSON)")
    bench.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                       help="switching, mixed-batch, scale, compiled-step, end-to-end "
                            "(default: all)")
    bench.add_argument("--shape", default="gemma-270m",
                       help="model for all but end-to-end: gemma-270m (random weights, the "
                            "embedded model's shape; default), llama-7b, tiny, embedded")
    bench.add_argument("--layers", type=_positive_int,
                       help="shorten a random shape's layer stack (e.g. a 7B shape on a laptop)")
    bench.add_argument("--base-model", help="end-to-end's model (default: embedded)")
    bench.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    bench.add_argument("--dtype", help="auto (default: bf16 on CUDA, fp32 on CPU; end-to-end "
                       "as the chat app), float32, bfloat16, float16")
    bench.add_argument("--rounds", type=_positive_int, help="timing rounds per case")
    bench.add_argument("--batch", type=_positive_int,
                       help="rows of the mixed-batch and scale batches (default 8; one "
                            "character each)")
    bench.add_argument("--quick", action="store_true",
                       help="fewer steps and sizes: a check that everything runs, in minutes")
    bench.add_argument("--out", default="benchmarks/results",
                       help="folder for <benchmark>-<device>.json and summary-<device>.png")

    export = commands.add_parser(
        "export", help="export trained blocks as PEFT LoRA adapters (for vLLM, LoRAX, PEFT)")
    export.add_argument("character", nargs="?", help="the character to export (or --all)")
    export.add_argument("--all", action="store_true",
                        help="every character with a trained block, to DIR/<slug>, with "
                             "DIR/README.md and the vLLM and LoRAX launch lines")
    export.add_argument("--peft", required=True, metavar="DIR", help="output directory")
    _add_model_flags(export)
    return parser


# command: "module:handler". The handler takes the Settings built from the flags (by
# `_settings`) and the parsed arguments, and returns the exit code.
COMMANDS = {
    "chat": "neeko_app.chat.terminal:run_terminal_chat",
    "train": "neeko_app.training.cli_progress:run_training_command",
    "add-character": "neeko_app.training.cli_progress:run_training_command",
    "drill-facts": "neeko_app.training.cli_progress:run_drill_command",
    "characters": "neeko_app.characters.registry:run_characters_command",
    "api": "neeko_app.api.server:run_api_command",
    "serve": "neeko_app.ui.cli_serve:run_serve_command",
    "eval-heldout": "neeko_app.evaluation.cli_heldout:run_heldout_command",
    "eval": "neeko_app.evaluation.cli_eval:run_eval_command",
    "quiz": "neeko_app.evaluation.cli_quiz:run_quiz_command",
    "eval-recall": "neeko_app.evaluation.cli_quiz:run_recall_command",
    "tune-retriever": "neeko_app.training.cli_encoder:run_tune_retriever_command",
    "bench": "neeko_app.bench.cli:run_bench_command",
    "export": "neeko_app.deploy:run_export_command",
}
# Their handlers take the parsed arguments only: `neeko bench` runs on bare GPU hosts and
# builds no Settings (no data folder to set up).
WITHOUT_SETTINGS = frozenset({"bench"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` asks for; returns its exit code (2 after an error in the input,
    reported on one line; 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    from neeko_app.characters.card import CharacterError
    from neeko_app.model import ModelLoadError

    try:
        handler = _handler(args.command)
        if args.command in WITHOUT_SETTINGS:
            return handler(args)
        return handler(_settings(args), args)
    except (CharacterError, ModelLoadError, ValueError, KeyError) as err:
        print(f"neeko: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _handler(command: str) -> Callable[..., int]:
    """The handler of `command`, imported from its module."""
    module, _, name = COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), name)


if __name__ == "__main__":
    raise SystemExit(main())

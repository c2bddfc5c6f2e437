"""Knowledge drill: the shipped block of one character trained on, on its knowledge and
recall exchanges (and every `--replay`-th dialogue), quizzed after every epoch.

    python reports/knowledge-retrieval-2026-12-05/drill.py newton --epochs 6 --lr 1e-3 \
        --out reports/knowledge-retrieval-2026-12-05/drill-newton.json [--replay 4]

Unlike `quiz_curve.py` (a fresh block on all the data), the block starts from the one
shipped in `characters/<slug>/`. Before training and after every epoch the character's quiz
is put to `--systems` (greedy) and a row is written to the JSON; the characters folder is
untouched. The weights of the epochs are not kept: the first version saved them with
`save_block`, which reads the committed blocks, so it wrote the shipped block every time
(found 2026-12-05; the quiz rows were right, they use the weights being trained).
`--notes-every 1` trains every knowledge exchange with the notes memory retrieves for it.
`--answer-words N` (added 2026-12-05, later) cuts every knowledge reply after the first
sentence that brings it to N words, so an epoch spends its tokens on the answers rather
than on their colour (from a copy of the character's folder). `--quiz-facts-only` (added
2026-12-05, later still) keeps only the knowledge exchanges of the facts the quiz asks
about, so that an epoch is short enough to run many.
Each row also has `blocks_seen`: for every quiz question, the first knowledge exchange of
the same fact (`fact_questions`; for the shipped characters always a one-exchange record of
that fact alone) asks its own (trained) question of the blocks alone, scored with the
quiz's answer pattern; so a row tells facts memorised from facts found on demand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from neeko_app.characters.facts import fact_questions
from neeko_app.config import Settings
from neeko_app.evaluation.heldout import generated_replies
from neeko_app.evaluation.quiz import GREEDY, character_quiz, run_quiz
from neeko_app.evaluation.systems import system_request
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json
from neeko_app.training.fact_drill import cut_reply
from neeko_app.training.knowledge_data import knowledge_examples
from neeko_app.training.trainer import EXPANSION_TRAINING, Progress, run_training
from neeko_app.training.workflows import examples_for

WHOLE_REPLIES = replace(GREEDY, max_sentences=0)  # as it ran: before the sentence limit


def trimmed_copy(character, words: int, into: Path, quiz_facts_only: bool = False):
    """`character` with its folder copied to `into` and its knowledge replies cut after
    `words` words (0: kept whole); with `quiz_facts_only` only the knowledge exchanges that
    teach a fact the quiz asks about are kept."""
    folder = Path(shutil.copytree(character.folder, into / character.slug))
    path = folder / "knowledge.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if quiz_facts_only:
        asked = {q.fact for q in character_quiz(character)}
        records = [r for r in records if asked & set(r["facts"])]
    for turn in (t for r in records for t in r["turns"] if words and t["role"] == "character"):
        turn["text"] = cut_reply(turn["text"], words)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return replace(character, folder=folder)


def seen_accuracy(runtime, character) -> float:
    """Share of quiz facts the blocks alone answer when asked a trained question."""
    seen = fact_questions(character.folder)
    asked = [(q, seen[q.fact][0]) for q in character_quiz(character) if q.fact in seen]
    requests = [system_request("blocks", runtime, character, [], text, None,
                               WHOLE_REPLIES)[1]
                for _, text in asked]
    replies, _ = generated_replies(runtime, requests, 8)
    return sum(q.is_answered_by(r) for (q, _), r in zip(asked, replies, strict=True)) / len(asked)


def drill(settings: Settings, slug: str, epochs: int, lr: float, batch_size: int,
          replay: int, notes_every: int, systems: tuple[str, ...], out: Path,
          skip_start_quiz: bool = False, answer_words: int = 0,
          quiz_every: int = 1, quiz_facts_only: bool = False) -> list[dict]:
    """Train `slug`'s shipped block on for `epochs`, quizzing it after every `quiz_every`."""
    runtime = load_runtime(settings)
    model, tokenizer = runtime.model, runtime.base.tokenizer
    character = runtime.character(slug)
    config = replace(EXPANSION_TRAINING, epochs=epochs, lr=lr, batch_size=batch_size, bf16=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = trimmed_copy(character, answer_words, Path(scratch), quiz_facts_only) \
            if answer_words or quiz_facts_only else character
        examples = knowledge_examples(source, tokenizer, config.max_tokens, notes_every)
    if replay:
        examples += examples_for([character], tokenizer, config.max_tokens)[::replay]
    rows: list[dict] = []
    summary = {"character": slug, "lr": lr, "batch_size": batch_size, "replay": replay,
               "notes_every": notes_every, "answer_words": answer_words,
               "quiz_facts_only": quiz_facts_only,
               "examples": len(examples), "tokens": sum(len(e.input_ids) for e in examples),
               "rows": rows}
    with scratch_knowledge([character]) as memory:
        def quiz(epoch: int, loss: float | None, seconds: float) -> None:
            model.eval()
            started = time.perf_counter()
            report = run_quiz(runtime, [slug], systems, WHOLE_REPLIES, memory=memory)
            seen = seen_accuracy(runtime, character)
            model.train()
            row = {"epoch": epoch, "loss": loss, "train_seconds": seconds,
                   "quiz_seconds": time.perf_counter() - started,
                   **{s: report.accuracy(s) for s in systems}, "blocks_seen": seen}
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_json(out, summary)

        def on_progress(progress: Progress) -> None:
            if progress.step * epochs % progress.total == 0 and (
                    progress.epoch % quiz_every == 0 or progress.epoch == epochs):
                quiz(progress.epoch, progress.loss, progress.seconds)

        if not skip_start_quiz:
            quiz(0, None, 0.0)
        run_training(model, examples, [slug], config, tokenizer.pad_token_id,
                     on_progress=on_progress)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--replay", type=int, default=4,
                        help="also train on every N-th dialogue (0: none)")
    parser.add_argument("--notes-every", type=int, default=2,
                        help="one knowledge exchange in N is trained with its retrieved notes")
    parser.add_argument("--systems", nargs="+", default=["blocks", "blocks+memory"])
    parser.add_argument("--skip-start-quiz", action="store_true",
                        help="no quiz before training (the shipped block's is known)")
    parser.add_argument("--answer-words", type=int, default=0,
                        help="cut knowledge replies after the sentence reaching N words")
    parser.add_argument("--quiz-every", type=int, default=1, help="quiz every N epochs")
    parser.add_argument("--quiz-facts-only", action="store_true",
                        help="train only the knowledge exchanges of facts the quiz asks")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    drill(Settings.from_env(), args.character, args.epochs, args.lr, args.batch_size,
          args.replay, args.notes_every, tuple(args.systems), args.out, args.skip_start_quiz,
          args.answer_words, args.quiz_every, args.quiz_facts_only)


if __name__ == "__main__":
    main()

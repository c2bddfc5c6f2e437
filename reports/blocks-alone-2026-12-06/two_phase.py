"""Two-phase knowledge drill: first the facts without notes (the block learns them), then
the same exchanges with and without their notes (the block learns again to read them).

    python reports/blocks-alone-2026-12-06/two_phase.py newton --facts-epochs 12 \
        --notes-epochs 2 --out reports/blocks-alone-2026-12-06/two-phase-newton.json

Starts from the character's shipped block, like `knowledge-retrieval-2026-12-05/drill.py`
(whose data preparation it reuses: replies cut after 10 words, only the exchanges of the
facts the quiz asks about). Phase 1 trains every knowledge exchange without notes for
`--facts-epochs` at `--lr`; the block is then saved to `--block-out` (a block file), and a
later run can skip phase 1 with `--start-from` that file. Phase 2 trains every exchange
twice an epoch, once with the notes memory retrieves for it and once without, at
`--notes-lr` (`--notes-epochs 0`: no phase 2; `--no-notes-in-phase-2`: twice without notes,
the ablation that tells the notes from the lower rate). The quiz (blocks, blocks + memory, and the
facts' trained questions) is put every `--quiz-every` epochs of phase 1, after it, and
after every epoch of phase 2; the characters folder is untouched. `--extra FILE ...` adds
more exchanges in the knowledge file's format (more wordings of the same facts) to the
copy's knowledge file before the examples are made.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from neeko_app.config import Settings
from neeko_app.evaluation.quiz import run_quiz
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json, load_tensors
from neeko_app.training.knowledge_data import knowledge_examples
from neeko_app.training.trainer import EXPANSION_TRAINING, Progress, run_training

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "knowledge-retrieval-2026-12-05"))
from drill import WHOLE_REPLIES, seen_accuracy, trimmed_copy  # noqa: E402

SYSTEMS = ("blocks", "blocks+memory")
NO_NOTES = 10_000  # notes_every larger than any knowledge file: only its first exchange


def load_block_in_place(model, slug: str, path: Path) -> None:
    """Overwrite the block of `slug` with the one `save_block` wrote to `path`."""
    tensors, index = load_tensors(path), model.block_index(slug)
    with torch.no_grad():
        for name, layer in model.lora_layers():
            layer.lora_A[index].copy_(tensors[f"{name}.lora_A"][0])
            layer.lora_BT[index].copy_(tensors[f"{name}.lora_BT"][0])


def epoch_ended(progress: Progress, epochs: int) -> bool:
    """Whether `progress` is the last step of an epoch of a run of `epochs`."""
    return progress.step * epochs % progress.total == 0


def add_exchanges(character, extra: list[Path]) -> None:
    """Append the records of the `extra` files to `character`'s (copied) knowledge file."""
    path = character.folder / "knowledge.jsonl"
    with path.open("a", encoding="utf-8") as knowledge:
        for file in extra:
            knowledge.write(file.read_text(encoding="utf-8"))


def two_phase(settings: Settings, slug: str, facts_epochs: int, lr: float, notes_epochs: int,
              notes_lr: float, out: Path, block_out: Path | None = None,
              start_from: Path | None = None, extra: list[Path] = (),
              quiz_every: int = 0, notes_in_phase_2: bool = True) -> list[dict]:
    """Run both phases for `slug`, writing a quiz row to `out` after each stage."""
    runtime = load_runtime(settings)
    model, tokenizer = runtime.model, runtime.base.tokenizer
    character = runtime.character(slug)
    config = replace(EXPANSION_TRAINING, batch_size=4, bf16=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = trimmed_copy(character, 10, Path(scratch), quiz_facts_only=True)
        add_exchanges(source, list(extra))
        plain = knowledge_examples(source, tokenizer, config.max_tokens, NO_NOTES)
        noted = knowledge_examples(source, tokenizer, config.max_tokens, 1)
    rows: list[dict] = []
    summary = {"character": slug, "lr": lr, "facts_epochs": facts_epochs,
               "notes_lr": notes_lr, "notes_epochs": notes_epochs,
               "examples_phase_1": len(plain), "examples_phase_2": len(plain) + len(noted),
               "start_from": str(start_from) if start_from else None,
               "extra": [str(path) for path in extra], "notes_in_phase_2": notes_in_phase_2,
               "rows": rows}
    with scratch_knowledge([character]) as memory:
        def quiz(stage: str, seconds: float) -> None:
            model.eval()
            started = time.perf_counter()
            report = run_quiz(runtime, [slug], SYSTEMS, WHOLE_REPLIES, memory=memory)
            row = {"stage": stage, "train_seconds": seconds,
                   **{s: report.accuracy(s) for s in SYSTEMS},
                   "blocks_seen": seen_accuracy(runtime, character),
                   "quiz_seconds": time.perf_counter() - started}
            model.train()
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_json(out, summary)

        def during_facts(progress: Progress) -> None:
            if epoch_ended(progress, facts_epochs) and progress.epoch < facts_epochs \
                    and quiz_every and progress.epoch % quiz_every == 0:
                quiz(f"facts epoch {progress.epoch}", progress.seconds)

        if start_from:
            load_block_in_place(model, slug, start_from)
        else:
            started = time.perf_counter()
            run_training(model, plain, [slug], replace(config, epochs=facts_epochs, lr=lr),
                         tokenizer.pad_token_id, on_progress=during_facts)
            if block_out:
                save_block(model, slug, block_out)
            quiz(f"facts {facts_epochs} epochs", time.perf_counter() - started)

        def after_epoch(progress: Progress) -> None:
            if epoch_ended(progress, notes_epochs):
                quiz(f"notes epoch {progress.epoch}", progress.seconds)

        if not notes_epochs:
            return rows
        second = plain + (noted if notes_in_phase_2 else plain)
        run_training(model, second, [slug],
                     replace(config, epochs=notes_epochs, lr=notes_lr, seed=1),
                     tokenizer.pad_token_id, on_progress=after_epoch)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("--facts-epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--notes-epochs", type=int, default=2)
    parser.add_argument("--notes-lr", type=float, default=5e-4)
    parser.add_argument("--block-out", type=Path, help="save the block after phase 1")
    parser.add_argument("--start-from", type=Path, help="skip phase 1: load this block")
    parser.add_argument("--extra", type=Path, nargs="*", default=[],
                        help="more exchanges (knowledge format) of the same facts")
    parser.add_argument("--quiz-every", type=int, default=0,
                        help="also quiz every N epochs of phase 1 (0: only after it)")
    parser.add_argument("--no-notes-in-phase-2", action="store_true",
                        help="phase 2 trains every exchange twice without notes (ablation)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    two_phase(Settings.from_env(), args.character, args.facts_epochs, args.lr,
              args.notes_epochs, args.notes_lr, args.out, args.block_out, args.start_from,
              args.extra, args.quiz_every, not args.no_notes_in_phase_2)


if __name__ == "__main__":
    main()

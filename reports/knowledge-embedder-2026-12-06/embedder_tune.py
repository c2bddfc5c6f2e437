"""Does MiniLM, tuned on the knowledge exchanges' (question, fact note) pairs, rank the
right note first more often? Scores exactly as `retrieval_variants.py` (and the app) do,
with the tuned encoder's vectors for notes, keys and questions alike.

- held back: the encoder is tuned and the index built on the even-numbered questions of
  every note; the odd-numbered ones ask (as the lexical weight was chosen);
- quiz: tuned on every question of the knowledge exchanges; the 342 quiz questions ask
  (the quiz stays held out: no quiz question is a training pair);
- new character: tuned on six characters' questions, the seventh's quiz asks (what the
  wizard's new characters would meet).

    python reports/knowledge-embedder-2026-12-06/embedder_tune.py --epochs 3 --lr 1e-3 --lora 16
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neeko_app.embedding import sentence_encoder
from neeko_app.memory.knowledge_encoder import TunedMiniLMEmbeddings
from neeko_app.training.knowledge_encoder import EncoderTraining, note_batches, tune_encoder

sys.path.insert(0, str(Path(__file__).parents[1] / "note-position-2026-12-06"))
from retrieval_variants import character_sets, ranked_first  # noqa: E402

BATCH = 32
SCALE = 20.0


def tune(training: dict[str, list[tuple[str, str]]], epochs: int, lr: float, rank: int):
    """MiniLM tuned on `training`: with `rank`, a LoRA of that rank as `neeko tune-retriever`
    trains it; with 0, every weight, by the same in-batch loss and batches."""
    if rank:
        return tune_encoder(training, EncoderTraining(epochs=epochs, lr=lr, rank=rank))
    torch.manual_seed(0)
    model = copy.deepcopy(sentence_encoder())
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    plan = [b for epoch in range(epochs) for slug, pairs in sorted(training.items())
            for b in note_batches(pairs, BATCH, random.Random(f"0:{slug}:{epoch}"))]
    random.Random(1).shuffle(plan)
    steps, start = len(plan), time.time()
    for step, batch in enumerate(plan):
        for group in optimiser.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / (0.1 * steps)) * (1 - step / steps)
        asked, notes = (F.normalize(model(model.preprocess(list(texts)))["sentence_embedding"],
                                    dim=-1) for texts in zip(*batch, strict=True))
        logits = SCALE * asked @ notes.T
        target = torch.arange(len(batch))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    print(f"  tuned {steps} steps in {time.time() - start:.0f} s", file=sys.stderr)
    model.eval()
    return model


def vectors_of(model, texts: set[str]) -> dict[str, np.ndarray]:
    """A sentence encoder's (or an `Embeddings`') unit vectors of `texts`."""
    ordered = sorted(texts)
    if hasattr(model, "embed_documents"):
        return dict(zip(ordered, np.array(model.embed_documents(ordered)), strict=True))
    with torch.no_grad():
        found = model.encode(ordered, convert_to_numpy=True, normalize_embeddings=True,
                             batch_size=64, show_progress_bar=False)
    return dict(zip(ordered, found, strict=True))


def score(model, views: dict[str, tuple]) -> tuple[float, float]:
    """(right note first, among 3) over the characters' (notes, keys, asked) views."""
    texts = {t for notes, keys, asked in views.values()
             for t in [*notes, *(q for ks in keys for q in ks), *(q for q, _ in asked)]}
    vectors = vectors_of(model, texts)
    counted = [ranked_first(*view, vectors, {}) for view in views.values()]
    total = sum(len(view[2]) for view in views.values())
    return sum(f for f, _ in counted) / total, sum(a for _, a in counted) / total


def pairs_of(data: dict, keep) -> list[tuple[str, str]]:
    return [(q, note) for note, qs in zip(data["notes"], data["questions"], strict=True)
            for q in keep(qs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--lr", type=float, nargs="+", default=[2e-5])
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank (0: tune every weight)")
    parser.add_argument("--skip-grid", action="store_true",
                        help="tune nothing for the two sets (with --new-character, --adapter)")
    parser.add_argument("--new-character", action="store_true",
                        help="also: each character's quiz with an encoder tuned without it")
    parser.add_argument("--adapter", type=Path, help="also: the quiz with this adapter file "
                        "(e.g. the shipped characters/knowledge-encoder.safetensors)")
    args = parser.parse_args()
    sets = character_sets()
    even, every = (lambda qs: qs[::2]), (lambda qs: qs)
    held = {slug: (d["notes"], [qs[::2] for qs in d["questions"]],
                   [(q, i) for i, qs in enumerate(d["questions"]) for q in qs[1::2]])
            for slug, d in sets.items()}
    quiz = {slug: (d["notes"], d["questions"], d["quiz"]) for slug, d in sets.items()}
    base = sentence_encoder()
    print("| encoder | held back: first | among 3 | quiz: first | among 3 |")
    print("| --- | --- | --- | --- | --- |")
    cells = [*score(base, held), *score(base, quiz)]
    print("| MiniLM as shipped | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)
    if args.adapter:
        cells = ["", "", *score(TunedMiniLMEmbeddings(args.adapter), quiz)]
        print(f"| {args.adapter.name} | " + " | ".join(f"{c:.3f}" if c else "–" for c in cells)
              + " |", flush=True)
    for lr in [] if args.skip_grid else args.lr:
        for epochs in args.epochs:
            held_model = tune({s: pairs_of(d, even) for s, d in sets.items()},
                              epochs, lr, args.lora)
            quiz_model = tune({s: pairs_of(d, every) for s, d in sets.items()},
                              epochs, lr, args.lora)
            cells = [*score(held_model, held), *score(quiz_model, quiz)]
            how = f"LoRA rank {args.lora}" if args.lora else "every weight"
            print(f"| tuned ({how}), {epochs} epochs, lr {lr:g} | " +
                  " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)
    if args.new_character:
        epochs, lr = args.epochs[-1], args.lr[-1]
        print(f"\nA new character: tuned ({epochs} epochs, lr {lr:g}) without it, its quiz\n")
        print("| character | questions | MiniLM: first | among 3 | "
              "tuned without it: first | among 3 |")
        print("| --- | --- | --- | --- | --- | --- |")
        for slug in sets:
            others = {s: pairs_of(d, every) for s, d in sets.items() if s != slug}
            model = tune(others, epochs, lr, args.lora)
            one = {slug: quiz[slug]}
            cells = [*score(base, one), *score(model, one)]
            print(f"| {slug} | {len(sets[slug]['quiz'])} | " +
                  " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""Tune the knowledge encoder (`memory.knowledge_encoder`): a LoRA on MiniLM trained so that
each question of a character's knowledge exchanges lands nearest the fact note it asks for.

In-batch negatives, both ways (question -> note, note -> question), each batch drawn from
one character (retrieval is always within one character, so its other notes are the
negatives that matter) and never holding a note twice. The quiz's questions are never seen.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import get_peft_model

from neeko_app.characters.card import Character
from neeko_app.embedding import sentence_encoder
from neeko_app.memory.knowledge import character_chunks
from neeko_app.memory.knowledge_encoder import encoder_metadata, lora_config, lora_parameters
from neeko_app.storage import atomic_save_tensors

Pair = tuple[str, str]  # (question, the fact note it asks for)


@dataclass(frozen=True)
class EncoderTraining:
    """How the adapter is trained (chosen on questions held back from the index: report
    `knowledge-embedder-2026-12-06`)."""

    epochs: int = 3
    lr: float = 1e-3
    rank: int = 16
    batch_size: int = 32
    temperature: float = 0.05
    seed: int = 0


def encoder_pairs(characters: Iterable[Character]) -> dict[str, list[Pair]]:
    """Per character, every (question, fact note) of its knowledge exchanges."""
    pairs = {}
    for character in characters:
        found = [(question, chunk.text.strip()) for chunk in character_chunks(character)
                 if chunk.kind == "fact" for question in chunk.questions]
        if found:
            pairs[character.slug] = found
    return pairs


def note_batches(pairs: list[Pair], size: int, rng: random.Random) -> list[list[Pair]]:
    """`pairs` shuffled into batches of at most `size` in which no note comes twice (a second
    question of the same note would count as a wrong answer)."""
    pending = pairs[:]
    rng.shuffle(pending)
    batches: list[list[Pair]] = []
    while pending:
        batch, notes, left = [], set(), []
        for pair in pending:
            if len(batch) < size and pair[1] not in notes:
                batch.append(pair)
                notes.add(pair[1])
            else:
                left.append(pair)
        batches.append(batch)
        pending = left
    return batches


def _embed(encoder, texts: list[str]) -> torch.Tensor:
    return F.normalize(encoder(encoder.preprocess(texts))["sentence_embedding"], dim=-1)


def tune_encoder(pairs: dict[str, list[Pair]], training: EncoderTraining = EncoderTraining(),
                 progress: Callable[[int, int, float], None] | None = None):
    """A copy of MiniLM with a LoRA trained on `pairs` (the shared encoder is not touched);
    `progress(step, total, loss)` after each step."""
    if not pairs:
        raise ValueError("no knowledge exchanges to tune the encoder on (a character needs "
                         "facts.jsonl and knowledge.jsonl)")
    torch.manual_seed(training.seed)
    encoder = copy.deepcopy(sentence_encoder())
    encoder[0].auto_model = get_peft_model(encoder[0].auto_model, lora_config(training.rank))
    encoder.train()
    trained = [p for p in encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=training.lr, weight_decay=0.01)
    plan = [batch for epoch in range(training.epochs) for slug, own in sorted(pairs.items())
            for batch in note_batches(own, training.batch_size,
                                      random.Random(f"{training.seed}:{slug}:{epoch}"))]
    random.Random(training.seed).shuffle(plan)
    warmup = max(1, len(plan) // 10)
    for step, batch in enumerate(plan, start=1):
        for group in optimiser.param_groups:  # linear warm-up, then linear decay
            group["lr"] = training.lr * min(1.0, step / warmup) * (1 - (step - 1) / len(plan))
        asked, notes = (_embed(encoder, list(texts)) for texts in zip(*batch, strict=True))
        logits = asked @ notes.T / training.temperature
        target = torch.arange(len(batch))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress:
            progress(step, len(plan), loss.item())
    encoder.eval()
    return encoder


def save_encoder(path: Path, encoder, training: EncoderTraining, pairs: int) -> None:
    """Write the adapter of a tuned `encoder` to `path` (safetensors, atomically)."""
    tensors = lora_parameters(encoder[0].auto_model)
    atomic_save_tensors(path, tensors, encoder_metadata(training.rank, pairs, training.epochs))

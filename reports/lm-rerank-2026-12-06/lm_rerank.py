"""Do the base model's odds of the question, given a note, put the right fact note first?

    python reports/lm-rerank-2026-12-06/lm_rerank.py 6 300 0 1 2 3 5 > rerank.txt

Arguments: candidates K taken from `MemoryStore.search_knowledge`, questions per set, then
rank weights w. Each candidate note scores the log-probability the embedded base model
(no block) gives the question's tokens after "{note}\\nQuestion:" (P(question | note), as
in UPR, Sachan et al. 2022); the candidates are reordered by that score minus w times
their retrieval rank. Two sets, as in `lexical-retrieval-2026-12-05/split_questions.py`:
300 training questions held back from the index (each note keeps the other half), and 300
quiz questions against the full index. Prints the share whose right note comes first and
among the first 3: "None" is today's retrieval order.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from dataclasses import replace

import chromadb
import torch

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.memory.client import chroma_settings
from neeko_app.memory.knowledge import character_chunks
from neeko_app.memory.store import MemoryStore
from neeko_app.model import load_base_model


@torch.no_grad()
def question_log_probs(base, notes: list[str], question: str) -> list[float]:
    """log P(question | note) under the base model, one per note, batched."""
    tok, model = base.tokenizer, base.model
    target = tok(f" {question}", add_special_tokens=False).input_ids
    rows = [[tok.bos_token_id] + tok(f"{note}\nQuestion:", add_special_tokens=False).input_ids
            + target for note in notes]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
    logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    scores = []
    for i, row in enumerate(rows):
        end, length = len(row), len(target)
        positions = torch.arange(end - length - 1, end - 1)
        scores.append(logp[i, positions, torch.tensor(row[end - length:])].sum().item())
    return scores


def question_sets(characters) -> tuple[MemoryStore, MemoryStore, list, list]:
    """(half-indexed store, full store, held-back questions, quiz questions)."""
    client = chromadb.EphemeralClient(settings=chroma_settings())
    halves = MemoryStore(client, knowledge_collection=f"s-{uuid.uuid4().hex}",
                         conversation_collection=f"sc-{uuid.uuid4().hex}")
    full = MemoryStore(client, knowledge_collection=f"f-{uuid.uuid4().hex}",
                       conversation_collection=f"fc-{uuid.uuid4().hex}")
    split, quiz = [], []
    for slug, character in sorted(characters.items()):
        chunks = character_chunks(character)
        full.index_character(slug, chunks)
        halves.index_character(slug, [replace(c, questions=c.questions[::2]) for c in chunks])
        split += [(slug, q, c.text) for c in chunks for q in c.questions[1::2]]
        if (character.folder / QUIZ_FILE).is_file():
            sheet = load_facts(character.folder / FACTS_FILE)
            facts = {f.id: f.fact.strip() for f in sheet}
            notes = {c.text.strip() for c in chunks}
            quiz += [(slug, q.question, facts[q.fact]) for q in
                     load_quiz(character.folder / QUIZ_FILE, sheet) if facts[q.fact] in notes]
    random.Random(0).shuffle(split)
    return halves, full, split, quiz


def main() -> None:
    k, limit, weights = int(sys.argv[1]), int(sys.argv[2]), [float(w) for w in sys.argv[3:]]
    base = load_base_model("embedded")
    halves, full, split, quiz = question_sets(discover_characters(Settings().characters_dir)
                                              .characters)
    for name, store, asked in (("held-back", halves, split[:limit]),
                               ("quiz", full, quiz[:limit])):
        started = time.time()
        counts = {w: [0, 0] for w in [None, *weights]}
        for slug, question, note in asked:
            found = [c.text for c in store.search_knowledge(slug, question, k)]
            scores = question_log_probs(base, found, question)
            counts[None][0] += found[:1] == [note]
            counts[None][1] += note in found[:3]
            for w in weights:
                order = sorted(range(len(found)), key=lambda i, w=w: -(scores[i] - w * i))
                ranked = [found[i] for i in order]
                counts[w][0] += ranked[:1] == [note]
                counts[w][1] += note in ranked[:3]
        n = len(asked)
        print(name, n, f"{time.time() - started:.0f}s",
              {str(w): (round(a / n, 3), round(b / n, 3)) for w, (a, b) in counts.items()},
              flush=True)


if __name__ == "__main__":
    main()

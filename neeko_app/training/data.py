"""Training data: dialogues.jsonl -> token ids, labels on the character's turns only."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from neeko_app.characters.card import Character
from neeko_app.chat.prompt import BOS, SPEAKER, TURN_END, TURN_START, Turn, character_header
from neeko_app.jsonl import jsonl_records
from neeko_app.training.loop import IGNORE, TrainingBatch

MAX_DIALOGUE_BYTES = 20 * 1024 * 1024


class DialogueError(ValueError):
    """A dialogues file is missing, malformed or empty."""


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Example:
    """One tokenized conversation for one block, or several packed into one row: then
    `positions` restart at 0 where each conversation begins."""

    block: str
    input_ids: list[int]
    labels: list[int]
    positions: list[int] | None = None


def _turn_text(raw: dict) -> str:
    text = str(raw.get("text") or "").strip()
    action = str(raw.get("action") or "").strip()
    return f"*{action}* {text}" if action else text


def parse_conversation(raw: object, where: str) -> Conversation:
    """One JSONL record -> Conversation; DialogueError says what is wrong and where."""
    if not isinstance(raw, dict) or not isinstance(raw.get("turns"), list) or not raw["turns"]:
        raise DialogueError(f"{where}: expected an object with a non-empty 'turns' list")
    turns = []
    for i, turn in enumerate(raw["turns"]):
        expected = "user" if i % 2 == 0 else "character"
        if not isinstance(turn, dict) or turn.get("role") != expected:
            raise DialogueError(f"{where}: turn {i + 1} must have role '{expected}'")
        text = _turn_text(turn)
        if not text:
            raise DialogueError(f"{where}: turn {i + 1} has no text")
        turns.append(Turn(expected, text))
    if turns[-1].role != "character":
        raise DialogueError(f"{where}: the last turn must be the character's")
    return Conversation(str(raw.get("id") or where), tuple(turns))


def load_dialogues(path: str | Path) -> list[Conversation]:
    """Read a dialogues JSONL file (one conversation a line); blank lines are skipped."""
    conversations = [parse_conversation(raw, where)
                     for where, raw in jsonl_records(path, DialogueError, MAX_DIALOGUE_BYTES)]
    if not conversations:
        raise DialogueError(f"{path} holds no conversations")
    return conversations


def tokenize_conversation(
    conversation: Conversation, header: str, tokenizer, block: str, max_tokens: int
) -> Example:
    """Render like `render_prompt` does; labels only on the character's words and turn end.

    Conversations longer than `max_tokens` keep their first exchanges that fit.
    """
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, learn: bool) -> None:
        piece = tokenizer(text, add_special_tokens=False).input_ids
        ids.extend(piece)
        labels.extend(piece if learn else [IGNORE] * len(piece))

    add(BOS, False)
    for i, turn in enumerate(conversation.turns):
        text = f"{header}\n\n{turn.text}" if i == 0 else turn.text
        start = len(ids)
        if turn.role == "user":
            add(f"{TURN_START}{SPEAKER['user']}\n{text}{TURN_END}\n", False)
        else:
            add(f"{TURN_START}{SPEAKER['character']}\n", False)
            add(f"{text}{TURN_END}", True)
            add("\n", False)
        if len(ids) > max_tokens:
            del ids[start:], labels[start:]
            break
    if all(label == IGNORE for label in labels):
        raise DialogueError(f"{conversation.id}: longer than {max_tokens} tokens before any reply")
    return Example(block, ids, labels)


def character_examples(
    character: Character, conversations: Sequence[Conversation], tokenizer, max_tokens: int = 384
) -> list[Example]:
    """Every conversation of `character`, tokenized for its own block."""
    header = character_header(character)
    return [tokenize_conversation(c, header, tokenizer, character.slug, max_tokens)
            for c in conversations]


def collate(examples: Sequence[Example], pad_id: int) -> TrainingBatch:
    """Right-pad a list of examples into one batch (packed rows keep their positions; their
    padding is one more span of its own, with no labels)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    blocks = [e.block for e in examples]
    if all(e.positions is None for e in examples):
        return TrainingBatch(ids, mask, labels, blocks)
    positions = torch.stack([torch.tensor([*(e.positions or range(len(e.input_ids))),
                                           *range(width - len(e.input_ids))])
                             for e in examples])
    return TrainingBatch(ids, None, labels, blocks, positions)


def pack_examples(examples: Sequence[Example], row_tokens: int, seed: int) -> list[Example]:
    """Conversations of the same block packed into rows of at most `row_tokens` tokens
    (first fit, in an order shuffled by `seed`), so short exchanges waste no padding.

    Each conversation keeps its own labels and restarts the positions at 0; the token
    before a conversation (the previous one's last) never predicts one of its labels,
    since every conversation starts with an unlabelled <bos>."""
    order = epoch_order(len(examples), seed, -1)
    rows: dict[str, list[list[Example]]] = {}
    for index in order:
        example = examples[index]
        block_rows = rows.setdefault(example.block, [])
        room = row_tokens - len(example.input_ids)
        row = next((r for r in block_rows if sum(len(e.input_ids) for e in r) <= room), None)
        if row is None:
            block_rows.append(row := [])
        row.append(example)
    return [Example(block, [t for e in row for t in e.input_ids],
                    [t for e in row for t in e.labels],
                    [p for e in row for p in range(len(e.input_ids))])
            for block, block_rows in rows.items() for row in block_rows]


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """A deterministic shuffle of example indices for one epoch."""
    order = list(range(num_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def batches_from(
    examples: Sequence[Example], batch_size: int, pad_id: int, seed: int, epoch: int,
    skip: int = 0,
) -> Iterator[TrainingBatch]:
    """The batches of one epoch, mixed characters, length-sorted within chunks to cut padding.

    `skip` drops that many batches from the start (resuming mid-epoch).
    """
    order = epoch_order(len(examples), seed, epoch)
    chunk = batch_size * 8
    grouped: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(examples[i].input_ids))
        grouped += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    random.Random(seed + epoch).shuffle(grouped)
    for indices in grouped[skip:]:
        yield collate([examples[i] for i in indices], pad_id)


def batches_per_epoch(num_examples: int, batch_size: int) -> int:
    chunk = batch_size * 8
    full, rest = divmod(num_examples, chunk)
    return full * 8 + -(-rest // batch_size)

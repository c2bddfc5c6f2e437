"""Packing short conversations into one training row (tiny model)."""

from __future__ import annotations

import torch

from neeko_app.chat.prompt import Turn
from neeko_app.model.tiny import tiny_tokenizer
from neeko_app.training.data import (
    IGNORE,
    Conversation,
    collate,
    pack_examples,
    tokenize_conversation,
)
from neeko_app.training.loop import labelled_token_losses
from tests.conftest import make_tiny_neeko


def _examples(tokenizer, blocks: list[str]) -> list:
    examples = []
    for i, block in enumerate(blocks):
        turns = [Turn("user", f"question number {i} about ships?"),
                 Turn("character", f"answer {i}: " + "oars and sails " * (1 + i % 3))]
        examples.append(tokenize_conversation(Conversation(f"c{i}", tuple(turns)),
                                              "You are someone.", tokenizer, block, 200))
    return examples


def test_packed_rows_hold_one_block_each_and_fit():
    tokenizer = tiny_tokenizer()
    examples = _examples(tokenizer, ["char0", "char1"] * 6)
    packed = pack_examples(examples, 250, seed=0)
    assert len(packed) < len(examples)
    assert all(len(row.input_ids) <= 250 for row in packed)
    assert sorted(row.block for row in packed for _ in range(row.positions.count(0))) == sorted(
        e.block for e in examples)
    assert sum(len(r.input_ids) for r in packed) == sum(len(e.input_ids) for e in examples)


def test_no_label_is_predicted_across_a_conversation_boundary():
    tokenizer = tiny_tokenizer()
    packed = pack_examples(_examples(tokenizer, ["char0"] * 8), 250, seed=1)
    boundaries = 0
    for row in packed:
        starts = [t for t, p in enumerate(row.positions) if p == 0]
        for start in starts[1:]:
            boundaries += 1
            # the first token of a conversation (<bos>) is never a target
            assert row.labels[start] == IGNORE
    assert boundaries >= 4


def test_packed_losses_equal_the_separate_ones():
    """Attention stays inside each conversation: the packed row gives every labelled token
    the loss it has alone (a leak across the boundary would change them)."""
    model = make_tiny_neeko(num_blocks=2)
    tokenizer = tiny_tokenizer()
    examples = _examples(tokenizer, ["char1"] * 4)
    alone = [labelled_token_losses(model, collate([e], tokenizer.pad_token_id),
                                   model.gate_for([e.block]))[0] for e in examples]
    packed = pack_examples(examples, 10_000, seed=0)
    assert len(packed) == 1
    order = [next(i for i, e in enumerate(examples)
                  if packed[0].input_ids[start:start + len(e.input_ids)] == e.input_ids)
             for start, p in enumerate(packed[0].positions) if p == 0]
    batch = collate(packed + [examples[0]], tokenizer.pad_token_id)  # padded second row
    assert batch.attention_mask is None and batch.position_ids is not None
    losses, rows = labelled_token_losses(model, batch, model.gate_for(batch.blocks))
    expected = torch.cat([alone[i] for i in order] + [alone[0]])
    torch.testing.assert_close(losses, expected, rtol=1e-4, atol=1e-4)
    assert rows.tolist() == [0] * (len(expected) - len(alone[0])) + [1] * len(alone[0])

"""Top-p sampling without sorting the vocabulary keeps exactly transformers' nucleus."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TopPLogitsWarper

from neeko_app.chat.decoding import FIRST_CANDIDATES, nucleus


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("spread", [0.5, 3.0, 8.0])  # from near-flat to very peaked
def test_nucleus_keeps_the_tokens_transformers_keeps(top_p, spread):
    generator = torch.Generator().manual_seed(int(top_p * 1000 + spread))
    for _ in range(10):
        scores = torch.randn(1, 20_000, generator=generator) * spread
        kept_by_transformers = TopPLogitsWarper(top_p)(None, scores.clone())[0] > -float("inf")
        probs = torch.softmax(scores[0], dim=-1)
        ids, weights = nucleus(probs, top_p)
        ours, theirs = set(ids.tolist()), set(kept_by_transformers.nonzero().flatten().tolist())
        if top_p <= 0.95:
            assert ours == theirs
        else:  # ~10k tokens of ~1e-5 each: float sums may disagree on the last one or two
            differ = sorted(ours ^ theirs)
            assert len(differ) <= 2 and probs[differ].sum() < 1e-4
        assert torch.equal(weights, probs[ids])
        assert bool((weights[:-1] >= weights[1:]).all())  # best first


def test_a_wide_nucleus_widens_the_candidates_past_the_first_look():
    probs = torch.full((10_000,), 1e-4)  # flat: the nucleus needs 9,000 tokens
    ids, _ = nucleus(probs, 0.9)
    assert len(ids) > 4 * FIRST_CANDIDATES
    assert len(nucleus(probs, 1.0)[0]) == 10_000
    peaked = torch.zeros(100)
    peaked[7] = 1.0
    assert nucleus(peaked, 0.9)[0].tolist() == [7]

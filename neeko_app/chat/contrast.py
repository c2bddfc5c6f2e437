"""Decoding against the prompt without its memory notes (context-aware decoding).

A block can overlook the note that answers a question and say what it would have said
without it ("Which lanista owned you?" -> "The Roman one, stranger." beside a note naming
Lentulus Batiatus). Shi et al. (arXiv 2305.14739) weigh the next-token logits with the
context against those without it: `(1 + a) * with - a * without`, so that what the notes
change is amplified and what the block says regardless of them is damped.

Every token is reweighed. Limiting it to the tokens the block already finds plausible with
the notes (Li et al.'s cut, at a tenth of the best token's probability) lost what it is
for: the answer the block overlooks is one it finds implausible
(reports/note-contrast-2026-12-06/).
"""

from __future__ import annotations

import torch


def with_notes_contrast(with_notes: torch.Tensor, without_notes: torch.Tensor,
                        weight: float) -> torch.Tensor:
    """`with_notes + weight * (with_notes - without_notes)` in float32, for one row's
    [vocab] logits; tokens the batch's head did not compute (-inf in both) stay -inf."""
    with_notes, without_notes = with_notes.float(), without_notes.float()
    contrasted = with_notes + weight * (with_notes - without_notes)
    return torch.where(torch.isfinite(with_notes), contrasted, with_notes)

"""Incremental learning in a scripted run: the pre-trained characters before and after one
character is added by expansion, and that character played by fusion vs. its own block.

"Before" is the model with the added character's block taken out again. Adding a block
changes no other block, so the pre-trained characters' replies should come out the same
(the run regenerates a sample to check); what does change is that role identification has
one more character to confuse them with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neeko_app.evaluation.runner import ScriptedReply
from neeko_app.evaluation.scoring import Scores, score
from neeko_app.evaluation.script import DialogueScript, first_exchanges, without_character

REPLAYED_TURNS = 4  # per script and character: the sample regenerated without the block


@dataclass(frozen=True)
class IncrementalResult:
    """Role identification of the pre-trained characters among themselves (before) and with
    the added character among the candidates (after); the replay check; fusion vs. expansion."""

    added: str
    before: dict[str, float]
    after: dict[str, float]
    replayed: int  # replies regenerated with the added block removed
    identical: int  # how many of those equal the run's reply word for word
    fusion: Scores | None  # the added character played by fusion of the other blocks
    expansion: Scores | None  # ... and by its own block

    def to_dict(self) -> dict:
        return {"added": self.added, "before": self.before, "after": self.after,
                "replayed": self.replayed, "identical": self.identical,
                "fusion": self.fusion.to_dict() if self.fusion else None,
                "expansion": self.expansion.to_dict() if self.expansion else None}


def replay_scripts(scripts: Sequence[DialogueScript], added: str) -> list[DialogueScript]:
    """The first exchanges of every script, put to every character but `added`."""
    kept = (without_character(first_exchanges(s, REPLAYED_TURNS), added) for s in scripts)
    return [s for s in kept if s is not None]


def incremental_result(table: dict[str, dict[str, Scores]], replies: Sequence[ScriptedReply],
                       replayed: Sequence[ScriptedReply], profiles: dict[str, torch.Tensor],
                       added: str) -> IncrementalResult:
    """Compare the `blocks` replies of the characters other than `added` scored among all
    `profiles` (after) and among theirs only (before); `replayed`: the same turns answered
    with `added`'s block removed."""
    kept = [r for r in replies if r.system == "blocks" and r.character != added]
    if not kept:
        raise ValueError(f"no blocks replies of characters other than {added!r} to compare")
    before = score(kept, {s: v for s, v in profiles.items() if s != added})["blocks"]
    after = score(kept, profiles)["blocks"]
    said = {r.key: r.reply for r in replies}
    groups = [*sorted({r.character for r in kept}), "overall"]
    return IncrementalResult(
        added=added,
        before={g: before[g].role_identification for g in groups},
        after={g: after[g].role_identification for g in groups},
        replayed=len(replayed),
        identical=sum(said.get(r.key) == r.reply for r in replayed),
        fusion=table.get("fusion", {}).get(added),
        expansion=table.get("blocks", {}).get(added))

"""Keep, for each block, the weights of the epoch with its lowest held-out loss."""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch

from neeko_app.moelora import NeekoModel

PREFIX = "best."  # tensor names in a checkpoint: best.<block>.<index>


class BestEpochs:
    """Per block: the epoch whose held-out loss was lowest so far, and (`keep_weights`) its
    weights."""

    def __init__(self, model: NeekoModel, keep_weights: bool) -> None:
        self.model = model
        self.keep_weights = keep_weights
        self.clear()

    def clear(self) -> None:
        """Forget every recorded epoch."""
        self.epochs: dict[str, int] = {}
        self.losses: dict[str, float] = {}
        self.weights: dict[str, list[torch.Tensor]] = {}

    def update(self, epoch: int, losses: Mapping[str, float]) -> None:
        """Record the blocks whose held-out loss after `epoch` is their lowest yet."""
        for block, loss in losses.items():
            if block not in self.losses or loss < self.losses[block]:
                self.epochs[block], self.losses[block] = epoch, loss
                if self.keep_weights:
                    self.weights[block] = [p.detach().clone()
                                           for p in self.model.trainable_copies(block)]

    @torch.no_grad()
    def restore(self, last_epoch: int) -> None:
        """Put back the recorded weights of every block whose best epoch was not the last."""
        if not self.keep_weights:
            raise ValueError("no weights were kept to restore")
        for block, epoch in self.epochs.items():
            if epoch != last_epoch:
                for param, saved in zip(self.model.trainable_copies(block), self.weights[block],
                                        strict=True):
                    param.copy_(saved)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The recorded weights, for a checkpoint."""
        return {f"{PREFIX}{block}.{i}": w for block, weights in self.weights.items()
                for i, w in enumerate(weights)}

    def metadata(self) -> str:
        return json.dumps({block: [self.epochs[block], self.losses[block]]
                           for block in self.epochs})

    def load(self, tensors: Mapping[str, torch.Tensor], metadata: str | None) -> None:
        """Restore what `tensors` and `metadata` saved (resuming an interrupted run)."""
        for block, (epoch, loss) in json.loads(metadata or "{}").items():
            self.epochs[block], self.losses[block] = int(epoch), float(loss)
            if self.keep_weights:
                count = len(self.model.trainable_copies(block))
                self.weights[block] = [tensors[f"{PREFIX}{block}.{i}"] for i in range(count)]

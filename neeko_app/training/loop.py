"""The training primitive: optimise only the named blocks, each row routed to its own block."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from neeko_app.compute_threads import all_cores
from neeko_app.moelora import Gate, NeekoModel
from neeko_app.moelora.context import gate_scope

IGNORE = -100


@dataclass
class TrainingBatch:
    """Token ids with labels (-100 where no loss) and the block each row trains.

    A packed batch (several conversations in one row) has no attention mask but position
    ids that restart at 0 with each conversation: transformers then keeps the attention of
    every conversation inside its own span."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    labels: torch.Tensor
    blocks: list[str]
    position_ids: torch.Tensor | None = None


def labelled_token_losses(
    model: NeekoModel, batch: TrainingBatch, gate: Gate | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token loss at every labelled position, and the batch row each position is in.

    The output head runs on the labelled positions alone: with a 262k-token vocabulary
    the head is most of the compute, and most positions (the user's turns) carry no loss.
    """
    device = model.keys.device
    labels = batch.labels.to(device)
    decoder = model.base_model.get_decoder()
    with gate_scope(gate):
        hidden = decoder(input_ids=batch.input_ids.to(device),
                         attention_mask=_on(batch.attention_mask, device),
                         position_ids=_on(batch.position_ids, device),
                         use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = model.base_model.get_output_embeddings()(hidden[:, :-1][keep])
    cap = getattr(model.base_model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    rows = keep.nonzero()[:, 0]
    return F.cross_entropy(logits.float(), targets[keep], reduction="none"), rows


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def reply_loss(model: NeekoModel, batch: TrainingBatch) -> torch.Tensor:
    """Mean next-token loss on the character's words, each row through its own block."""
    losses, _ = labelled_token_losses(model, batch, model.gate_for(batch.blocks))
    return losses.mean()


class BlockTrainer:
    """AdamW over the trainable copies of some blocks; `step` trains on one batch."""

    def __init__(self, model: NeekoModel, trainable: Sequence[str],
                 params: list[torch.nn.Parameter], lr: float, weight_decay: float,
                 bf16: bool = False):
        self.model = model
        self.bf16 = bf16
        self.allowed = set(trainable)
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def step(self, batch: TrainingBatch) -> float:
        """One optimiser step; rows may only name trainable blocks."""
        frozen = sorted(set(batch.blocks) - self.allowed)
        if frozen:
            raise ValueError(f"batch rows use blocks that are not being trained: {frozen}")
        with torch.autocast(self.model.keys.device.type, dtype=torch.bfloat16,
                            enabled=self.bf16):
            loss = reply_loss(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Trainable weights and optimiser moments, for a checkpoint."""
        tensors = {}
        for i, param in enumerate(self.params):
            tensors[f"param.{i}"] = param.detach()
            for key, value in self.optimizer.state.get(param, {}).items():
                tensors[f"opt.{i}.{key}"] = torch.as_tensor(value)
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state_tensors` saved (resuming an interrupted run)."""
        for i, param in enumerate(self.params):
            saved = tensors.get(f"param.{i}")
            if saved is None or saved.shape != param.shape:
                raise ValueError(f"checkpoint does not fit parameter {i}")
        with torch.no_grad():
            for i, param in enumerate(self.params):
                param.copy_(tensors[f"param.{i}"])
                moments = {k.split(".", 2)[2]: v for k, v in tensors.items()
                           if k.startswith(f"opt.{i}.")}
                if moments:
                    self.optimizer.state[param] = moments


@contextmanager
def block_training(model: NeekoModel, trainable: Sequence[str], lr: float = 2e-4,
                   weight_decay: float = 0.0, bf16: bool = False) -> Iterator[BlockTrainer]:
    """Train the named blocks inside this block; every other weight stays bit-identical.
    With `bf16`, the forward pass runs under bfloat16 autocast (the trained weights and the
    optimiser stay float32): about 1.6x faster on a CPU with AMX.

    Weights are committed on normal exit and discarded if the body raises (interrupted).
    Training runs on every core, also from a thread of a serving process (`all_cores`).
    """
    was_training = model.training
    model.train()
    try:
        with all_cores(), model.training_blocks(list(trainable)) as params:
            yield BlockTrainer(model, trainable, params, lr, weight_decay, bf16)
    finally:
        model.train(was_training)


def train_blocks(
    model: NeekoModel,
    batches: Iterable[TrainingBatch],
    trainable: Sequence[str],
    lr: float = 2e-4,
    weight_decay: float = 0.0,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train `trainable` blocks on `batches` (each row one-hot on its own block); the losses."""
    losses: list[float] = []
    with block_training(model, trainable, lr, weight_decay) as trainer:
        for batch in batches:
            losses.append(trainer.step(batch))
            if on_step:
                on_step(len(losses), losses[-1])
    return losses

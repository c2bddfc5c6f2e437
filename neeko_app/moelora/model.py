"""`NeekoModel`: a causal LM whose target linears carry per-character LoRA blocks.

Blocks are named (usually by character slug) and each has a key, the role embedding used
by the fusion gate. The gate of a call is an argument of `forward`/`generate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from neeko_app.moelora.config import MoeLoraConfig
from neeko_app.moelora.context import gate_scope
from neeko_app.moelora.gate import Gate, GatePath, fusion_gate
from neeko_app.moelora.layer import MoeLoraLinear
from neeko_app.moelora.slots import GateSlots


def inject_moelora(model: nn.Module, config: MoeLoraConfig) -> list[str]:
    """Wrap every `nn.Linear` whose name ends with a target in a `MoeLoraLinear`, in place."""
    wrapped = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or isinstance(module, MoeLoraLinear):
            continue
        if name.rsplit(".", 1)[-1] not in config.target_modules:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, MoeLoraLinear(module, config.rank, config.alpha, config.dropout))
        wrapped.append(name)
    if not wrapped:
        raise ValueError(f"no linear layer matches target_modules {list(config.target_modules)}")
    return wrapped


class NeekoModel(nn.Module):
    """A frozen base causal LM plus named LoRA blocks chosen per batch row by a gate."""

    def __init__(self, base_model: nn.Module, config: MoeLoraConfig, key_dim: int = 384):
        super().__init__()
        self.base_model = base_model
        self.config = config
        for param in base_model.parameters():
            param.requires_grad_(False)
        self.lora_names = inject_moelora(base_model, config)
        self.block_names: list[str] = []
        self.register_buffer("keys", torch.zeros(0, key_dim))
        self.prepacks_weights = True  # see `prepack_weights`

    # ---- blocks -------------------------------------------------------------------------

    def lora_layers(self) -> Iterator[tuple[str, MoeLoraLinear]]:
        """(name in the base model, layer) for every wrapped linear."""
        for name in self.lora_names:
            yield name, self.base_model.get_submodule(name)

    @property
    def num_blocks(self) -> int:
        return len(self.block_names)

    def block_index(self, name: str) -> int:
        """Index of the block named `name`; KeyError with the known names otherwise."""
        try:
            return self.block_names.index(name)
        except ValueError:
            raise KeyError(f"no block named {name!r}; known: {self.block_names}") from None

    def add_blocks(self, names: Sequence[str], keys: torch.Tensor, seed: int = 0,
                   draw_on: torch.device | str = "cpu") -> list[int]:
        """Append one fresh block per name (no-op until trained). Existing blocks are untouched.

        The random A matrices are drawn on `draw_on`: the CPU gives the same blocks on every
        machine; a GPU draws thousands of blocks in a fraction of the time (benchmarks)."""
        names = list(names)
        keys = torch.as_tensor(keys, dtype=torch.float32).reshape(len(names), -1)
        duplicates = sorted(set(names) & set(self.block_names)) or sorted(
            {n for n in names if names.count(n) > 1}
        )
        if duplicates:
            raise ValueError(f"block names already used: {duplicates}")
        if keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"keys have dim {keys.shape[1]}, model expects {self.keys.shape[1]}")
        generator = torch.Generator(device=draw_on).manual_seed(seed + self.num_blocks)
        for _, layer in self.lora_layers():
            layer.add_blocks(len(names), generator)
        first = self.num_blocks
        self.block_names += names
        self.keys = torch.cat([self.keys, keys.to(self.keys)])
        return list(range(first, first + len(names)))

    def truncate_blocks(self, count: int) -> None:
        """Keep only the first `count` blocks (undo an `add_blocks` whose training failed)."""
        self._keep_blocks(slice(0, count), self.block_names[:count])

    def remove_block(self, name: str) -> None:
        """Drop the block named `name`; the others keep their weights (their indices shift)."""
        dropped = self.block_index(name)
        kept = [i for i in range(self.num_blocks) if i != dropped]
        self._keep_blocks(torch.tensor(kept, dtype=torch.long), [self.block_names[i] for i in kept])

    def _keep_blocks(self, index: slice | torch.Tensor, names: list[str]) -> None:
        """Keep the blocks `index` selects (a slice keeps views), named `names`."""
        for _, layer in self.lora_layers():
            layer.set_blocks(layer.lora_A[index], layer.lora_BT[index])
        self.block_names = names
        self.keys = self.keys[index]

    # ---- gates --------------------------------------------------------------------------

    def gate_for(self, names: Sequence[str | None], path: GatePath = "sparse") -> Gate:
        """One-hot gate: row j plays block `names[j]` (None: the bare base model)."""
        ids = [-1 if name is None else self.block_index(name) for name in names]
        return Gate.one_hot(ids, path)

    def fusion_gate_for(
        self, role_embeddings: torch.Tensor, temperature: float = 0.1, top_k: int | None = None
    ) -> Gate:
        """Fusion gate for unseen characters: blocks mixed by role similarity."""
        return fusion_gate(role_embeddings.reshape(-1, self.keys.shape[1]), self.keys,
                           temperature, top_k)

    def bind_slots(self, slots: GateSlots | None) -> None:
        """Make `slots` the gate of every LoRA layer inside a compiled decode step (only
        there: eager calls keep taking their gate as an argument)."""
        for _, layer in self.lora_layers():
            layer.slots = slots

    def merge_single_blocks(self, enabled: bool) -> None:
        """Serve a batch whose rows all play one block through that block merged into the
        base weights (`MoeLoraLinear.merges_single_block`); off: always through the gate."""
        for _, layer in self.lora_layers():
            layer.set_merging(enabled, self.prepacks_weights)

    def prepack_weights(self, enabled: bool) -> None:
        """While serving (`merge_single_blocks` on), multiply by copies of the merged and
        the base weights laid out for oneDNN on a CPU (`model.prepacked`), and so do the
        output heads of schedulers made afterwards; off: by the plain weights."""
        self.prepacks_weights = enabled
        for _, layer in self.lora_layers():
            layer.set_merging(layer.merges_single_block, enabled)

    # ---- calls --------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, gate: Gate | None = None, **kwargs):
        """The base model's forward with `gate` choosing the blocks of each row."""
        with gate_scope(gate):
            return self.base_model(input_ids=input_ids, **kwargs)

    def hidden_states(self, input_ids: torch.Tensor, gate: Gate | None = None, **kwargs):
        """The base model's layers without its output head, with `gate` choosing the blocks
        of each row: the output holds `last_hidden_state` and the cache (decoding applies
        its own head, `model.output_head.OutputHead`)."""
        with gate_scope(gate):
            return self.base_model.get_decoder()(input_ids=input_ids, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, gate: Gate | None = None, **kwargs):
        """The base model's `generate` with `gate` applied at every step."""
        with gate_scope(gate):
            return self.base_model.generate(input_ids=input_ids, **kwargs)

    # ---- training -----------------------------------------------------------------------

    @contextmanager
    def training_blocks(self, names: Sequence[str]) -> Iterator[list[nn.Parameter]]:
        """Make the named blocks trainable; yield their parameters (the only trainable ones).

        On normal exit the trained weights are committed to the blocks; if the body raises
        (an interrupted run), they are discarded and every block stays as it was.
        """
        blocks = [self.block_index(name) for name in names]
        params = [p for _, layer in self.lora_layers() for p in layer.train_blocks(blocks)]
        try:
            yield params
        except BaseException:
            for _, layer in self.lora_layers():
                layer.discard_training()
            raise
        for _, layer in self.lora_layers():
            layer.commit_training()

    def trainable_copies(self, name: str) -> list[nn.Parameter]:
        """The trainable copies of block `name` (inside `training_blocks`), layer by layer."""
        key = str(self.block_index(name))
        return [p for _, layer in self.lora_layers()
                for p in (layer.trainable_A[key], layer.trainable_BT[key])]

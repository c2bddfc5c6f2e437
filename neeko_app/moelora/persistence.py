"""Save and load blocks as safetensors + JSON (atomic writes, never pickle).

Two forms share one tensor layout (`{layer}.lora_A` [k, r, in], `{layer}.lora_BT` [k, r, out],
`role_keys` [k, d]):
- an adapter directory: `neeko_adapter.json` + `blocks.safetensors`, all blocks at once;
- a block file: one character's block (k = 1), its name and config in the safetensors metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from neeko_app.moelora.config import MoeLoraConfig
from neeko_app.moelora.model import NeekoModel
from neeko_app.storage import atomic_save_tensors, atomic_write_json, load_tensors

ADAPTER_CONFIG = "neeko_adapter.json"
ADAPTER_WEIGHTS = "blocks.safetensors"
FORMAT_VERSION = 1


class AdapterFormatError(ValueError):
    """A saved adapter or block file is missing, corrupt or does not fit the model."""


def block_tensors(model: NeekoModel, blocks: list[int]) -> dict[str, torch.Tensor]:
    """The tensors of `blocks`, keyed by layer name."""
    tensors = {"role_keys": model.keys[blocks]}
    for name, layer in model.lora_layers():
        tensors[f"{name}.lora_A"] = layer.lora_A[blocks]
        tensors[f"{name}.lora_BT"] = layer.lora_BT[blocks]
    return tensors


def _append_tensors(model: NeekoModel, names: list[str], tensors: dict[str, torch.Tensor]) -> None:
    """Append blocks `names` with weights from `tensors`, all checked against the model's
    layers first: a file that does not fit leaves the model as it was."""
    missing = [n for n, _ in model.lora_layers() if f"{n}.lora_A" not in tensors]
    if missing or "role_keys" not in tensors:
        raise AdapterFormatError(f"weights lack layers {missing[:3]} (or role_keys)")
    for name, layer in model.lora_layers():
        a, bt = tensors[f"{name}.lora_A"], tensors.get(f"{name}.lora_BT")
        expected_a = (len(names), layer.rank, layer.in_features)
        expected_bt = (len(names), layer.rank, layer.out_features)
        if bt is None or tuple(a.shape) != expected_a or tuple(bt.shape) != expected_bt:
            found = "missing" if bt is None else f"{tuple(a.shape)}/{tuple(bt.shape)}"
            raise AdapterFormatError(f"layer {name}: block shapes {found} do not fit this "
                                     f"model (expected {expected_a}/{expected_bt})")
    first = model.num_blocks
    try:
        model.add_blocks(names, tensors["role_keys"])
    except ValueError as err:
        raise AdapterFormatError(str(err)) from None
    for name, layer in model.lora_layers():
        layer.set_blocks(
            torch.cat([layer.lora_A[:first], tensors[f"{name}.lora_A"].to(layer.lora_A)]),
            torch.cat([layer.lora_BT[:first], tensors[f"{name}.lora_BT"].to(layer.lora_BT)]),
        )


def save_adapter(model: NeekoModel, directory: str | Path, base_model_id: str = "") -> None:
    """Write every block, its key and the config into `directory`."""
    directory = Path(directory)
    weights = directory / ADAPTER_WEIGHTS
    atomic_save_tensors(weights, block_tensors(model, list(range(model.num_blocks))))
    atomic_write_json(directory / ADAPTER_CONFIG, {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "block_names": model.block_names,
        "key_dim": model.keys.shape[1],
        "base_model": base_model_id,
        "weights_sha256": _sha256(weights),
    })


def load_adapter(base_model: nn.Module, directory: str | Path) -> NeekoModel:
    """Build a `NeekoModel` on `base_model` with the blocks saved in `directory`."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        weights = directory / ADAPTER_WEIGHTS
        if _sha256(weights) != meta["weights_sha256"]:
            raise AdapterFormatError(f"{weights} does not match its checksum (corrupt or partial)")
        config = MoeLoraConfig.from_dict(meta["config"])
        tensors = load_tensors(weights)
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise AdapterFormatError(f"cannot read adapter in {directory}: {err}") from None
    model = NeekoModel(base_model, config, key_dim=int(meta["key_dim"]))
    if meta["block_names"]:
        _append_tensors(model, list(meta["block_names"]), tensors)
    return model


def save_block(model: NeekoModel, name: str, path: str | Path, base_model_id: str = "") -> None:
    """Write the block `name` alone (the trained artefact of one character)."""
    metadata = {
        "format": "neeko-block",
        "format_version": str(FORMAT_VERSION),
        "name": name,
        "config": json.dumps(model.config.to_dict()),
        "base_model": base_model_id,
    }
    atomic_save_tensors(path, block_tensors(model, [model.block_index(name)]), metadata)


def read_block_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a block file (name, config, base model) without loading weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise AdapterFormatError(f"{path} is not a readable safetensors file: {err}") from None
    if metadata.get("format") != "neeko-block":
        raise AdapterFormatError(f"{path} is not a neeko block file")
    return metadata


def load_block(model: NeekoModel, path: str | Path, name: str | None = None) -> int:
    """Append the block saved in `path` (under `name`, default its saved name); its index."""
    metadata = read_block_metadata(path)
    saved = MoeLoraConfig.from_dict(json.loads(metadata["config"]))
    if saved != model.config:
        raise AdapterFormatError(f"{path} was trained with {saved}, the model uses {model.config}")
    _append_tensors(model, [name or metadata["name"]], load_tensors(path))
    return model.num_blocks - 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

"""The same character blocks served the standard way: PEFT LoRA adapters on a twin base."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel

from neeko_app.bench.shapes import BenchModels
from neeko_app.moelora.peft_export import export_peft


def export_adapters(models: BenchModels, names: list[str], directory: Path) -> dict[str, Path]:
    """Write each named block as a PEFT adapter folder under `directory`."""
    return {name: export_peft(models.neeko, name, directory / name) for name in names}


def peft_model(models: BenchModels, adapters: dict[str, Path]) -> PeftModel:
    """PEFT wrapping the untouched twin base, with every adapter loaded (from disk, as PEFT
    users do); the first one active."""
    if models.plain_base is None:
        raise ValueError("the benchmark models were built without a plain twin for PEFT")
    (first, path), *rest = adapters.items()
    model = PeftModel.from_pretrained(models.plain_base, path, adapter_name=first)
    for name, folder in rest:
        model.load_adapter(folder, adapter_name=name)
    model.set_adapter(first)
    return model.to(models.device).eval()


def same_logits(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Whether PEFT's logits match ours for the same weights: within 1e-3 of their scale in
    fp32 on CPU, 50x that in bf16/fp16 or on a GPU, whose kernels round differently."""
    tolerance = 1e-3 * max(1.0, ours.abs().max().item())
    if ours.dtype != torch.float32 or ours.device.type != "cpu":
        tolerance *= 50
    return bool((ours.float() - theirs.float()).abs().max() <= tolerance)

"""The same character blocks served the standard way: PEFT LoRA adapters on a twin base."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel

from neeko_app.bench.shapes import BenchModels
from neeko_app.moelora.context import gate_scope
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


def layer_errors(models: BenchModels, peft: PeftModel, names: list[str], layers: int = 4,
                 seed: int = 0) -> dict[str, float]:
    """Ours and PEFT against an fp32 reference, one wrapped linear at a time.

    For the first `layers` wrapped linears, a random input row per character goes through
    our layer (each row its own block) and PEFT's (`adapter_names`), and through
    `x W^T + scaling x A^T B^T` computed in fp32 from the same weights. Returns the largest
    error of each, relative to the reference's largest value: in bf16 both are rounding
    noise (~1e-2); a real difference (a wrong block, a missed scaling) is of order 1."""
    neeko = models.neeko
    worst = {"ours": 0.0, "peft": 0.0}
    generator = torch.Generator().manual_seed(seed)
    gate = neeko.gate_for(names)
    for path, layer in list(neeko.lora_layers())[:layers]:
        theirs = peft.base_model.model.get_submodule(path)
        x = torch.randn(len(names), 1, layer.in_features, generator=generator)
        x = x.to(layer.lora_A)
        with torch.no_grad(), gate_scope(gate):
            ours = layer(x).float()
        with torch.no_grad():
            peft_out = theirs(x, adapter_names=names).float()
            blocks = [neeko.block_index(name) for name in names]
            a = layer.lora_A[blocks].float()  # [rows, r, in]
            bt = layer.lora_BT[blocks].float()  # [rows, r, out]
            reference = (x.float() @ layer.base_layer.weight.float().T
                         + layer.scaling * torch.bmm(torch.bmm(x.float(), a.transpose(1, 2)),
                                                     bt))
        scale = reference.abs().max().item()
        worst["ours"] = max(worst["ours"], (ours - reference).abs().max().item() / scale)
        worst["peft"] = max(worst["peft"], (peft_out - reference).abs().max().item() / scale)
    return worst

"""Export one block as a standard PEFT LoRA adapter directory.

The result (`adapter_config.json` + `adapter_model.safetensors`) loads with
`peft.PeftModel.from_pretrained` on the same base model; vLLM and LoRAX read the same files.
"""

from __future__ import annotations

from pathlib import Path

from neeko_app.moelora.model import NeekoModel
from neeko_app.storage import atomic_save_tensors, atomic_write_json


def peft_adapter_config(model: NeekoModel, base_model_name_or_path: str) -> dict:
    """An `adapter_config.json` for a block of `model`: plain LoRA fields that PEFT, vLLM and
    LoRAX all read the same way, and none that a server refuses."""
    # Checked against (peft_type, task_type, lora_dropout, inference_mode are PEFT's own):
    # vLLM vllm/lora/peft_helper.py (PEFTHelper): needs r, lora_alpha, target_modules; refuses
    #   use_dora, modules_to_save and bias != "none"; drops unknown keys; scale alpha/r.
    # vLLM vllm/config/lora.py: r must fit --max-lora-rank (see moelora/serving_lines.py).
    # LoRAX server/lorax_server/adapters/lora.py: peft LoraConfig.from_pretrained, then reads
    #   r, target_modules, fan_in_fan_out, lora_alpha, use_rslora, base_model_name_or_path.
    # LoRAX docs/models/adapters/lora.md: Gemma targets q/k/v/o_proj, gate/up/down_proj.
    alpha = model.config.alpha
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": model.config.rank,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,  # int in vLLM, LoRAX
        "lora_dropout": 0.0,
        "target_modules": sorted(model.config.target_modules),
        "bias": "none",
        "fan_in_fan_out": False,  # weights are stored (out, in) as PEFT writes them
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
    }


def export_peft(
    model: NeekoModel, name: str, directory: str | Path, base_model_name_or_path: str = ""
) -> Path:
    """Write block `name` as a PEFT LoRA adapter in `directory`; returns the directory."""
    block = model.block_index(name)
    tensors = {}
    for layer_name, layer in model.lora_layers():
        prefix = f"base_model.model.{layer_name}"
        tensors[f"{prefix}.lora_A.weight"] = layer.lora_A[block]
        tensors[f"{prefix}.lora_B.weight"] = layer.lora_BT[block].T
    directory = Path(directory)
    atomic_save_tensors(directory / "adapter_model.safetensors", tensors, {"format": "pt"})
    atomic_write_json(directory / "adapter_config.json",
                      peft_adapter_config(model, base_model_name_or_path))
    return directory

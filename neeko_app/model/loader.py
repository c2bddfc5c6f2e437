"""Load a base causal LM and its tokenizer: embedded default, a local directory, or tiny."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from neeko_app.config import Settings
from neeko_app.model.embedded import MODEL_ID, embedded_model_dir
from neeko_app.model.tiny import tiny_model, tiny_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """The base model could not be loaded (bad path, not a causal LM, ...)."""


@dataclass
class BaseModel:
    """A loaded base model, its tokenizer and what it is."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    device: torch.device
    dtype: torch.dtype
    directory: Path | None = None  # the weights on disk (None for the in-memory tiny model)


def resolve_device(device: str = "auto") -> torch.device:
    """CUDA when available for "auto", else CPU; explicit names are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for, but no CUDA GPU is available")
    return resolved


def resolve_dtype(dtype: str, device: torch.device, serving: bool = False) -> torch.dtype:
    """The named dtype; for "auto", bf16 on CUDA and fp32 on a CPU, except that a model
    `serving` chat on a CPU that multiplies bfloat16 natively runs in bf16 (there replies
    come about 1.3 times sooner, several sessions get twice the throughput, and the fact quiz
    scores the same; docs/performance.md). Training and export keep fp32 on a CPU: they
    write blocks, which must keep the precision they were trained in."""
    if dtype == "auto":
        if device.type == "cuda" or (serving and cpu_multiplies_bfloat16()):
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)} or auto")
    return DTYPES[dtype]


def cpu_multiplies_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX): there a bfloat16
    model decodes about twice as fast as a float32 one; elsewhere it is slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def load_base_model(
    spec: str = "embedded",
    cache_dir: Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    report: Callable[[str], None] = print,
    serving: bool = False,
) -> BaseModel:
    """Load `spec`: "embedded" (Gemma 3 270M from PyPI), "tiny" (random, tests) or a directory.
    `serving`: the model answers chat (see `resolve_dtype`); the tiny test model computes
    in the same dtype on every machine."""
    target_device = resolve_device(device)
    target_dtype = resolve_dtype(dtype, target_device, serving and spec != "tiny")
    if spec == "tiny":
        tokenizer = tiny_tokenizer()
        model, model_id, directory = tiny_model(len(tokenizer)), "tiny-gemma3", None
    else:
        if spec == "embedded":
            directory = embedded_model_dir(cache_dir or Settings().cache_dir, report)
            model_id = MODEL_ID
        else:
            directory, model_id = Path(spec).expanduser(), str(spec)
            if not (directory / "config.json").is_file():
                raise ModelLoadError(
                    f"{directory} is not a Hugging Face model directory (no config.json); "
                    "use 'embedded', 'tiny' or a local model path"
                )
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=target_dtype)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot load a causal LM from {directory}: {err}") from None
    model = model.to(device=target_device, dtype=target_dtype).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return BaseModel(model, tokenizer, model_id, target_device, target_dtype, directory)

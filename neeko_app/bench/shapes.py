"""Randomly initialised models of realistic shape, with random character blocks, for timing.

Timing depends on shapes, not on trained weights, so the benchmarks can build the models they
need anywhere: the embedded Gemma 3 270M's shape on a laptop, a Llama-2-7B-shaped layer stack
on a GPU host, without downloading anything. `embedded` loads the real weights instead.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from neeko_app.model import load_base_model
from neeko_app.model.loader import resolve_device, resolve_dtype
from neeko_app.moelora import MoeLoraConfig, NeekoModel

SHAPES = ("gemma-270m", "llama-7b", "tiny", "embedded")
KEY_DIM = 384


def _gemma_270m(layers: int | None) -> PreTrainedModel:
    count = layers or 18
    config = Gemma3TextConfig(
        vocab_size=262_144, hidden_size=640, intermediate_size=2048, num_hidden_layers=count,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
        max_position_embeddings=32_768, query_pre_attn_scalar=256,
        layer_types=[("full_attention" if (i + 1) % 6 == 0 else "sliding_attention")
                     for i in range(count)],
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    return Gemma3ForCausalLM(config)


def _llama_7b(layers: int | None) -> PreTrainedModel:
    config = LlamaConfig(
        vocab_size=32_000, hidden_size=4096, intermediate_size=11_008,
        num_hidden_layers=layers or 32, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=4096, pad_token_id=0, eos_token_id=2, bos_token_id=1,
    )
    return LlamaForCausalLM(config)


def base_model(shape: str, device: str = "auto", dtype: str = "auto",
               layers: int | None = None) -> PreTrainedModel:
    """A base causal LM of `shape` (see SHAPES) on `device` in `dtype`, in eval mode.

    `layers` shortens the layer stack of the random shapes (a 7B shape on a small machine)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown model shape {shape!r}; choose one of {SHAPES}")
    target = resolve_device(device)
    target_dtype = resolve_dtype(dtype, target)
    if shape in ("tiny", "embedded"):
        model = load_base_model(shape, device=str(target), dtype=dtype,
                                report=lambda _: None).model
    else:
        torch.manual_seed(0)
        with torch.device(target):
            model = (_gemma_270m if shape == "gemma-270m" else _llama_7b)(layers)
    return model.to(device=target, dtype=target_dtype).eval()


@dataclass(frozen=True)
class ModelOptions:
    """What every model benchmark takes: the model to build and how many timing rounds."""

    shape: str = "gemma-270m"
    device: str = "auto"
    dtype: str = "auto"
    layers: int | None = None  # shorten a random shape's layer stack
    rounds: int = 5


@dataclass
class BenchModels:
    """A Neeko model with `names` as random blocks, and (optionally) an untouched twin of the
    base model for PEFT to wrap."""

    neeko: NeekoModel
    names: list[str]
    plain_base: PreTrainedModel | None

    @property
    def device(self) -> torch.device:
        return self.neeko.keys.device

    @property
    def vocab_size(self) -> int:
        return self.neeko.base_model.config.vocab_size


def bench_models(options: ModelOptions, characters: int, rank: int = 8,
                 with_plain_twin: bool = False, seed: int = 0) -> BenchModels:
    """`characters` random blocks of rank `rank` on all seven projections of the model that
    `options` describe."""
    base = base_model(options.shape, options.device, options.dtype, options.layers)
    plain = copy.deepcopy(base) if with_plain_twin else None
    neeko = NeekoModel(base, MoeLoraConfig(rank=rank, alpha=2.0 * rank), key_dim=KEY_DIM)
    names = [f"char{i:04d}" for i in range(characters)]
    keys = torch.randn(characters, KEY_DIM, generator=torch.Generator().manual_seed(seed))
    # drawn on the model's device: a thousand 7B-shaped blocks take minutes on one CPU thread
    neeko.add_blocks(names, keys, seed=seed, draw_on=base.device)
    generator = torch.Generator(device=base.device).manual_seed(seed + 1)  # not A's stream
    for _, layer in neeko.lora_layers():  # fresh blocks have B = 0: make them do something
        noise = torch.empty(layer.lora_BT.shape, dtype=torch.float32, device=base.device)
        layer.lora_BT.copy_(noise.normal_(0, 0.02, generator=generator).to(layer.lora_BT))
    neeko.to(base.device)
    return BenchModels(neeko.eval(), names, plain)


def bench_settings(options: ModelOptions, models: BenchModels) -> dict[str, Any]:
    """The options of a run as recorded with its figures (device and dtype as resolved)."""
    dtype = next(models.neeko.base_model.parameters()).dtype
    return asdict(options) | {"device": str(models.device), "layers": options.layers or "all",
                              "dtype": str(dtype).removeprefix("torch."),
                              "rank": models.neeko.config.rank}


def block_bytes(model: NeekoModel) -> int:
    """Bytes one character's block takes over every wrapped layer."""
    return sum(layer.lora_A[0].nbytes + layer.lora_BT[0].nbytes
               for _, layer in model.lora_layers())

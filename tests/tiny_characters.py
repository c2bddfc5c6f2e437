"""A Runtime on the tiny random model with test characters: some with a trained block
(random non-zero weights), some without (fusion, from a stored random role embedding)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from neeko_app.config import Settings
from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.storage import atomic_save_tensors
from tests.conftest import randomize_blocks, write_card

ROLE_DIM = 384


def make_tiny_runtime(root: Path, trained: Mapping[str, str],
                      fused: Mapping[str, str] | None = None, seed: int = 0) -> Runtime:
    """Characters under `root/characters` (slug -> display name); blocks for `trained`."""
    characters = root / "characters"
    characters.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    donor = NeekoModel(load_base_model("tiny", device="cpu").model, MoeLoraConfig())
    donor.add_blocks(list(trained), torch.randn(len(trained), ROLE_DIM, generator=generator))
    randomize_blocks(donor, seed)
    for slug, name in trained.items():
        folder = write_card(characters, slug, name)
        save_block(donor, slug, folder / "block.safetensors")
    for slug, name in (fused or {}).items():
        folder = write_card(characters, slug, name)
        atomic_save_tensors(folder / "role.safetensors",
                            {"role": torch.randn(ROLE_DIM, generator=generator)})
    settings = Settings(base_model="tiny", device="cpu", characters_dir=characters,
                        data_dir=root, cache_dir=root / "cache", memory_dir=root / "memory",
                        sessions_dir=root / "sessions")
    return load_runtime(settings, report=lambda _: None)

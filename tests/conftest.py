"""Shared fixtures: a tiny Gemma 3 with LoRA blocks, and the real embedded model (cached)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

from neeko_app.model import load_base_model
from neeko_app.moelora import MoeLoraConfig, NeekoModel

KEY_DIM = 16

# Nothing a test does reaches the user's data folder, even code that runs outside a test's
# own folder (session fixtures); each test then gets a fresh one (`private_data` below).
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="neeko-tests-")
os.environ["NEEKO_DATA_DIR"] = os.environ["XDG_DATA_HOME"]


@pytest.fixture(autouse=True)
def private_data(tmp_path_factory):
    """Each test's added characters, memory and sessions go to a folder of its own. (Not
    through `monkeypatch`: that would make the test's own monkeypatching outlive its other
    fixtures' teardown.)"""
    before = {name: os.environ[name] for name in ("NEEKO_DATA_DIR", "XDG_DATA_HOME")}
    os.environ["NEEKO_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))  # for `Settings()`
    yield
    os.environ.update(before)


def write_card(folder: Path, dirname: str, name: str, **fields: object) -> Path:
    """A minimal valid character folder `folder/dirname`; extra card fields override."""
    (folder / dirname).mkdir()
    card = {"name": name, "slug": dirname, "description": f"{name}, a test character.",
            "personality": "steady", "scenario": "A test.", "greeting": "Hello.", **fields}
    (folder / dirname / "character.json").write_text(json.dumps(card))
    return folder / dirname


def randomize_blocks(model: NeekoModel, seed: int = 0) -> None:
    """Give every block non-zero B so blocks differ (fresh blocks are a no-op)."""
    generator = torch.Generator().manual_seed(seed)
    for _, layer in model.lora_layers():
        layer.lora_BT.normal_(0, 0.05, generator=generator)


def make_tiny_neeko(num_blocks: int = 4, rank: int = 4, seed: int = 0) -> NeekoModel:
    base = load_base_model("tiny", device="cpu")
    model = NeekoModel(base.model, MoeLoraConfig(rank=rank, alpha=2.0 * rank), key_dim=KEY_DIM)
    keys = torch.randn(num_blocks, KEY_DIM, generator=torch.Generator().manual_seed(seed))
    model.add_blocks([f"char{i}" for i in range(num_blocks)], keys)
    randomize_blocks(model, seed)
    model.tokenizer = base.tokenizer
    return model.eval()


@pytest.fixture
def tiny_neeko() -> NeekoModel:
    return make_tiny_neeko()


@pytest.fixture
def token_batch() -> torch.Tensor:
    return torch.randint(10, 200, (4, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def embedded_base():
    """The real Gemma 3 270M (converted once into the user cache, then loaded in seconds)."""
    return load_base_model("embedded", device="cpu")

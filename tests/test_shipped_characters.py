"""The shipped characters on the real model: trained blocks that separate the characters,
incremental learning (expansion) that leaves every shipped character bit-identical, and PEFT
exports that give the in-app logits."""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from neeko_app.chat.prompt import Turn, character_header, render_prompt
from neeko_app.config import Settings
from neeko_app.deploy import export_all
from neeko_app.evaluation.heldout import (
    HeldoutOptions,
    heldout_conversations,
    run_heldout_evaluation,
)
from neeko_app.evaluation.perplexity import diagonal_is_row_minimum
from neeko_app.evaluation.turn_end import turn_end_chances
from neeko_app.moelora.persistence import read_block_metadata
from neeko_app.runtime import load_runtime
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import TrainingJob, add_character

pytestmark = pytest.mark.real_model

SHIPPED = Path(__file__).resolve().parents[1] / "characters"
PRETRAINED = ["beethoven", "cleopatra", "martin-luther-king", "newton", "socrates", "spartacus"]
EXPANDED = "caesar"
QUESTION = "What are you working on these days, and what keeps you awake at night?"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def last_logits(runtime, slug: str, bare: bool = False) -> torch.Tensor:
    """Logits at the end of `slug`'s prompt (QUESTION) under its gate, or the bare base."""
    character = runtime.character(slug)
    prompt = render_prompt(character_header(character), [Turn("user", QUESTION)])
    ids = runtime.base.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    gate = None if bare else runtime.gate_for(character)
    with torch.no_grad():
        return runtime.model(ids.input_ids, gate=gate).logits[0, -8:]


def test_every_shipped_character_has_a_block_and_a_role():
    for slug in [*PRETRAINED, EXPANDED]:
        folder = SHIPPED / slug
        meta = read_block_metadata(folder / "block.safetensors")
        assert meta["base_model"] == "gemma-3-270m", slug
        assert (folder / "role.safetensors").is_file(), slug


def test_blocks_prefer_their_own_characters_heldout_replies():
    runtime = load_runtime(Settings(device="cpu", characters_dir=SHIPPED), report=lambda _: None)
    report = run_heldout_evaluation(
        runtime, ["beethoven", "spartacus", EXPANDED],
        HeldoutOptions(limit=4, systems=(), batch_size=4))
    assert diagonal_is_row_minimum(torch.tensor(report.perplexity)) == [True, True, True]


def test_every_shipped_block_learned_where_its_turn_ends():
    """A block that never ends its turn runs every chat reply to the length cap: Caesar's
    first expansion block (batch 8) gave the end of turn a median probability of 0.002 right
    after his held-out replies; the shipped blocks give 0.04 (Martin Luther King, who ends
    70-85 % of his sampled replies) to 0.86."""
    runtime = load_runtime(Settings(device="cpu", characters_dir=SHIPPED), report=lambda _: None)
    for slug in [*PRETRAINED, EXPANDED]:
        character = runtime.character(slug)
        chances = turn_end_chances(runtime, character, heldout_conversations(character, 6))
        assert statistics.median(chances) > 0.02, (slug, statistics.median(chances))


def test_expansion_leaves_the_shipped_characters_bit_identical(tmp_path):
    characters = tmp_path / "characters"
    characters.mkdir()
    for slug in [*PRETRAINED, EXPANDED]:
        shutil.copytree(SHIPPED / slug, characters / slug)
    hashes = {p: sha256(p) for p in characters.rglob("*") if p.is_file()}
    # a new character, trained briefly by the same expansion the app's wizard runs
    source = tmp_path / "new" / "legate"
    source.mkdir(parents=True)
    card = json.loads((SHIPPED / EXPANDED / "character.json").read_text())
    card.update(slug="legate", name="Titus Labienus")
    (source / "character.json").write_text(json.dumps(card))
    lines = (SHIPPED / EXPANDED / "dialogues.jsonl").read_text().splitlines()[:4]
    (source / "dialogues.jsonl").write_text("\n".join(lines))

    settings = Settings(device="cpu", characters_dir=characters, data_dir=tmp_path / "data")
    runtime = load_runtime(settings, report=lambda _: None)
    before = {slug: last_logits(runtime, slug) for slug in [*PRETRAINED, EXPANDED]}

    config = TrainingConfig(epochs=1, batch_size=2, max_tokens=160, lr=1e-3)
    add_character(settings, source, "expansion", TrainingJob(config), runtime)

    assert runtime.model.block_names[-1] == "legate"
    for slug, logits in before.items():
        assert torch.equal(last_logits(runtime, slug), logits), slug
    trained = last_logits(runtime, "legate")
    assert not torch.equal(trained, last_logits(runtime, "legate", bare=True))
    assert all(sha256(path) == digest for path, digest in hashes.items())
    reloaded = load_runtime(settings, report=lambda _: None)
    for slug, logits in before.items():
        assert torch.equal(last_logits(reloaded, slug), logits), slug


def test_every_exported_adapter_gives_the_in_app_logits_in_peft(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    runtime = load_runtime(Settings(device="cpu", characters_dir=SHIPPED), report=lambda _: None,
                           serving=False)  # as `neeko export` loads it: float32 on a CPU
    report = export_all(runtime, tmp_path)
    assert list(report.adapters) == sorted([*PRETRAINED, EXPANDED]) and not report.skipped
    ids = runtime.base.tokenizer(QUESTION, return_tensors="pt").input_ids
    # a fresh base from the folder the launch lines give the model servers (tokenizer not needed)
    fresh = AutoModelForCausalLM.from_pretrained(report.base_model, dtype=torch.float32)
    first, *others = report.adapters
    peft_model = PeftModel.from_pretrained(fresh, report.adapters[first], adapter_name=first)
    for slug in others:
        peft_model.load_adapter(report.adapters[slug], adapter_name=slug)
    peft_model.eval()
    logits = {}
    with torch.no_grad():
        for slug in report.adapters:
            ours = runtime.model(ids, gate=runtime.model.gate_for([slug])).logits
            peft_model.set_adapter(slug)
            logits[slug] = peft_model(input_ids=ids).logits
            assert torch.allclose(logits[slug], ours, rtol=0, atol=1e-4), (
                slug, (logits[slug] - ours).abs().max().item())
    assert not torch.allclose(logits["beethoven"], logits["spartacus"], atol=1e-2)

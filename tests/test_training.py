"""Training data, checkpoints and resume, pre-training and adding characters (tiny model)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neeko_app.characters.card import CharacterError
from neeko_app.chat.prompt import Turn, render_prompt
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.evaluation.systems import MIX_BLOCK
from neeko_app.model.tiny import tiny_tokenizer
from neeko_app.runtime import load_runtime
from neeko_app.storage import load_tensors
from neeko_app.training import workflows
from neeko_app.training.baselines import load_lora_mix, mix_block_path
from neeko_app.training.data import (
    IGNORE,
    Conversation,
    DialogueError,
    load_dialogues,
    tokenize_conversation,
)
from neeko_app.training.trainer import (
    EXPANSION_TRAINING,
    TrainingCancelled,
    TrainingConfig,
    discard_checkpoint,
    mean_reply_loss,
    run_training,
)
from neeko_app.training.workflows import TrainingJob, add_character, pretrain
from tests.conftest import make_tiny_neeko

FAST = TrainingConfig(epochs=2, batch_size=2, lr=5e-3, max_tokens=160, checkpoint_every=2)


def write_character(root: Path, slug: str, topic: str, n: int = 4) -> Path:
    folder = root / slug
    folder.mkdir(parents=True)
    card = {"name": slug.title(), "slug": slug, "description": f"talks about {topic}.",
            "personality": "keen", "scenario": "A market.", "greeting": f"Ask me of {topic}."}
    (folder / "character.json").write_text(json.dumps(card))
    lines = [{"id": f"{slug}-{i}", "turns": [
        {"role": "user", "text": f"q{i}?"},
        {"role": "character", "text": f"{topic} {topic} {i}."}]} for i in range(n)]
    (folder / "dialogues.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return folder


def test_dialogue_errors_name_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"turns": [{"role": "user", "text": "hi"}, '
                    '{"role": "character", "text": "yo"}]}\n{broken\n')
    with pytest.raises(DialogueError, match="line 2: not JSON"):
        load_dialogues(path)
    path.write_text('{"turns": [{"role": "character", "text": "hi"}]}\n')
    with pytest.raises(DialogueError, match="line 1: turn 1 must have role 'user'"):
        load_dialogues(path)
    path.write_text("\n\n")
    with pytest.raises(DialogueError, match="no conversations"):
        load_dialogues(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DialogueError, match="not UTF-8"):
        load_dialogues(path)


def test_labels_cover_only_the_characters_words_and_match_the_chat_prompt():
    tokenizer = tiny_tokenizer()
    conv = Conversation("c", (Turn("user", "Who?"), Turn("character", "Me."),
                              Turn("user", "Why?"), Turn("character", "Because.")))
    example = tokenize_conversation(conv, "HEADER", tokenizer, "x", max_tokens=500)
    learned = [t for t, label in zip(example.input_ids, example.labels, strict=True)
               if label != IGNORE]
    assert tokenizer.decode(learned) == "Me.<end_of_turn>Because.<end_of_turn>"
    first_label = next(i for i, label in enumerate(example.labels) if label != IGNORE)
    prompt = render_prompt("HEADER", [Turn("user", "Who?")])
    assert tokenizer.decode(example.input_ids[:first_label]) == prompt


def block_weights(model, name):
    i = model.block_index(name)
    return [t[i].clone() for _, layer in model.lora_layers() for t in (layer.lora_A, layer.lora_BT)]


def tiny_examples(model, n=6):
    tokenizer = tiny_tokenizer()
    convs = [Conversation(str(i), (Turn("user", f"q{i}"), Turn("character", f"answer {i}!")))
             for i in range(n)]
    return [tokenize_conversation(c, "H", tokenizer, name, 100)
            for c in convs for name in ("char0", "char1")]


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    straight = make_tiny_neeko()
    examples = tiny_examples(straight)
    run_training(straight, examples, ["char0", "char1"], FAST, pad_id=0)

    resumed = make_tiny_neeko()
    before = block_weights(resumed, "char0")
    calls = iter(range(100))
    with pytest.raises(TrainingCancelled):
        run_training(resumed, examples, ["char0", "char1"], FAST, 0, tmp_path / "ckpt",
                     should_stop=lambda: next(calls) == 5)
    assert all(torch.equal(a, b) for a, b in zip(before, block_weights(resumed, "char0"),
                                                 strict=True)), "cancel changed the block"
    assert (tmp_path / "ckpt" / "checkpoint.safetensors").is_file()
    losses = run_training(resumed, examples, ["char0", "char1"], FAST, 0, tmp_path / "ckpt")
    assert len(losses) == 12 - 4, "the resume did not start from the checkpoint at step 4"
    for name in ("char0", "char1"):
        for a, b in zip(block_weights(straight, name), block_weights(resumed, name), strict=True):
            assert torch.equal(a, b)
    assert (tmp_path / "ckpt").exists(), "the last step is kept until the caller saved it"
    assert run_training(resumed, examples, ["char0", "char1"], FAST, 0, tmp_path / "ckpt") == []
    discard_checkpoint(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_heldout_loss_is_reported_each_epoch_and_changes_nothing_trained():
    plain, watched = make_tiny_neeko(), make_tiny_neeko()
    examples = tiny_examples(plain)
    heldout = [e for e in tiny_examples(plain, n=9) if e not in examples]
    run_training(plain, examples, ["char0", "char1"], FAST, pad_id=0)
    reports: list = []
    run_training(watched, examples, ["char0", "char1"], FAST, 0, on_progress=reports.append,
                 heldout=heldout)
    for name in ("char0", "char1"):
        for a, b in zip(block_weights(plain, name), block_weights(watched, name), strict=True):
            assert torch.equal(a, b), "measuring the held-out loss changed the training"
    per_epoch = len(reports) // FAST.epochs
    measured = [(r.step, r.heldout_loss) for r in reports if r.heldout_loss is not None]
    assert [step for step, _ in measured] == [per_epoch * k for k in range(1, FAST.epochs + 1)]
    # the last one is the loss of the finished blocks, and it differs from the first
    assert measured[-1][1] == pytest.approx(mean_reply_loss(watched, heldout, 0), rel=1e-5)
    assert measured[0][1] != pytest.approx(measured[-1][1])


OVERFIT = TrainingConfig(epochs=4, batch_size=2, lr=3e-2, max_tokens=160, checkpoint_every=1,
                         keep_best_epoch=True)


def overfit_run(tmp_path: Path | None = None, stop_at: int | None = None, reports=None):
    """Blocks trained hard on "answer i!" and measured on replies they never see (the
    held-out loss turns up after the first epochs); stopped before step `stop_at`."""
    model = make_tiny_neeko()
    tokenizer = tiny_tokenizer()
    heldout = [tokenize_conversation(Conversation(f"h{i}", (Turn("user", f"q{i}"), Turn(
        "character", f"nothing like it, {i} times over"))), "H", tokenizer, name, 100)
        for i in range(3) for name in ("char0", "char1")]
    steps = iter(range(1, 1000))
    run_training(model, tiny_examples(model), ["char0", "char1"], OVERFIT, 0, tmp_path,
                 reports.append if reports is not None else None,
                 (lambda: next(steps) == stop_at) if stop_at else None, heldout)
    return model


def test_each_block_keeps_the_epoch_with_its_lowest_heldout_loss():
    reports: list = []
    kept = overfit_run(reports=reports)
    epochs = [r for r in reports if r.heldout_by_block is not None]
    assert [r.epoch for r in epochs] == [1, 2, 3, 4]
    for name in ("char0", "char1"):
        losses = [r.heldout_by_block[name] for r in epochs]
        best = 1 + losses.index(min(losses))
        assert epochs[-1].best_epochs[name] == best
        # the weights are those of a run that stopped after that epoch
        reference = make_tiny_neeko()
        run_training(reference, tiny_examples(reference), ["char0", "char1"],
                     dataclasses.replace(OVERFIT, epochs=best, keep_best_epoch=False), 0)
        for a, b in zip(block_weights(kept, name), block_weights(reference, name), strict=True):
            assert torch.equal(a, b), f"{name} does not hold its epoch-{best} weights"
    assert any(r < 4 for r in epochs[-1].best_epochs.values()), "nothing overfitted here"


def test_an_interrupted_run_remembers_its_best_epochs(tmp_path):
    straight = overfit_run()
    per_epoch = 6  # 12 examples, batch 2
    with pytest.raises(TrainingCancelled):
        overfit_run(tmp_path / "ckpt", stop_at=3 * per_epoch)  # after epochs 1 and 2
    resumed = overfit_run(tmp_path / "ckpt")
    for name in ("char0", "char1"):
        for a, b in zip(block_weights(straight, name), block_weights(resumed, name), strict=True):
            assert torch.equal(a, b)


def test_train_command_prints_the_heldout_loss_per_epoch(library, capsys):
    for slug in ("baker", "sailor"):
        folder = library.characters_dir / slug
        (folder / "heldout.jsonl").write_text((folder / "dialogues.jsonl").read_text())
    code = main(["train", "baker", "sailor", "--base-model", "tiny", "--device", "cpu",
                 "--characters-dir", str(library.characters_dir), "--cache-dir",
                 str(library.cache_dir), "--epochs", "2", "--batch-size", "4"])
    assert code == 0
    printed = capsys.readouterr()
    lines = [x for x in (printed.out + printed.err).splitlines() if "held-out loss" in x]
    assert [x.split(":")[0].strip() for x in lines] == ["epoch 1", "epoch 2"]

def test_train_command_says_which_blocks_keep_an_earlier_epoch(library, capsys):
    for slug in ("baker", "sailor"):
        rows = [{"id": f"h{i}", "turns": [{"role": "user", "text": f"q{i}?"}, {
            "role": "character", "text": f"nothing like it, {i} times over"}]} for i in range(3)]
        (library.characters_dir / slug / "heldout.jsonl").write_text(
            "\n".join(json.dumps(r) for r in rows))
    flags = ["--base-model", "tiny", "--device", "cpu", "--characters-dir",
             str(library.characters_dir), "--data-dir", str(library.data_dir), "--cache-dir",
             str(library.cache_dir), "--epochs", "4", "--batch-size", "2", "--lr", "0.03"]

    def kept_lines(*extra: str) -> list[str]:
        assert main(["train", "baker", "sailor", *flags, *extra]) == 0
        printed = capsys.readouterr()
        return [x for x in (printed.out + printed.err).splitlines() if "keeps its" in x]

    lines = kept_lines("--keep-best-epoch")
    assert lines and all(x.split()[0] in ("baker", "sailor") for x in lines)
    assert kept_lines() == []  # the default ends with the last epoch


@pytest.fixture
def library(tmp_path) -> Settings:
    chars = tmp_path / "characters"
    write_character(chars, "baker", "bread")
    write_character(chars, "sailor", "ships")
    return Settings(base_model="tiny", device="cpu", characters_dir=chars, data_dir=tmp_path,
                    cache_dir=tmp_path / "cache")


def old_logits(settings: Settings, names) -> dict[str, torch.Tensor]:
    runtime = load_runtime(settings, report=lambda _: None)
    ids = torch.tensor([[2, 60, 61, 62, 63, 64]])
    with torch.no_grad():
        return {n: runtime.model(ids, gate=runtime.model.gate_for([n])).logits for n in names}


def test_pretrain_then_expansion_keeps_old_characters_bit_identical(library, tmp_path):
    losses = pretrain(library, ["baker", "sailor"], TrainingJob(FAST))
    assert losses[-1] < losses[0]
    for slug in ("baker", "sailor"):
        assert (library.characters_dir / slug / "block.safetensors").is_file()
        assert (library.characters_dir / slug / "role.safetensors").is_file()
    before = old_logits(library, ["baker", "sailor"])

    source = write_character(tmp_path / "incoming", "smith", "iron")
    added = add_character(library, source, "expansion", TrainingJob(FAST))
    assert added.block_path.is_file()
    after = old_logits(library, ["baker", "sailor", "smith"])
    for name in ("baker", "sailor"):
        assert torch.equal(before[name], after[name])
    assert not torch.allclose(after["smith"], after["baker"])


def test_a_chat_model_in_bfloat16_gets_a_block_trained_in_float32(library, tmp_path):
    """A chat runtime in bf16 (the CPU default where bf16 is native) does not train the new
    block itself: a float32 runtime does, and the chat's model then loads the saved block."""
    pretrain(library, ["baker", "sailor"], TrainingJob(TrainingConfig(epochs=1, batch_size=4)))
    chat = load_runtime(library, report=lambda _: None)
    chat.model.to(torch.bfloat16)
    chat.base = dataclasses.replace(chat.base, dtype=torch.bfloat16)
    old = {n: block_weights(chat.model, n) for n in ("baker", "sailor")}
    source = write_character(tmp_path / "incoming", "smith", "iron")
    added = add_character(library, source, "expansion", TrainingJob(FAST), runtime=chat)
    saved = load_tensors(added.block_path)
    assert saved and all(t.dtype == torch.float32 for t in saved.values())
    assert chat.model.block_names == ["baker", "sailor", "smith"]
    assert chat.character("smith").block_path == added.block_path
    for name, weights in old.items():
        assert all(map(torch.equal, weights, block_weights(chat.model, name)))
    trained = block_weights(chat.model, "smith")
    assert trained and all(t.dtype == torch.bfloat16 for t in trained)
    fresh = block_weights(load_runtime(library, report=lambda _: None).model, "smith")
    assert all(torch.equal(t, f.to(torch.bfloat16)) for t, f in zip(trained, fresh, strict=True))


def test_fusion_adds_a_character_without_a_block(library, tmp_path):
    pretrain(library, ["baker", "sailor"], TrainingJob(TrainingConfig(epochs=1, batch_size=4)))
    source = write_character(tmp_path / "incoming", "miller", "flour")
    added = add_character(library, source, "fusion")
    assert added.role_path.is_file() and not added.block_path.exists()
    runtime = load_runtime(library, report=lambda _: None)
    gate = runtime.gate_for(runtime.character("miller"))
    assert sorted(gate.indices[0].tolist()) == [0, 1]
    assert gate.weights.sum().item() == pytest.approx(1.0)
    with pytest.raises(CharacterError, match="already exists"):
        add_character(library, source, "fusion")


def test_cancelled_expansion_leaves_everything_as_it_was(library, tmp_path):
    pretrain(library, ["baker", "sailor"], TrainingJob(TrainingConfig(epochs=1, batch_size=4)))
    snapshot = {p: p.read_bytes() for p in library.characters_dir.rglob("*") if p.is_file()}
    runtime = load_runtime(library, report=lambda _: None)
    source = write_character(tmp_path / "incoming", "smith", "iron")
    with pytest.raises(TrainingCancelled):
        add_character(library, source, "expansion",
                      TrainingJob(FAST, should_stop=lambda: True), runtime=runtime)
    assert not (library.characters_dir / "smith").exists()
    assert runtime.model.block_names == ["baker", "sailor"]
    assert snapshot == {p: p.read_bytes() for p in library.characters_dir.rglob("*")
                        if p.is_file()}


def test_an_interrupted_expansion_resumes_from_its_checkpoint(library, tmp_path):
    pretrain(library, ["baker", "sailor"], TrainingJob(TrainingConfig(epochs=1, batch_size=4)))
    snapshot = {p: p.read_bytes() for p in library.characters_dir.rglob("*") if p.is_file()}
    source = write_character(tmp_path / "incoming", "smith", "iron", n=12)
    calls = iter(range(100))
    with pytest.raises(TrainingCancelled):  # stopped after step 5; checkpoint at step 4
        add_character(library, source, "expansion",
                      TrainingJob(FAST, should_stop=lambda: next(calls) == 5))
    assert snapshot == {p: p.read_bytes() for p in library.characters_dir.rglob("*")
                        if p.is_file()}
    checkpoint = library.cache_dir / "checkpoints" / "expand-smith"
    assert (checkpoint / "checkpoint.safetensors").is_file()

    steps: list[int] = []
    added = add_character(library, source, "expansion",
                          TrainingJob(FAST, on_progress=lambda p: steps.append(p.step)))
    assert steps[0] == 5, "the second run did not resume at the checkpoint"
    assert added.block_path.is_file() and added.folder == library.characters_dir / "smith"
    assert not checkpoint.exists() and not (library.characters_dir / ".staging" / "smith").exists()


def test_the_lora_mix_baseline_is_one_block_for_all_characters(library, capsys):
    assert main(["train", "baker", "sailor", "--mix", "--base-model", "tiny",
                 "--characters-dir", str(library.characters_dir), "--cache-dir",
                 str(library.cache_dir), "--epochs", "2", "--batch-size", "2"]) == 0
    assert "trained the LoRA-mix baseline on baker, sailor" in capsys.readouterr().out
    assert mix_block_path(library).is_file()
    assert not (library.characters_dir / "baker" / "block.safetensors").exists()
    runtime = load_runtime(library, report=lambda _: None)
    load_lora_mix(runtime.model, library)
    assert runtime.model.block_names == [MIX_BLOCK]
    ids = torch.tensor([[2, 60, 61, 62]])
    with torch.no_grad():
        mixed = runtime.model(ids, gate=runtime.model.gate_for([MIX_BLOCK])).logits
        bare = runtime.model(ids).logits
    assert not torch.equal(mixed, bare)  # the block was trained


def test_an_add_of_the_same_id_in_another_process_is_refused(library, tmp_path):
    """Another process adding `smith` holds its lock file (an flock, released when that
    process dies); this add must wait for it, not share its staging folder."""
    source = write_character(tmp_path / "incoming", "smith", "iron")
    add_character(library, write_character(tmp_path / "other", "tanner", "hides"), "fusion")
    [tanner_lock] = (library.cache_dir / "locks").glob("add-*-tanner.lock")
    smith_lock = tanner_lock.with_name(tanner_lock.name.replace("tanner", "smith"))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
        "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"),
        str(smith_lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CharacterError, match="'smith' .* is being added right now"):
            add_character(library, source, "fusion")
    finally:
        holder.kill()
        holder.wait()
    assert add_character(library, source, "fusion").slug == "smith"  # released by the kill


def test_a_block_trained_alone_takes_smaller_batches_than_pretraining(library, tmp_path,
                                                                      monkeypatch):
    batch_sizes = {}
    real_run = workflows.run_training

    def spy(model, examples, trainable, config, *rest):
        batch_sizes[tuple(trainable)] = config.batch_size
        return real_run(model, examples, trainable, config, *rest)

    monkeypatch.setattr(workflows, "run_training", spy)
    flags = ["--base-model", "tiny", "--device", "cpu", "--epochs", "1", "--characters-dir",
             str(library.characters_dir), "--data-dir", str(library.data_dir),
             "--cache-dir", str(library.cache_dir)]
    assert main(["train", "baker", "sailor", *flags]) == 0
    source = write_character(tmp_path / "incoming", "smith", "iron")
    assert main(["add-character", str(source), "--mode", "expansion", *flags]) == 0
    assert batch_sizes == {("baker", "sailor"): TrainingConfig().batch_size,
                           ("smith",): EXPANSION_TRAINING.batch_size}
    assert EXPANSION_TRAINING.batch_size < TrainingConfig().batch_size

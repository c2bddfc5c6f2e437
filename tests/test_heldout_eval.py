"""Held-out evaluation: perplexity matrix, role identification, report and CLI (tiny model)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from neeko_app.characters.registry import discover_characters
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import character_header
from neeko_app.chat.reply import end_cleanly
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.heldout import (
    HeldoutOptions,
    format_report,
    run_heldout_evaluation,
)
from neeko_app.evaluation.overlap import longest_shared_run
from neeko_app.evaluation.perplexity import diagonal_is_row_minimum, perplexity_matrix
from neeko_app.evaluation.role_identification import identify, profile_embedding
from neeko_app.evaluation.systems import profile_prompt_header, system_header
from neeko_app.evaluation.voice import speaks_in_first_person
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_save_tensors
from neeko_app.training.data import character_examples, collate, load_dialogues
from neeko_app.training.loop import reply_loss
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import TrainingJob, pretrain

SHIPPED = Path(__file__).resolve().parents[1] / "characters"
WORDS = {"miller": "flour wheel grain", "sailor": "wave rope anchor"}


def write_speaker(root: Path, slug: str, talks_like: str | None = None) -> None:
    """A character who always talks about the same three words (easy to tell apart); with
    `talks_like`, one whose lines are that other character's words."""
    words = WORDS[talks_like or slug]
    folder = root / slug
    folder.mkdir()
    card = {"name": slug.title(), "slug": slug, "description": f"a {slug}.",
            "personality": "plain", "scenario": "A village.", "greeting": "Hello.",
            "example_lines": [words]}
    (folder / "character.json").write_text(json.dumps(card))
    (folder / "profile.md").write_text(f"# {slug}\n\nA {slug} who speaks of {words}.\n")
    for file, count in (("dialogues.jsonl", 24), ("heldout.jsonl", 4)):
        rows = [{"id": f"{slug}-{file}-{i}", "turns": [
            {"role": "user", "text": f"Tell me something, number {i}."},
            {"role": "character", "text": f"{words} {words}."}]} for i in range(count)]
        (folder / file).write_text("\n".join(json.dumps(r) for r in rows))


@pytest.fixture(scope="module")
def trained_settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("eval")
    (root / "characters").mkdir()
    for slug in WORDS:
        write_speaker(root / "characters", slug)
    settings = Settings(base_model="tiny", device="cpu", characters_dir=root / "characters",
                        cache_dir=root / "cache")
    config = TrainingConfig(epochs=1, batch_size=8, lr=1e-2, max_tokens=128, checkpoint_every=100)
    pretrain(settings, list(WORDS), TrainingJob(config))
    return settings


def test_matrix_entries_are_the_token_weighted_perplexity(trained_settings):
    runtime = load_runtime(trained_settings, report=lambda _: None)
    miller = runtime.character("miller")
    examples = character_examples(
        miller, load_dialogues(miller.folder / "heldout.jsonl"), runtime.base.tokenizer, 128)
    matrix = perplexity_matrix(runtime.model, {"miller": examples}, ["miller", "sailor"],
                               runtime.base.tokenizer.pad_token_id, batch_size=3)
    batch = collate(examples, runtime.base.tokenizer.pad_token_id)  # all equal length
    for j, block in enumerate(["miller", "sailor"]):
        batch.blocks = [block] * len(examples)
        with torch.no_grad():
            expected = math.exp(reply_loss(runtime.model, batch).item())
        assert matrix[0, j].item() == pytest.approx(expected, rel=1e-4)


def test_report_covers_every_character_and_system(trained_settings):
    # (the tiny random model cannot learn enough to separate characters: the shipped blocks
    # are checked for that on the real model in test_shipped_characters.py)
    runtime = load_runtime(trained_settings, report=lambda _: None)
    report = run_heldout_evaluation(runtime, ["miller", "sailor"],
                                    HeldoutOptions(systems=("blocks",)))
    assert torch.tensor(report.perplexity).shape == (2, 2)
    assert len(report.answers) == 8 and {a.system for a in report.answers} == {"blocks"}
    assert all(a.identified_as in (None, "miller", "sailor") for a in report.answers)
    data = report.to_dict()
    assert len(data["diagonal_is_row_minimum"]) == 2
    accuracy = data["role_identification"]["blocks"]
    assert accuracy["overall"] == sum(
        a.identified_as == a.character for a in report.answers) / len(report.answers)
    assert "| miller | " in format_report(report)


def test_the_written_system_scores_the_held_out_replies_themselves(trained_settings):
    runtime = load_runtime(trained_settings, report=lambda _: None)
    report = run_heldout_evaluation(runtime, ["miller", "sailor"],
                                    HeldoutOptions(perplexity=False, systems=("written",)))
    assert [a.reply for a in report.answers] == [f"{WORDS[slug]} {WORDS[slug]}."
                                                 for slug in ("miller", "sailor")
                                                 for _ in range(4)]
    assert [a.question for a in report.answers[:2]] == ["Tell me something, number 0.",
                                                        "Tell me something, number 1."]
    # each speaker's words are nearest their own profile and their own training replies:
    # the data is perfectly separable; a written reply always ends its turn
    assert report.accuracy("written") == 1.0
    assert report.accuracy("written", by_training_lines=True) == 1.0
    assert report.ended_turn_rate("written") == 1.0


def test_a_reply_cut_by_the_length_cap_did_not_end_its_turn(trained_settings):
    runtime = load_runtime(trained_settings, report=lambda _: None)
    options = HeldoutOptions(perplexity=False, systems=("blocks",),
                             decoding=DecodingSettings(max_new_tokens=1, temperature=0.0))
    report = run_heldout_evaluation(runtime, ["miller", "sailor"], options)
    assert report.ended_turn_rate("blocks") == 0.0
    assert "| end their turn before the length cap | 0.00 |" in format_report(report)


def test_sampled_replies_repeat_with_their_seed_and_change_with_another(trained_settings):
    runtime = load_runtime(trained_settings, report=lambda _: None)

    def replies(seed: int) -> list[str]:
        options = HeldoutOptions(perplexity=False, systems=("blocks",),
                                 decoding=heldout_decoding(True, 8, seed))
        return [a.reply for a in run_heldout_evaluation(runtime, ["miller", "sailor"],
                                                        options).answers]

    first = replies(3)
    assert replies(3) == first
    assert replies(4) != first


def test_diagonal_check_flags_a_row_won_by_another_block():
    assert diagonal_is_row_minimum(torch.tensor([[1.0, 2.0], [1.5, 3.0]])) == [True, False]


def test_role_identification_picks_the_matching_profile():
    characters = discover_characters(SHIPPED).characters
    slugs = ["beethoven", "newton", "spartacus"]
    profiles = torch.stack([profile_embedding(characters[s]) for s in slugs])
    replies = ["My symphonies and sonatas I wrote even as my hearing failed me in Vienna.",
               "Gravity and the laws of motion, set out in my Principia, explain the orbits.",
               "We broke out of the gladiator school at Capua and fought the legions.",
               "   "]
    assert identify(replies, profiles) == [0, 1, 2, -1]


def test_blocks_with_memory_put_the_knowledge_found_for_the_question_in_the_header(tmp_path):
    characters = discover_characters(SHIPPED).characters
    memory = MemoryStore.open(tmp_path / "memory")
    index_characters(memory, [characters["newton"], characters["socrates"]])
    question = "Tell me about your prism experiments with light."
    header = system_header("blocks+memory", characters["newton"], question, memory)
    found = memory.search_knowledge("newton", question, 3)
    assert header.startswith(character_header(characters["newton"]))
    assert "What you know:" in header and all(chunk.text in header for chunk in found)
    assert system_header("blocks", characters["newton"], question, None) == character_header(
        characters["newton"])
    with pytest.raises(ValueError, match="needs a memory store"):
        system_header("blocks+memory", characters["newton"], question, None)


@pytest.mark.parametrize(("reply", "source", "run"), [
    ("I was born in Bonn in the year 1770.", "Beethoven was born in Bonn in the year 1770", 8),
    ("Gravity! It pulls the apple.", "the apple falls", 2),
    ("Nothing in common here.", "Entirely different words", 0),
    ("", "anything", 0),
])
def test_longest_shared_run_counts_words_in_order(reply, source, run):
    assert longest_shared_run(reply, source) == run


@pytest.mark.parametrize(("reply", "first_person"), [
    ("I wrote nine symphonies, and my ears failed me.", True),
    ("Give me the pencil.", True),
    ("You are Caesar, a Roman general born in 100 BC.", False),
    ("He crossed the Rubicon. Iron and blood.", False),
])
def test_first_person_tells_role_play_from_an_account(reply, first_person):
    assert speaks_in_first_person(reply) is first_person


def test_profile_prompt_header_carries_the_card():
    character = discover_characters(SHIPPED).characters["socrates"]
    header = profile_prompt_header(character)
    assert character.personality in header and character.example_lines[0] in header


def test_cli_writes_the_report(trained_settings, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["eval-heldout", "--base-model", "tiny", "--device", "cpu",
                 "--characters-dir", str(trained_settings.characters_dir),
                 "--cache-dir", str(trained_settings.cache_dir), "--limit", "2",
                 "--max-new-tokens", "8", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Perplexity" in printed and "Role identification" in printed
    report = json.loads(out.read_text())
    assert report["characters"] == ["miller", "sailor"]
    assert len(report["answers"]) == 2 * 2 * 4  # characters x limit x systems
    assert set(report["role_identification"]) == {"blocks", "blocks+memory", "profile-prompt",
                                                  "written"}
    assert set(report["copy_rate_8_words"]) == set(report["role_identification"])
    assert set(report["first_person_rate"]) == set(report["role_identification"])
    assert set(report["ended_turn_rate"]) == set(report["role_identification"])
    assert set(report["role_identification_by_training_lines"]) == set(
        report["role_identification"])
    assert report["decoding"]["temperature"] == 0.0 and report["decoding"]["max_new_tokens"] == 8
    with_memory = [a for a in report["answers"] if a["system"] == "blocks+memory"]
    assert all(a["copied_words"] >= 0 for a in with_memory)
    # 8 tokens cut every reply short: each is scored as the app keeps it, to a sentence end
    assert all(end_cleanly(a["reply"]) == a["reply"] for a in report["answers"] if a["reply"])


def test_one_character_is_told_apart_from_the_whole_library(trained_settings, tmp_path):
    characters = tmp_path / "characters"
    shutil.copytree(trained_settings.characters_dir, characters)
    write_speaker(characters, "imposter", talks_like="sailor")
    (characters / "imposter" / "profile.md").write_text("# imposter\n\nA quiet clerk of ink.\n")
    atomic_save_tensors(characters / "imposter" / "role.safetensors", {"role": torch.randn(384)})
    runtime = load_runtime(dataclasses.replace(trained_settings, characters_dir=characters),
                           report=lambda _: None)
    report = run_heldout_evaluation(runtime, ["imposter"],
                                    HeldoutOptions(perplexity=False, systems=("written",)))
    assert report.identified_among == ["imposter", "miller", "sailor"]
    assert {a.identified_as for a in report.answers} == {"sailor"}  # not a race of one
    assert report.to_dict()["role_identification"]["written"]["overall"] == 0.0
    assert "among imposter, miller, sailor" in format_report(report)

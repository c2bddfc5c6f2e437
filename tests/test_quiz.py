"""The fact quiz: scoring, the headline measures, the CLI and its before/after merge, and
knowledge data in training (tiny model)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from neeko_app.characters.facts import QuizQuestion
from neeko_app.chat.sentences import kept_sentences
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.evaluation import OTHER_NOTES
from neeko_app.evaluation.cli_quiz import merged
from neeko_app.evaluation.overlap import COPY_WORDS
from neeko_app.evaluation.quiz import QuizAnswer, QuizReport, asked_notes, format_quiz_report
from neeko_app.evaluation.recall import PROBES
from neeko_app.evaluation.systems import system_context
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.model.tiny import tiny_tokenizer
from neeko_app.runtime import load_runtime
from neeko_app.training.knowledge_data import knowledge_examples
from neeko_app.training.trainer import TrainingConfig
from neeko_app.training.workflows import TrainingJob, pretrain

FACTS = {"miller": ("The miller's mill stands on the river Wend.", "Wend"),
         "sailor": ("The sailor's ship is called the Gull.", "Gull")}


def answer(system: str, correct: bool, identified: str | None = "miller",
           first_person: bool = True, copied: int = 0, character: str = "miller",
           first: bool | None = None) -> QuizAnswer:
    return QuizAnswer(character, system, "q", "Where?", "reply", correct, identified,
                      first_person, copied, 0.5, correct if first is None else first)


def test_in_role_needs_identification_first_person_and_no_recited_card():
    assert answer("blocks", True).in_role
    assert not answer("blocks", True, identified="sailor").in_role
    assert not answer("blocks", True, first_person=False).in_role
    assert not answer("blocks", True, copied=COPY_WORDS).in_role
    assert answer("blocks", True, copied=COPY_WORDS - 1).in_role


def test_report_measures_per_system_and_character():
    report = QuizReport(["miller", "sailor"], [
        answer("blocks", True), answer("blocks", False),
        answer("blocks", True, identified="sailor", character="sailor"),
        answer("profile-prompt", False, copied=20)])
    assert report.systems == ["blocks", "profile-prompt"]
    assert report.accuracy("blocks") == pytest.approx(2 / 3)
    assert report.accuracy("blocks", "miller") == 0.5
    assert report.accuracy("blocks", "sailor") == 1.0
    assert report.in_role_rate("blocks") == pytest.approx(1.0)
    assert report.in_role_rate("profile-prompt") == 0.0
    assert report.role_identification("profile-prompt") == 1.0
    table = format_quiz_report(report)
    assert "| **overall** | 0.67 | 0.00 |" in table
    again = QuizReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.answers == report.answers


def test_answered_first_counts_only_answers_in_the_first_sentence():
    report = QuizReport(["miller"], [answer("blocks", True, first=False),
                                     answer("blocks", True), answer("blocks", False)])
    assert report.accuracy("blocks") == pytest.approx(2 / 3)
    assert report.answered_first_rate("blocks") == pytest.approx(1 / 3)
    assert "| answered in the first sentence | 0.33 |" in format_quiz_report(report)
    old = QuizReport.from_dict({"characters": ["miller"], "answers": [
        {k: v for k, v in vars(answer("blocks", True)).items() if k != "answered_first"}]})
    assert old.answered_first_rate("blocks") is None  # a report from before: not a zero


@pytest.mark.parametrize(("reply", "first"), [
    ("The overture to Egmont, Op. 84, in 1810. Goethe wrote the play.", True),
    ("J. S. Bach's preludes were my daily bread, in 1810. Neefe gave them.", True),
    ("Goethe wrote the play. My overture to it came in 1810.", False),
    ("In 1810\nfor Goethe's play.", True),
])
def test_the_first_sentence_ends_where_the_chat_app_ends_it(reply, first):
    question = QuizQuestion("miller-q1", "miller-f1", "When?", re.compile("1810"))
    assert question.is_answered_by(reply)
    assert question.is_answered_first_by(reply) == first


def test_a_later_run_joins_the_report_and_replaces_only_its_own_systems():
    before = QuizReport(["miller", "sailor"], [
        answer("blocks", False), answer("blocks@before", False),
        answer("blocks@before", True, character="sailor")])
    after = QuizReport(["miller"], [answer("blocks", True)])
    both = merged(before, after)
    assert both.systems == ["blocks@before", "blocks"]
    assert both.accuracy("blocks") == 1.0 and both.accuracy("blocks@before") == 0.5
    # a character the later run left out has no score there, not a zero
    assert both.accuracy("blocks", "sailor") is None
    assert "| sailor | 1.00 | – |" in format_quiz_report(both)


def write_character(root: Path, slug: str) -> None:
    fact, name = FACTS[slug]
    folder = root / slug
    folder.mkdir()
    card = {"name": slug.title(), "slug": slug, "description": f"a {slug}.",
            "personality": "plain", "scenario": "A village.", "greeting": "Hello."}
    (folder / "character.json").write_text(json.dumps(card))
    (folder / "profile.md").write_text(f"# {slug}\n\nA {slug} of the village.\n")
    exchange = [{"role": "user", "text": "What is your work?"},
                {"role": "character", "text": f"I am a {slug}."}]
    (folder / "dialogues.jsonl").write_text(json.dumps({"id": "d1", "turns": exchange}) + "\n")
    facts = [{"id": f"{slug}-f001", "fact": fact, "topic": "places", "source": name},
             {"id": f"{slug}-f003", "fact": f"The {slug} keeps three grey geese.",
              "topic": "family", "source": "geese"},
             {"id": f"{slug}-f002", "fact": f"The {slug} dies old.", "topic": "death",
              "source": "dies", "after_now": True}]
    (folder / "facts.jsonl").write_text("\n".join(map(json.dumps, facts)) + "\n")
    knowledge = [{"id": f"k{i}", "facts": [f"{slug}-f001"], "turns": [
        {"role": "user", "text": f"Tell me about it, take {i}."},
        {"role": "character", "text": f"It is {name}, I tell you."}]} for i in range(4)]
    (folder / "knowledge.jsonl").write_text("\n".join(map(json.dumps, knowledge)) + "\n")
    recall = {"id": "r1", "earlier": [{"user": "My cat is Marmalade.", "character": "Good."}],
              "turns": [{"role": "user", "text": "My cat's name?"},
                        {"role": "character", "text": "Marmalade."}]}
    (folder / "recall.jsonl").write_text(json.dumps(recall) + "\n")
    quiz = {"id": f"{slug}-q01", "fact": f"{slug}-f001", "question": "Name it, please.",
            "answer": name}
    (folder / "quiz.jsonl").write_text(json.dumps(quiz) + "\n")


@pytest.fixture(scope="module")
def quiz_settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("quiz")
    (root / "characters").mkdir()
    for slug in FACTS:
        write_character(root / "characters", slug)
    settings = Settings(base_model="tiny", device="cpu", characters_dir=root / "characters",
                        cache_dir=root / "cache")
    config = TrainingConfig(epochs=1, batch_size=2, lr=1e-2, max_tokens=256, pack_tokens=512)
    pretrain(settings, list(FACTS), TrainingJob(config))
    return settings


def test_knowledge_exchanges_carry_notes_and_recalled_turns(quiz_settings):
    runtime = load_runtime(quiz_settings, report=lambda _: None)
    tokenizer = tiny_tokenizer()
    examples = knowledge_examples(runtime.character("miller"), tokenizer, 512)
    texts = [tokenizer.decode(e.input_ids) for e in examples]
    assert len(examples) == 5  # four knowledge exchanges, one recall
    noted = [t for t in texts if "What you know:" in t]
    assert len(noted) == 2 and all(FACTS["miller"][0] in t for t in noted)
    assert not any("dies old" in t for t in texts)  # after the character's now: never a note
    assert sum("Earlier in this conversation:\nUser: My cat is Marmalade." in t
               for t in texts) == 1


def test_quiz_cli_reports_before_and_after_in_one_file(quiz_settings, tmp_path, capsys):
    out = tmp_path / "quiz.json"
    flags = ["--base-model", "tiny", "--device", "cpu",
             "--characters-dir", str(quiz_settings.characters_dir),
             "--cache-dir", str(quiz_settings.cache_dir), "--max-new-tokens", "8"]
    assert main(["quiz", "--systems", "blocks", "blocks+memory", OTHER_NOTES, "--out", str(out),
                 *flags]) == 0
    before = tmp_path / "before"
    for slug in FACTS:
        (before / slug).mkdir(parents=True)
        (before / slug / "block.safetensors").write_bytes(
            (quiz_settings.characters_dir / slug / "block.safetensors").read_bytes())
    assert main(["quiz", "--systems", "blocks", "--blocks-from", str(before), "--label",
                 "before", "--out", str(out), *flags]) == 0
    report = json.loads(out.read_text())
    assert report["systems"] == ["blocks", "blocks+memory", OTHER_NOTES, "blocks@before"]
    assert len(report["answers"]) == 8
    # the same blocks loaded from another folder give the very same greedy replies
    replies = {(a["system"], a["character"]): a["reply"] for a in report["answers"]}
    assert all(replies[("blocks@before", slug)] == replies[("blocks", slug)] for slug in FACTS)
    for a in report["answers"]:
        assert a["correct"] == (FACTS[a["character"]][1].lower() in a["reply"].lower())
        assert a["answered_first"] == (a["correct"] and FACTS[a["character"]][1].lower()
                                       in kept_sentences(a["reply"].strip(), 1).lower())
    assert "Fact quiz accuracy" in capsys.readouterr().out


def test_other_notes_withholds_the_asked_facts_note_and_keeps_the_others(quiz_settings):
    runtime = load_runtime(quiz_settings, report=lambda _: None)
    miller = runtime.character("miller")
    [(question, note)] = asked_notes(miller)
    assert note == FACTS["miller"][0]
    with scratch_knowledge([miller]) as memory:
        found = system_context("blocks+memory", miller, question.question, memory)
        others = system_context(OTHER_NOTES, miller, question.question, memory, withheld=note)
        # only blocks+other-notes withholds: the app's system reads every note it finds
        assert system_context("blocks+memory", miller, question.question, memory,
                              withheld=note) == found
        with pytest.raises(ValueError, match="note to withhold"):
            system_context(OTHER_NOTES, miller, question.question, memory)
    assert note in [chunk.text for chunk in found.knowledge]
    assert [chunk.text for chunk in others.knowledge] == [
        chunk.text for chunk in found.knowledge if chunk.text != note]
    assert "The miller keeps three grey geese." in [chunk.text for chunk in others.knowledge]


def test_recall_probes_overflow_the_history_and_memory_brings_turn_one_back(
        quiz_settings, tmp_path):
    out = tmp_path / "recall.json"
    assert main(["eval-recall", "miller", "--out", str(out), "--base-model", "tiny",
                 "--device", "cpu", "--characters-dir", str(quiz_settings.characters_dir),
                 "--cache-dir", str(quiz_settings.cache_dir)]) == 0
    report = json.loads(out.read_text())
    assert len(report["answers"]) == len(PROBES)
    for a in report["answers"]:
        assert a["first_kept_turn"] > 1  # the fact's turn is no longer in the history
        assert a["correct"] == bool(re.search(PROBES[a["probe"]].answer, a["reply"], re.I))
    assert report["turn_1_recalled"] >= 0.8


def test_the_quiz_curve_script_quizzes_every_epoch_and_keeps_the_best(quiz_settings, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "quiz_curve", Path(__file__).resolve().parents[1] / "reports" /
        "knowledge-2026-12-04" / "quiz_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "curve.json"
    rows = module.quiz_curve(quiz_settings, "miller", [1e-3], epochs=2, batch_size=2,
                             bf16=False, out=out)
    assert [row["epoch"] for row in rows] == [1, 2] and rows[-1]["kept_epoch"] in (1, 2)
    assert json.loads(out.read_text())["rows"] == rows
    assert (tmp_path / "curve-lr0.001" / "miller" / "block.safetensors").is_file()
    assert out.with_suffix(".png").is_file()


def test_the_unseen_questions_are_in_no_data_file():
    spec = importlib.util.spec_from_file_location(
        "unseen_replies", Path(__file__).resolve().parents[1] / "reports" /
        "knowledge-2026-12-04" / "unseen_replies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = "\n".join(p.read_text(encoding="utf-8") for p in
                        (Path(__file__).resolve().parents[1] / "characters").glob("*/*.jsonl"))
    assert module.QUESTIONS and not [q for _, q in module.QUESTIONS if q in written]

"""The evaluation tools that began as report scripts: `python -m neeko_app.evaluation.X`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neeko_app.config import PROJECT_ROOT
from neeko_app.evaluation import compare_heldout, expectation_kinds, turn_end
from neeko_app.evaluation.script import Expectation
from tests.tiny_characters import make_tiny_runtime

REPORTS = PROJECT_ROOT / "reports"


def heldout_report(replies: list[str], accuracy: float, ended: float) -> dict:
    """An eval-heldout report (`to_dict()` form) with only what the comparison reads."""
    return {"answers": [{"system": "blocks", "character": "miller", "question": f"q{k}",
                         "reply": reply} for k, reply in enumerate(replies)],
            "role_identification": {"blocks": {"overall": accuracy}},
            "ended_turn_rate": {"blocks": ended}}


def test_compare_heldout_counts_identical_replies_and_other_scripts(tmp_path, capsys):
    before = heldout_report(["Bread.", "Flour и мука.", "Wheat."], 0.5, 1.0)
    after = heldout_report(["Bread.", "Flour and meal.", "Barley."], 0.75, 2 / 3)
    (tmp_path / "before.json").write_text(json.dumps(before))
    (tmp_path / "after.json").write_text(json.dumps(after))
    compare_heldout.main([str(tmp_path / "before.json"), str(tmp_path / "after.json")])
    out = capsys.readouterr().out
    assert "| blocks | 3 | 1 | 1 / 0 | 0.50 / 0.75 | 1.00 / 0.67 |" in out
    assert "before: Flour и мука.\n  after:  Flour and meal." in out


def test_compare_heldout_refuses_reports_of_other_questions():
    before = heldout_report(["Bread."], 0.5, 1.0)
    after = heldout_report(["Bread."], 0.5, 1.0)
    after["answers"][0]["question"] = "another"
    with pytest.raises(ValueError, match="same questions"):
        compare_heldout.comparison(before, after)


def test_compare_heldout_reproduces_the_script_guard_report(capsys):
    folder = REPORTS / "script-guard-2026-12-03"
    compare_heldout.main([str(folder / "sampled-seed1000-guard-off.json"),
                          str(folder / "sampled-seed1000-guard-on.json")])
    assert "| blocks | 140 | 89 | 2 / 0 | 0.74 / 0.74 |" in capsys.readouterr().out


def test_expectation_kinds_of_a_check():
    assert expectation_kinds.kinds_of(Expectation(mentions_any=("Bonn",))) == ["facts"]
    assert expectation_kinds.kinds_of(Expectation(in_character=True, era_bound=True)) == [
        "in-character", "era"]
    assert expectation_kinds.kinds_of(Expectation(avoids=("AI",), mentions_all=("a",))) == [
        "facts", "in-character"]


def test_expectation_kinds_count_passes_per_system(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    kinds = {("s", 0, 0): ["facts"], ("s", 1, 0): ["in-character", "era"]}
    replies = [{"system": "blocks", "script": "s", "exchange": 0, "turn": 0, "failures": []},
               {"system": "blocks", "script": "s", "exchange": 1, "turn": 0,
                "failures": ["used a modern word"]},
               {"system": "blocks", "script": "s", "exchange": 2, "turn": 0, "failures": []}]
    (run / "replies.jsonl").write_text("\n".join(map(json.dumps, replies)))
    overall = {"role_identification": 0.5, "relevance": 0.25, "expectation_pass_rate": 0.5,
               "first_person": 1.0}
    (run / "results.json").write_text(json.dumps({"scores": {"blocks": {"overall": overall}}}))
    assert expectation_kinds.summary(run, kinds) == [
        "run blocks: facts 1/1; in-character 0/1; era 0/1; role-ID 0.50, relevance 0.25, "
        "expectations 0.50, first person 1.00"]


def test_expectation_kinds_reproduce_the_decoding_penalty_report(capsys):
    expectation_kinds.main([str(REPORTS / "decoding-penalty-2026-12-02" / "interviews-echo-guard")])
    out = capsys.readouterr().out
    assert "interviews-echo-guard blocks: facts 8/82; in-character 76/78; era 38/39; " in out
    assert "interviews-echo-guard blocks+memory: facts 7/82; in-character 72/78; era 36/39" in out


def write_heldout(folder: Path, conversations: int) -> None:
    rows = [{"id": f"h{i}", "turns": [{"role": "user", "text": f"How is the mill, {i}?"},
                                      {"role": "character", "text": "It turns, slowly."}]}
            for i in range(conversations)]
    (folder / "heldout.jsonl").write_text("\n".join(map(json.dumps, rows)))


def test_turn_end_summary_of_every_block(tmp_path, monkeypatch, capsys):
    runtime = make_tiny_runtime(tmp_path, trained={"miller": "Miller", "sailor": "Sailor"})
    for slug in ("miller", "sailor"):
        write_heldout(runtime.character(slug).folder, conversations=5)
    rows = turn_end.turn_end_summary(runtime, limit=3)
    assert [row.character for row in rows] == ["miller", "sailor"]
    assert all(row.turn_ends == 3 and 0 <= row.median <= 1 and 0 <= row.mean <= 1
               for row in rows)

    seen = {}

    def fake_load_runtime(settings, report):
        seen["characters_dir"] = settings.characters_dir
        return runtime

    monkeypatch.setattr(turn_end, "load_runtime", fake_load_runtime)
    turn_end.main(["sailor", "--characters-dir", str(tmp_path / "characters"), "--limit", "2"])
    assert seen["characters_dir"] == tmp_path / "characters"
    assert capsys.readouterr().out.startswith("sailor: median ")

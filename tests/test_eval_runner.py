"""The script runner on the tiny model: every turn of every exchange, per character and
system, multi-turn history, expectations, and resume after a stop."""

from __future__ import annotations

import json

import pytest

from neeko_app.chat.reply import end_cleanly
from neeko_app.cli import main
from neeko_app.evaluation.runner import ReplyLog, run_scripts
from neeko_app.evaluation.script import parse_script
from tests.tiny_characters import make_tiny_runtime

SCRIPT = parse_script({
    "name": "tiny", "characters": ["ada", "newton"], "era_terms": ["computer"],
    "exchanges": [
        {"ask": "Where were you born?", "tags": ["life"],
         "expect": {"mentions_any": ["zzzz-never"]}},
        {"conversation": [{"ask": "Name a friend."}, {"ask": "Why that friend?"}],
         "tags": ["multi-turn"]},
    ]})


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return make_tiny_runtime(tmp_path_factory.mktemp("runner"),
                             {"ada": "Ada Lovelace", "newton": "Isaac Newton"})


def test_every_turn_is_answered_per_character_and_system(runtime, tmp_path):
    log = ReplyLog(tmp_path / "replies.jsonl")
    replies = run_scripts(runtime, [SCRIPT], ["blocks", "profile-prompt"], log)
    assert len(replies) == 2 * 2 * 3  # systems x characters x turns
    keys = {r.key for r in replies}
    assert ("blocks", "tiny", "newton", 1, 1) in keys and len(keys) == 12
    first = [r for r in replies if r.exchange == 0]
    assert all(r.failures == ("mentions none of ['zzzz-never']",) for r in first)
    assert all(r.failures is None for r in replies if r.exchange == 1)
    assert all(r.tags == ("multi-turn",) for r in replies if r.exchange == 1)
    assert all(r.tokens > 0 and r.seconds > 0 for r in replies)
    assert len(log.read()) == 12


def test_a_stopped_run_resumes_with_what_is_missing(runtime, tmp_path):
    whole = run_scripts(runtime, [SCRIPT], ["blocks"], ReplyLog(tmp_path / "a.jsonl"))
    partial = tmp_path / "b.jsonl"
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    partial.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # cut mid-line by a kill
    seen = []
    resumed = run_scripts(runtime, [SCRIPT], ["blocks"], ReplyLog(partial),
                          progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (3, 6)  # three replies were kept, the cut line was not
    assert sorted((r.key, r.reply) for r in resumed) == sorted((r.key, r.reply) for r in whole)
    assert len([json.loads(x) for x in partial.read_text().splitlines()[4:]]) == 3


def test_an_unknown_character_fails_before_anything_runs(runtime, tmp_path):
    script = parse_script({"name": "x", "characters": ["nobody"], "exchanges": [{"ask": "?"}]})
    with pytest.raises(Exception, match="unknown character 'nobody'"):
        run_scripts(runtime, [script], ["blocks"], ReplyLog(tmp_path / "x.jsonl"))
    assert not (tmp_path / "x.jsonl").exists()


def test_the_eval_command_writes_replies_results_report_and_plot(runtime, tmp_path, capsys):
    script = tmp_path / "tiny.yaml"
    script.write_text(json.dumps({  # JSON is YAML too
        "name": "tiny", "characters": ["ada", "newton"],
        "exchanges": [{"ask": "Where were you born?", "expect": {"in_character": True}},
                      {"ask": "What do you study?"}]}))
    out = tmp_path / "report"
    settings = runtime.settings
    code = main(["eval", str(script), "--base-model", "tiny", "--characters-dir",
                 str(settings.characters_dir), "--cache-dir", str(settings.cache_dir),
                 "--systems", "blocks", "profile-prompt", "--out", str(out),
                 "--max-new-tokens", "8"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["scores"]) == {"blocks", "profile-prompt"}
    assert set(results["scores"]["blocks"]) == {"overall", "ada", "newton"}
    assert results["scores"]["blocks"]["overall"]["replies"] == 4
    logged = [json.loads(x) for x in (out / "replies.jsonl").read_text().splitlines()]
    assert len(logged) == 8
    # 8 tokens cut every reply short: each is kept as the app keeps it, to a sentence end
    assert all(end_cleanly(r["reply"]) == r["reply"] for r in logged if r["reply"])
    report = (out / "report.md").read_text()
    assert "| blocks |" in report and "| newton |" in report and "role-ID" in report
    assert (out / "role-identification.png").read_bytes().startswith(b"\x89PNG")
    assert "| profile-prompt |" in capsys.readouterr().out


def test_an_unknown_script_name_lists_the_shipped_ones(capsys):
    assert main(["eval", "no-such-script", "--base-model", "tiny"]) == 2
    assert "no script 'no-such-script'; shipped scripts: " in capsys.readouterr().err


def write_heldout(folder, count: int = 3) -> None:
    rows = [{"id": f"{folder.name}-{i}", "turns": [
        {"role": "user", "text": f"Question number {i}?"},
        {"role": "character", "text": f"Answer number {i} from {folder.name}."}]}
        for i in range(count)]
    (folder / "heldout.jsonl").write_text("\n".join(json.dumps(r) for r in rows))


def test_the_eval_command_reports_perplexity_and_incremental_learning(tmp_path):
    trio = make_tiny_runtime(tmp_path, {"ada": "Ada Lovelace", "caesar": "Julius Caesar",
                                        "newton": "Isaac Newton"})
    settings = trio.settings
    for slug in ("ada", "caesar", "newton"):
        write_heldout(settings.characters_dir / slug)
    script = tmp_path / "trio.yaml"
    script.write_text(json.dumps({
        "name": "trio", "characters": ["ada", "caesar", "newton"],
        "exchanges": [{"ask": "Where were you born?"},
                      {"conversation": [{"ask": "Name a friend."}, {"ask": "Why?"}]},
                      {"ask": "Never asked: cut by --limit."}]}))
    out = tmp_path / "report"
    flags = ["--base-model", "tiny", "--characters-dir", str(settings.characters_dir),
             "--cache-dir", str(settings.cache_dir), "--max-new-tokens", "6"]
    assert main(["eval", str(script), *flags, "--systems", "blocks", "fusion", "--limit", "3",
                 "--perplexity", "2", "--incremental", "caesar", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["scores"]["blocks"]["overall"]["replies"] == 3 * 3  # 2 exchanges, 3 turns
    matrix = results["perplexity"]
    assert matrix["characters"] == ["ada", "caesar", "newton"] and matrix["conversations"] == 2
    assert all(len(row) == 3 and min(row) > 1 for row in matrix["values"])
    incremental = results["incremental"]
    assert set(incremental["before"]) == {"ada", "newton", "overall"}
    assert incremental["replayed"] == 2 * 3  # ada and newton, every turn replayed
    assert 0 <= incremental["identical"] <= incremental["replayed"]
    assert incremental["fusion"]["replies"] == incremental["expansion"]["replies"] == 3
    replayed = [json.loads(x) for x in (out / "replies-before.jsonl").read_text().splitlines()]
    assert {r["character"] for r in replayed} == {"ada", "newton"}
    report = (out / "report.md").read_text()
    assert "caesar added by expansion" in report and "| data \\ block |" in report
    for plot in ("perplexity.png", "incremental.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")


def test_incremental_needs_the_characters_own_block_and_the_blocks_system(runtime, capsys):
    settings = runtime.settings
    flags = ["--base-model", "tiny", "--characters-dir", str(settings.characters_dir),
             "--cache-dir", str(settings.cache_dir)]
    assert main(["eval", "robustness", *flags, "--incremental", "nobody"]) == 2
    assert "--incremental nobody needs that character's own block" in capsys.readouterr().err


def test_the_scripts_can_be_put_to_some_characters_only(runtime, tmp_path, capsys):
    script = tmp_path / "tiny.yaml"
    script.write_text(json.dumps({"name": "tiny", "characters": ["ada", "newton"],
                                  "exchanges": [{"ask": "Where were you born?"}]}))
    settings = runtime.settings
    flags = [str(script), "--base-model", "tiny", "--characters-dir",
             str(settings.characters_dir), "--cache-dir", str(settings.cache_dir),
             "--systems", "blocks", "--max-new-tokens", "4", "--out", str(tmp_path / "out")]
    ada_lines = settings.characters_dir / "ada" / "dialogues.jsonl"
    ada_lines.write_text(json.dumps({"turns": [{"role": "user", "text": "Hi?"},
                                               {"role": "character", "text": "Hello."}]}))
    try:
        assert main(["eval", *flags, "--characters", "newton"]) == 0
    finally:
        ada_lines.unlink()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["scores"]["blocks"]) == {"overall", "newton"}
    # told apart from every character with dialogues, not only from the ones asked
    assert results["meta"]["identified_among"] == ["newton", "ada"]
    assert main(["eval", *flags, "--characters", "nobody"]) == 2
    assert "no script puts questions to nobody" in capsys.readouterr().err

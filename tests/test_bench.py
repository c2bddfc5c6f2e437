"""The benchmarks run end to end on the tiny model and check what they time: every method
they compare really plays the character it is timed switching to or batching."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neeko_app.bench import end_to_end, engine_processes, mixed_batch, scale, switching
from neeko_app.bench.engine_comparison import sampled_openers
from neeko_app.bench.plot import summary_plot
from neeko_app.bench.timing import interleaved, medians_against, paired_ratio, percentile
from neeko_app.config import Settings
from neeko_app.moelora.persistence import read_block_metadata
from neeko_app.training.trainer import TrainingConfig
from tests.conftest import write_card
from tests.test_cli import neeko

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def test_interleaved_takes_the_median_of_each_case_over_rounds():
    calls = {"a": iter([9.0, 1.0, 2.0, 3.0]), "b": iter([9.0, 5.0, 7.0, 6.0])}
    medians = interleaved({name: (lambda it=it: next(it)) for name, it in calls.items()},
                          rounds=3, warmup=1)
    assert medians == {"a": 2.0, "b": 6.0}
    with pytest.raises(ValueError, match="rounds"):
        interleaved({"a": lambda: 0.0}, rounds=0)


def test_paired_ratio_divides_within_each_round():
    # round 2 was slow for both cases: per-round ratios are 2, 2, 3 whatever the phase
    samples = {"case": [2.0, 20.0, 3.0], "reference": [1.0, 10.0, 1.0]}
    assert paired_ratio(samples, "case", "reference") == 2.0


def test_medians_against_a_reference_configuration():
    samples = {"before": {"tokens/s": [10.0, 9.0, 11.0]}, "after": {"tokens/s": [30.0, 20.0, 25.0]}}
    before, after = medians_against(samples, "before", "before")
    assert before == {"configuration": "before", "tokens/s": 10.0, "tokens/s x before": 1.0,
                      "tokens/s x before, paired": 1.0}
    assert after == {"configuration": "after", "tokens/s": 25.0, "tokens/s x before": 2.5,
                     "tokens/s x before, paired": pytest.approx(25.0 / 11.0)}


def test_percentile_interpolates():
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0], 0.95) == pytest.approx(2.9)


def test_switching_checks_every_method_plays_the_new_character():
    result = switching.run(switching.SwitchingOptions(shape="tiny", rounds=1, ours_calls=20,
                                                      peft_calls=5, slow_calls=2))
    rows = {row["method"]: row for row in result.rows}
    assert set(rows) == {"ours: gate index", "PEFT set_adapter", "PEFT unmerge + merge",
                         "PEFT load_adapter (disk)"}
    assert all(rows[m]["output_checked"] is True for m in rows if m.startswith("PEFT"))
    assert all(row["ms_per_switch"] > 0 for row in rows.values())
    assert rows["ours: gate index"]["x_ours"] == 1.0
    assert result.settings["characters"] == 8 and result.settings["device"] == "cpu"


def test_mixed_batch_compares_all_cases_and_peft_agrees():
    result = mixed_batch.run(mixed_batch.MixedBatchOptions(
        shape="tiny", rounds=1, batch=4, prompt_tokens=8, decode_steps=2))
    cases = [row["case"] for row in result.rows]
    assert cases[0] == "bare base (no gate)" and len(cases) == 8
    assert "PEFT adapter_names: 4 adapters" in cases
    assert "ours: 4 characters scattered over 16" in cases
    assert result.rows[0]["decode_x_bare"] == 1.0
    assert all(row["prefill_ms"] > 0 and row["decode_ms_per_step"] > 0 for row in result.rows)
    assert result.notes[-2].endswith("True")
    # layer by layer against an fp32 reference: in fp32 both are exact up to summation order
    ours, peft = map(float, re.findall(r"ours ([0-9.e+-]+), PEFT ([0-9.e+-]+)",
                                       result.notes[-1])[0])
    assert ours < 1e-5 and peft < 1e-5


def test_scale_reports_each_count_with_memory_growing_linearly():
    result = scale.run(scale.ScaleOptions(shape="tiny", rounds=1, counts=(16, 8, 32),
                                          batch=4, prompt_tokens=4, decode_steps=1))
    assert [row["characters"] for row in result.rows] == [8, 16, 32]
    per_character = [row["blocks_mb"] / row["characters"] for row in result.rows]
    assert max(per_character) == pytest.approx(min(per_character))
    fewer = scale.run(scale.ScaleOptions(shape="tiny", rounds=1, counts=(2,), batch=4,
                                         prompt_tokens=4, decode_steps=1))
    assert fewer.rows[0]["characters"] == 2  # rows share characters when there are fewer


@pytest.mark.parametrize("expansion_steps, expansion", [
    (2, "24 exchanges, 6 steps, projected from 2 steps"),
    (None, "24 exchanges, 6 steps, measured"),  # the character really is added
])
def test_end_to_end_on_the_tiny_model_leaves_the_shipped_and_the_users_characters_alone(
        expansion_steps, expansion):
    shipped = Settings().characters_dir
    caesar_block = (shipped / "caesar" / "block.safetensors").read_bytes()
    threads = torch.get_num_threads()
    result = end_to_end.run(end_to_end.EndToEndOptions(
        base_model="tiny", reply_tokens=8, replies=1, sessions=(1, 3), expansion_exchanges=24,
        expansion_steps=expansion_steps, memory_sizes=(50, 120), queries=5,
        training=TrainingConfig(max_tokens=4096)))  # byte tokens: long conversations
    what = [row["what"] for row in result.rows]
    assert any(w.startswith("chat reply: time to first token") for w in what)
    assert [w for w in what if w.startswith("throughput")] == [
        "throughput, 1 sessions at once", "throughput, 3 sessions at once"]
    assert any(expansion in w for w in what)
    recall = [row for row in result.rows if row["what"].startswith("memory recall")]
    assert [row["what"].split(" with ")[1].split(" ")[0] for row in recall] == ["50", "120"]
    assert all(row["p95_ms"] >= row["value"] > 0 for row in recall)
    # the benchmark worked on scratch copies: nothing shipped or of the user's was touched
    assert (shipped / "caesar" / "block.safetensors").read_bytes() == caesar_block
    assert not (shipped / "bench-expansion").exists()
    assert read_block_metadata(shipped / "caesar" / "block.safetensors")
    assert not Settings().user_characters_dir.exists()
    # it started its engine as the app does (this thread on one core) and gave the count back
    assert torch.get_num_threads() == threads


def test_engine_processes_time_each_configuration_in_a_process_of_its_own(tmp_path):
    characters = tmp_path / "characters"
    characters.mkdir()
    write_card(characters, "smith", "Smith")
    settings = {"base_model": "tiny", "characters_dir": str(characters),
                "cache_dir": str(tmp_path / "cache")}
    configs = {"as before": {"settings": settings, "start": "main thread"},
               "as the app": {"settings": settings, "start": "app",
                              "decoding": {"max_new_tokens": 4}}}
    measured = engine_processes.compare_engine_processes(configs, rounds=1, ratio_label="old")
    rows = {row["configuration"]: row for row in measured["rows"]}
    assert rows["as before"]["one session tokens/s x old"] == 1.0
    for row in rows.values():
        assert all(row[case] > 0 for case in engine_processes.CASES)
    assert measured["samples"]["as the app"]["first token s"] == [
        rows["as the app"]["first token s"]]
    with pytest.raises(RuntimeError, match="nowhere, round 0 failed"):
        engine_processes.compare_engine_processes(
            {"nowhere": {"settings": settings, "start": "nowhere"}}, rounds=1)


def test_neeko_bench_writes_json_and_a_plot(tmp_path):
    out = tmp_path / "results"
    run = neeko("bench", "switching", "scale", "--shape", "tiny", "--quick", "--rounds", "1",
                "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "Switching characters" in run.stdout and "| characters |" in run.stdout
    saved = json.loads((out / "switching-cpu.json").read_text())
    assert saved["machine"]["device"] == "cpu" and len(saved["rows"]) == 4
    assert (out / "summary-cpu.png").read_bytes().startswith(PNG)
    refused = neeko("bench", "nonsense", "--shape", "tiny")
    assert refused.returncode == 2 and "unknown benchmark" in refused.stderr
    if not torch.cuda.is_available():
        no_gpu = neeko("bench", "switching", "--shape", "tiny", "--device", "cuda")
        assert no_gpu.returncode == 2 and "no CUDA GPU" in no_gpu.stderr
        assert "Traceback" not in no_gpu.stderr


def test_summary_plot_needs_results():
    with pytest.raises(ValueError, match="no benchmark results"):
        summary_plot({})


ABSENT_ON_A_GPU_HOST = ("chromadb", "langchain", "langchain_core", "langchain_chroma", "gradio",
                        "fastapi", "uvicorn", "pydantic")
IMPORT_BLOCKER = f"""
import importlib.abc
import sys


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_A_GPU_HOST!r}:
            raise ImportError(name + " is not installed on a bare GPU host")


sys.meta_path.insert(0, Absent())
"""


def test_the_gpu_script_runs_the_model_benchmarks_without_the_serving_stack(tmp_path):
    # the GPU host has torch, transformers and peft but not the app's Chroma/LangChain/Gradio
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(IMPORT_BLOCKER)
    env = os.environ | {"PYTHONPATH": str(site), "PYTHON": sys.executable, "DEVICE": "cpu",
                        "SHAPE": "tiny", "BATCH": "2", "BENCH_FLAGS": "--quick --rounds 1"}
    blocked = subprocess.run([sys.executable, "-c", "import chromadb"], env=env,
                             capture_output=True, text=True)
    assert "not installed on a bare GPU host" in blocked.stderr
    out = tmp_path / "results"
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "cuda.sh"), str(out)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    assert {"switching-cpu.json", "mixed_batch-cpu.json", "scale-cpu.json",
            "compiled_step-cpu.json", "summary-cpu.png"} <= {p.name for p in out.iterdir()}
    log = (out / "bench-cpu.log").read_text()
    assert "== scale" in log and "failed" not in log and "transformers" in log


def test_sampled_openers_take_the_first_of_each_character(tmp_path):
    stored = {"answers": [{"character": c, "question": q} for c, q in (
        ("b", "b1"), ("a", "a1"), ("b", "b2"), ("b", "b3"), ("a", "a2"), ("c", "c1"))]}
    path = tmp_path / "openers.json"
    path.write_text(json.dumps(stored))
    assert sampled_openers(path) == [("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2"),
                                     ("c", "c1")]
    assert sampled_openers(path, per_character=1) == [("a", "a1"), ("b", "b1"), ("c", "c1")]

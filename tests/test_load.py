"""The load test (`benchmarks/load_test.py`) on the tiny model: `neeko api` with streaming
clients, a quarter of them hanging up at random points. A short run in the default suite
(its memory figure is only reported: a few seconds are mostly warm-up); with `-m slow`, the
full one: 64 clients for 2 minutes, memory growth in the second minute under 5 %."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"


def load_test(tmp_path: Path, *flags: str) -> dict:
    """Run the load test on the tiny model; its figures (it fails when a check fails)."""
    figures = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--base-model", "tiny", "--device", "cpu",
                          "--json", str(figures), *flags],
                         capture_output=True, text=True, timeout=900)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    return json.loads(figures.read_text())


def check(figures: dict) -> None:
    """Replies completed and were dropped, every completed one was saved, nothing failed, the
    scheduler went idle at once."""
    assert figures["completed"] > 0 and figures["disconnected"] > 0
    assert figures["failed"] == 0 and figures["unsaved"] == 0 and not figures["problems"]
    assert figures["idle_after_s"] is not None and figures["idle_after_s"] < 10
    assert 0 < figures["ttft_p50_s"] <= figures["ttft_p95_s"]


def test_a_short_load_run_completes_saves_and_frees_every_reply(tmp_path):
    check(load_test(tmp_path, "--clients", "8", "--seconds", "8", "--max-rss-growth", "1"))


@pytest.mark.slow
def test_64_clients_for_two_minutes_with_disconnects(tmp_path):
    figures = load_test(tmp_path, "--clients", "64", "--seconds", "120")
    check(figures)
    assert figures["rss_growth"] < 0.05

"""One team of torch threads per serving process (`neeko_app.compute_threads`)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from neeko_app.compute_threads import (
    ALL_CORES,
    all_cores,
    default_for_new_threads,
    on_all_cores,
    set_default_for_new_threads,
    start_on_all_cores,
)
from tests.tiny_characters import make_tiny_runtime

needs_cores = pytest.mark.skipif(ALL_CORES < 2, reason="one core: every count is 1")


def in_thread(work):
    """`work()` in a new thread; its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


@pytest.fixture
def one_core_default():
    """Threads that start computing during the test take one core, as in a serving process;
    the process's default is put back afterwards."""
    set_default_for_new_threads(1)
    yield
    set_default_for_new_threads(ALL_CORES)


def product_and_count() -> int:
    """A product large enough to run in parallel, then this thread's count."""
    matrix = torch.randn(512, 512)
    (matrix @ matrix).sum()
    return torch.get_num_threads()


@needs_cores
def test_new_threads_take_the_default_and_the_caller_keeps_its_own(one_core_default):
    own = torch.get_num_threads()
    assert in_thread(product_and_count) == 1
    assert default_for_new_threads() == 1
    assert torch.get_num_threads() == own


@needs_cores
def test_a_thread_started_on_all_cores_uses_them_and_threads_after_it_take_one(
        one_core_default):
    counts = []
    thread = start_on_all_cores(lambda: counts.append(product_and_count()), "test-team")
    thread.join()
    assert counts == [ALL_CORES]
    assert thread.daemon
    assert in_thread(product_and_count) == 1, "starting the team changed the default"


@needs_cores
def test_on_all_cores_returns_the_result_or_raises_the_error_here(one_core_default):
    assert on_all_cores(product_and_count) == ALL_CORES

    def broken():
        raise ValueError("broken card")

    with pytest.raises(ValueError, match="broken card"):
        on_all_cores(broken)
    assert default_for_new_threads() == 1


@needs_cores
def test_all_cores_lasts_for_its_block_only(one_core_default):
    def inside_and_after() -> tuple[int, int, int]:
        with all_cores():
            inside = product_and_count()
        return inside, torch.get_num_threads(), default_for_new_threads()

    assert in_thread(inside_and_after) == (ALL_CORES, 1, 1)


@needs_cores
def test_training_runs_on_all_cores_from_a_one_core_thread(one_core_default, tiny_neeko):
    from neeko_app.training.loop import block_training

    def count_while_training() -> tuple[int, int]:
        with block_training(tiny_neeko, ["char0"]):
            during = torch.get_num_threads()
        return during, torch.get_num_threads()

    assert in_thread(count_while_training) == (ALL_CORES, 1)


SERVING_SCRIPT = textwrap.dedent("""
    import json, sys, threading
    from pathlib import Path
    import torch
    from neeko_app.chat.prompt import Turn
    from neeko_app.chat.scheduler import BatchScheduler
    from neeko_app.chat.startup import build_engine
    from neeko_app.config import Settings

    counts = {}
    generate = BatchScheduler._generate

    def counted(self, batch):
        counts["scheduler"] = torch.get_num_threads()
        return generate(self, batch)

    BatchScheduler._generate = counted

    settings = Settings(base_model="tiny", device="cpu", cache_dir=Path(sys.argv[1]),
                        data_dir=Path(sys.argv[2]))
    engine = build_engine(settings, use_memory=False, report=lambda _: None)
    counts["threads"] = sorted(t.name for t in threading.enumerate())

    def request():  # as a server's thread answers a request
        slug = sorted(engine.runtime.characters)[0]
        engine.reply(slug, [Turn("user", "Hello there, who are you?")]).result()
        matrix = torch.randn(512, 512)
        (matrix @ matrix).sum()
        counts["request"] = torch.get_num_threads()

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    engine.close()
    print(json.dumps(counts))
""")


@needs_cores
def test_a_serving_process_computes_on_all_cores_only_in_the_schedulers_thread(tmp_path):
    """Start-up runs in a thread that has ended once the engine is built (its OpenMP
    workers end with it), the scheduler decodes on every core, a request's thread on one."""
    run = subprocess.run([sys.executable, "-c", SERVING_SCRIPT, str(tmp_path / "cache"),
                          str(tmp_path / "data")], capture_output=True, text=True, check=True)
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    assert counts["scheduler"] == ALL_CORES
    assert counts["request"] == 1
    assert counts["threads"] == ["MainThread", "neeko-scheduler"]


POOL_SCRIPT = textwrap.dedent("""
    import json, os, time
    import torch
    from neeko_app.compute_threads import (all_cores, give_back_workers, keep_to_one_core,
                                           while_another_decodes)

    def os_threads() -> int:
        # the count once it has held for 5 reads in a row: on a loaded machine a thread
        # that is ending (an OpenMP worker given back, a start-up helper) lingers a while
        reads = [len(os.listdir("/proc/self/task"))]
        deadline = time.monotonic() + 10
        while (len(reads) < 5 or len(set(reads[-5:])) > 1) and time.monotonic() < deadline:
            time.sleep(0.05)
            reads.append(len(os.listdir("/proc/self/task")))
        return reads[-1]

    def compute() -> None:
        matrix = torch.randn(512, 512)
        (matrix @ matrix).sum()

    seen = {"none": os_threads()}
    compute()
    seen["pool"] = os_threads()
    give_back_workers()
    seen["given back"] = os_threads()
    compute()
    with while_another_decodes():
        seen["waiting"] = os_threads()
        compute()
        seen["waiting, computed"] = os_threads()
        seen["count while waiting"] = torch.get_num_threads()
    seen["count after"] = torch.get_num_threads()
    with all_cores():
        compute()
    seen["after training"] = os_threads()
    compute()
    keep_to_one_core()  # as the app starts serving
    compute()
    seen["kept to one core"] = os_threads()
    print(json.dumps(seen))
""")


@needs_cores
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_a_thread_gives_its_openmp_workers_back_when_it_stops_computing_on_every_core():
    run = subprocess.run([sys.executable, "-c", POOL_SCRIPT], capture_output=True, text=True,
                         check=True)
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    none = seen["none"]
    assert seen["pool"] == none + ALL_CORES - 1, "computing on every core starts a pool"
    assert seen["given back"] == seen["waiting"] == seen["waiting, computed"] == none
    assert (seen["count while waiting"], seen["count after"]) == (1, ALL_CORES)
    assert seen["after training"] == seen["kept to one core"] == none


@needs_cores
def test_an_evaluation_waits_on_one_core_while_its_scheduler_decodes_on_all(
        tmp_path, monkeypatch):
    from neeko_app.chat.generation import DecodingSettings
    from neeko_app.chat.scheduler import BatchScheduler, GenerationRequest, gate_row
    from neeko_app.evaluation.heldout import generated_replies

    runtime = make_tiny_runtime(tmp_path, trained={"ada": "Ada Lovelace"})
    decoding_counts, waiting_counts = [], []
    generate = BatchScheduler._generate

    def counted(self, batch):
        decoding_counts.append(torch.get_num_threads())
        return generate(self, batch)

    monkeypatch.setattr(BatchScheduler, "_generate", counted)
    own = torch.get_num_threads()
    prompt = tuple(runtime.base.tokenizer("Hello, who are you?")["input_ids"])
    gate = gate_row(runtime.gate_for(runtime.character("ada")))
    requests = [GenerationRequest(prompt, gate,
                                  DecodingSettings(max_new_tokens=4, temperature=0))] * 2
    replies, _ = generated_replies(runtime, requests, batch_size=1,
                                   progress=lambda done: waiting_counts.append(
                                       torch.get_num_threads()))
    assert len(replies) == 2
    assert decoding_counts == [ALL_CORES, ALL_CORES]
    assert waiting_counts == [1, 1]
    assert torch.get_num_threads() == own

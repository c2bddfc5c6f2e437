"""How many cores each thread's torch work runs on: one team of OpenMP threads per process.

On Linux, PyTorch runs its parallel CPU work (and oneDNN's) on libgomp. libgomp keeps a pool
of worker threads for every thread that has run torch work on more than one core, for as
long as that thread lives. Once all pools together hold more threads than the machine has
cores, every worker stops waiting actively between parallel regions and sleeps instead, so
each of a decode step's many small regions first waits for its worker to wake. Measured on
the 2-core AMD EPYC VM (reports/one-team-2026-12-06): one session's decode step took 59-74 ms
in the chat app, where the loading thread had computed on both cores too, and 42-45 ms
when the scheduler's thread was the only one that ever had.

So a serving process keeps one team: the thread that starts the app and every thread that
computes after it run on one core (`keep_to_one_core`: a request embeds its message),
start-up work runs on every core in a thread that ends with it (`on_all_cores`: its pool
ends too), the scheduler's thread decodes on every core (`start_on_all_cores`), and
training runs on every core while it lasts (`all_cores`), then gives its pool back
(`give_back_workers`: a server thread that trained a character lives on). A thread that
waits for a scheduler it started (an evaluation) keeps to one core meanwhile, without a
pool (`while_another_decodes`).

torch keeps one process-wide default that a thread takes at its first parallel operation;
`torch.set_num_threads` sets the calling thread's count and that default together. The
helpers below put the default back, so a thread's own change does not leak into threads
that start computing later.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

ALL_CORES = torch.get_num_threads()  # the process's count before anything here changed it
T = TypeVar("T")


def _in_fresh_thread(work: Callable[[], T]) -> T:
    """`work()` in a short-lived thread (one that has never computed), its result here."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(work()), name="neeko-threads")
    thread.start()
    thread.join()
    return result[0]


@functools.cache
def _openmp_pause() -> Callable[[int], int] | None:
    """libgomp's `omp_pause_resource_all` as torch loaded it; None where torch runs on
    another thread pool or the library predates OpenMP 5.0."""
    try:
        with open("/proc/self/maps") as maps:
            path = next((line.split()[-1] for line in maps if "libgomp" in line), None)
    except OSError:  # not Linux
        return None
    library = ctypes.CDLL(path) if path else None
    return getattr(library, "omp_pause_resource_all", None)


def give_back_workers() -> None:
    """End this thread's pool of OpenMP workers now, not when the thread ends (its next
    parallel torch work starts a new one)."""
    if pause := _openmp_pause():
        pause(1)  # omp_pause_soft: libgomp frees the calling thread's pool


def default_for_new_threads() -> int:
    """The count a thread that has not computed yet will take."""
    return _in_fresh_thread(torch.get_num_threads)


def keep_to_one_core() -> None:
    """This thread, and threads that start computing later, run torch work on one core; a
    pool of workers this thread kept from earlier work is given back."""
    give_back_workers()
    torch.set_num_threads(1)


def set_default_for_new_threads(count: int) -> None:
    """Threads that have not computed yet will run torch work on `count` cores; the calling
    thread's own count is left alone."""
    _in_fresh_thread(lambda: torch.set_num_threads(count))


def start_on_all_cores(target: Callable[[], object], name: str) -> threading.Thread:
    """Start a daemon thread that runs `target` with torch on every core; returns once it
    has set its count. Threads that start computing later (also those `target` starts) take
    the default as it was before."""
    default = default_for_new_threads()
    counted, default_back = threading.Event(), threading.Event()

    def run() -> None:
        torch.get_num_threads()  # takes the default now, not at its first parallel operation
        torch.set_num_threads(ALL_CORES)  # (which sets the default too: put back below)
        counted.set()
        default_back.wait()
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    counted.wait()
    set_default_for_new_threads(default)
    default_back.set()
    return thread


def on_all_cores(work: Callable[[], T], name: str = "neeko-start-up") -> T:
    """`work()` run on every core in a thread of its own that ends with it (its pool of
    OpenMP workers ends too); its result, or its error raised here."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as err:  # re-raised in the caller's thread
            outcome["error"] = err

    start_on_all_cores(run, name).join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]


@contextmanager
def _this_thread_on(count: int) -> Iterator[None]:
    """Torch work of this thread in the block runs on `count` cores; afterwards this thread,
    and threads that start computing later, have their counts as before."""
    own, default = torch.get_num_threads(), default_for_new_threads()  # (own: taken now)
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(own)
        set_default_for_new_threads(default)


@contextmanager
def all_cores() -> Iterator[None]:
    """Torch work in this block runs on every core (training); afterwards this thread, and
    threads that start computing later, have their counts as before, and this thread's pool
    of workers is given back."""
    try:
        with _this_thread_on(ALL_CORES):
            yield
    finally:
        give_back_workers()


@contextmanager
def while_another_decodes() -> Iterator[None]:
    """For the block's length (another thread decodes on every core meanwhile, such as the
    scheduler an evaluation started) this thread has no pool of workers and runs torch work
    on one core; afterwards its count, and the default, are as before."""
    give_back_workers()
    with _this_thread_on(1):
        yield

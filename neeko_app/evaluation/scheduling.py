"""The scheduler an evaluation generates its replies with, and how the evaluating thread
waits for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.compute_threads import while_another_decodes
from neeko_app.runtime import Runtime


@contextmanager
def evaluation_scheduler(runtime: Runtime, batch_size: int) -> Iterator[BatchScheduler]:
    """A scheduler for `runtime`'s model (batches of up to `batch_size`), closed when the
    block ends. Meanwhile this thread keeps to one core without a pool of OpenMP workers, so
    the scheduler's thread is the only one that decodes on every core (`compute_threads`)."""
    with while_another_decodes():
        scheduler = BatchScheduler(runtime.model, runtime.base.tokenizer, max_batch=batch_size,
                                   compile_decode=runtime.settings.compile_decode)
        try:
            yield scheduler
        finally:
            scheduler.close()

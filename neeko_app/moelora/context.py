"""The gate of the forward call in progress.

`NeekoModel.forward`/`generate` set it for the duration of one call. It lives in a
`contextvars.ContextVar`, so each thread and each asyncio task sees only the gate of its
own call: two sessions generating at the same time never read each other's gate, and no
module keeps any per-request state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from neeko_app.moelora.gate import Gate

_current_gate: ContextVar[Gate | None] = ContextVar("neeko_current_gate", default=None)


@contextmanager
def gate_scope(gate: Gate | None) -> Iterator[None]:
    """Make `gate` the gate of every LoRA layer called inside this block (this context only)."""
    token = _current_gate.set(gate)
    try:
        yield
    finally:
        _current_gate.reset(token)


def current_gate() -> Gate | None:
    """The gate of the call in progress in this context, or None (bare base model)."""
    return _current_gate.get()

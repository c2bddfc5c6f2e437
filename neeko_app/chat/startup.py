"""Build a ready `ChatEngine` from settings: model, blocks, memory, saved sessions."""

from __future__ import annotations

from collections.abc import Callable

from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.session import SessionStore
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import load_runtime


def build_engine(settings: Settings, decoding: DecodingSettings | None = None,
                 use_memory: bool = True,
                 report: Callable[[str], None] = print) -> ChatEngine:
    """Load everything a chat needs; with memory, every character's knowledge is (re)indexed."""
    runtime = load_runtime(settings, report)
    memory = None
    if use_memory:
        where = settings.chroma_url or settings.memory_dir
        report(f"opening memory ({where}) and indexing {len(runtime.characters)} characters")
        memory = MemoryStore.open(settings.memory_dir, settings.chroma_url or None)
        index_characters(memory, runtime.characters.values())
    return ChatEngine(runtime, memory, decoding, sessions=SessionStore(settings.sessions_dir))

"""A throwaway memory store for evaluations and training: the app's retrieval, none of its data."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import chromadb

from neeko_app.characters.card import Character
from neeko_app.config import Settings
from neeko_app.memory.client import chroma_settings
from neeko_app.memory.knowledge import index_characters
from neeko_app.memory.knowledge_encoder import first_note_embeddings
from neeko_app.memory.store import MemoryStore


@contextmanager
def scratch_knowledge(characters: Iterable[Character],
                      settings: Settings | None = None) -> Iterator[MemoryStore]:
    """A store holding the knowledge of `characters`, searched exactly as the chat app's
    memory is (same chunks, MiniLM and the knowledge encoder of `settings`, default from
    the environment, Chroma), in collections of its own in an in-memory Chroma that are
    dropped on exit. The configured store and any `chroma run` server (`$NEEKO_CHROMA_URL`
    included) are never touched."""
    client = chromadb.EphemeralClient(settings=chroma_settings())
    names = [f"scratch-{kind}-{uuid.uuid4().hex}" for kind in ("knowledge", "conversations")]
    store = MemoryStore(client, knowledge_collection=names[0], conversation_collection=names[1],
                        first_note_embeddings=first_note_embeddings(settings))
    try:
        index_characters(store, characters)
        yield store
    finally:
        for name in client.list_collections():
            if name.name.startswith(tuple(names)):
                client.delete_collection(name.name)

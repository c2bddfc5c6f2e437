"""Retrieval memory in Chroma (through LangChain): character knowledge and conversations."""

from neeko_app.memory.chunks import KNOWLEDGE_KINDS, KnowledgeChunk, profile_chunks
from neeko_app.memory.client import CHROMA_URL_ENV, open_client, parse_server_url
from neeko_app.memory.embeddings import MiniLMEmbeddings
from neeko_app.memory.store import Exchange, MemoryStore

__all__ = [
    "CHROMA_URL_ENV",
    "KNOWLEDGE_KINDS",
    "Exchange",
    "KnowledgeChunk",
    "MemoryStore",
    "MiniLMEmbeddings",
    "open_client",
    "parse_server_url",
    "profile_chunks",
]

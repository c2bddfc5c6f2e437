"""`MemoryStore`: character knowledge and conversation memory in two Chroma collections.

Searches rank exactly: a search is always scoped to one character or one session, whose
items are few (hundreds to a few thousands), so the store fetches their vectors and sorts
them by cosine itself. Chroma's HNSW index with a metadata filter missed the best match of a
long session for 23 of 30 questions in a test (it searches the whole collection's graph,
then filters), and returned nothing at all for one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api import ClientAPI
from langchain_chroma import Chroma
from langchain_core.embeddings import Embeddings

from neeko_app.characters.card import validate_slug
from neeko_app.config import Settings
from neeko_app.memory import knowledge_encoder
from neeko_app.memory.chunks import KnowledgeChunk
from neeko_app.memory.client import open_client
from neeko_app.memory.embeddings import MiniLMEmbeddings
from neeko_app.memory.lexical import overlap, rarity, words
from neeko_app.memory.validation import (
    validate_collection_name,
    validate_count,
    validate_session_id,
    validate_text,
)

KNOWLEDGE_COLLECTION = "neeko-knowledge"
CONVERSATION_COLLECTION = "neeko-conversations"
# MiniLM vectors are unit length: cosine distance ranks like similarity.
_COLLECTION_CONFIGURATION: Any = {"hnsw": {"space": "cosine"}}
QUESTION_KIND = "question"  # a knowledge entry that is a way of asking for a chunk
LEXICAL_WEIGHT = 0.25  # weight of the shared rare words in a knowledge score (`lexical`)


@dataclass(frozen=True)
class Exchange:
    """One remembered exchange: what the user said and what the character replied."""

    session_id: str
    character: str
    turn: int
    user_text: str
    reply_text: str
    time: float
    user_id: str | None = None


class MemoryStore:
    """Retrieval memory: per-character knowledge chunks and per-session conversation memory."""

    def __init__(
        self,
        client: ClientAPI,
        embeddings: Embeddings | None = None,
        knowledge_collection: str = KNOWLEDGE_COLLECTION,
        conversation_collection: str = CONVERSATION_COLLECTION,
        first_note_embeddings: Embeddings | None = None,
    ) -> None:
        """`embeddings` (default MiniLM) embed everything. With `first_note_embeddings` (the
        tuned knowledge encoder), the knowledge is also kept in a collection of its own
        embedded by them, which chooses the first note of a knowledge search."""
        embeddings = embeddings or MiniLMEmbeddings()
        self.lexical_weight = LEXICAL_WEIGHT
        self._query_vector = functools.lru_cache(maxsize=16)(self._embed_query)
        self._knowledge, self._conversations = (
            _collection(client, name, embeddings)
            for name in (knowledge_collection, conversation_collection)
        )
        self._first_notes = None
        # Stored with each entry of that collection, so that a new encoder embeds them again.
        self._first_note_encoder: dict[str, str] = {}
        if first_note_embeddings is not None:
            self._first_notes = _collection(client, f"{knowledge_collection}-first",
                                            first_note_embeddings)
            fingerprint = getattr(first_note_embeddings, "fingerprint", None)
            self._first_note_encoder = {"encoder": fingerprint} if fingerprint else {}

    @classmethod
    def open(cls, memory_dir: Path, server_url: str | None = None,
             settings: Settings | None = None) -> MemoryStore:
        """A store on `open_client(memory_dir, server_url)` with the MiniLM embeddings and
        the knowledge encoder of `settings` (default: from the environment)."""
        return cls(open_client(memory_dir, server_url),
                   first_note_embeddings=knowledge_encoder.first_note_embeddings(settings))

    # Character knowledge

    def index_character(self, slug: str, chunks: list[KnowledgeChunk]) -> int:
        """Replace the knowledge of character `slug` by `chunks`; returns how many are stored.

        A chunk is stored under the id `slug:position`, each of its questions under
        `slug:position:q<n>`, pointing back at it. Entries already stored with the same text
        are not embedded again; the others are written first and the character's remaining
        old entries deleted after, so re-indexing is idempotent and cheap, and a failed
        embedding leaves the old knowledge."""
        validate_slug(slug)
        if not all(isinstance(chunk, KnowledgeChunk) for chunk in chunks):
            raise ValueError("chunks must be KnowledgeChunk objects")
        entries: dict[str, tuple[str, dict[str, Any]]] = {}
        for position, chunk in enumerate(chunks):
            entries[f"{slug}:{position}"] = (
                chunk.text, {"character": slug, "kind": chunk.kind, "position": position})
            for number, question in enumerate(chunk.questions):
                entries[f"{slug}:{position}:q{number}"] = (
                    question, {"character": slug, "kind": QUESTION_KIND, "answers": position})
        _synchronise(self._knowledge, slug, entries)
        if self._first_notes is not None:
            _synchronise(self._first_notes, slug, {
                id_: (text, {**metadata, **self._first_note_encoder})
                for id_, (text, metadata) in entries.items()})
        return len(chunks)

    def search_knowledge(self, slug: str, query: str, k: int = 4) -> list[KnowledgeChunk]:
        """The `k` chunks of character `slug` most relevant to `query`, best first; equal
        texts count once. With a first-note encoder, its best chunk comes first, then the
        best others by MiniLM: the tuned encoder finds the answer more often, while
        MiniLM's runners-up are less often look-alikes that a block might read instead
        (report knowledge-embedder-2026-12-06)."""
        query, k = validate_text(query, "query"), validate_count(k, "k", 1)
        ranked = self._ranked_knowledge(self._knowledge, validate_slug(slug), query, k + 1)
        if self._first_notes is not None:
            first = self._ranked_knowledge(self._first_notes, slug, query, 1)
            chosen = {chunk.text for chunk in first}
            ranked = first + [chunk for chunk in ranked if chunk.text not in chosen]
        return ranked[:k]

    def _ranked_knowledge(self, collection: Chroma, slug: str, query: str, k: int
                          ) -> list[KnowledgeChunk]:
        """The best `k` distinct chunks of `slug` in `collection`. A chunk scores the cosine
        of its text to the query plus that of its closest question (of its text again when
        it has none), plus `self.lexical_weight` times the share of the query's rare words
        its text and questions hold (`lexical.overlap`)."""
        found, cosines = self._scored(collection, {"character": slug}, query)
        chunks: dict[int, tuple[KnowledgeChunk, float]] = {}
        closest_question: dict[int, float] = {}
        vocabulary: dict[int, frozenset[str]] = {}
        for document, metadata, cosine in zip(found["documents"], found["metadatas"],
                                              cosines.tolist(), strict=True):
            position = metadata["answers" if metadata["kind"] == QUESTION_KIND else "position"]
            vocabulary[position] = vocabulary.get(position, frozenset()) | words(document)
            if metadata["kind"] == QUESTION_KIND:
                closest_question[position] = max(cosine, closest_question.get(position, cosine))
            else:
                chunks[position] = (KnowledgeChunk(document, metadata["kind"]), cosine)
        weights, asked = rarity(vocabulary.values()), words(query)
        scores = {position: cosine + closest_question.get(position, cosine)
                  + self.lexical_weight * overlap(asked, vocabulary[position], weights)
                  for position, (_, cosine) in chunks.items()}
        best: dict[str, KnowledgeChunk] = {}
        for position in sorted(scores, key=lambda p: (-scores[p], p)):
            chunk = chunks[position][0]
            best.setdefault(chunk.text, chunk)
            if len(best) == k:
                break
        return list(best.values())

    # Conversation memory

    def remember_exchange(
        self,
        session_id: str,
        character: str,
        user_text: str,
        reply_text: str,
        turn: int,
        user_id: str | None = None,
    ) -> Exchange:
        """Store one exchange under id `session_id:character:turn` (writing a turn again
        replaces it; one session may talk to several characters without their turns clashing)."""
        [exchange] = self.remember_exchanges(session_id, character, [(user_text, reply_text)],
                                             turn, user_id)
        return exchange

    def remember_exchanges(
        self,
        session_id: str,
        character: str,
        texts: Sequence[tuple[str, str]],
        first_turn: int = 1,
        user_id: str | None = None,
    ) -> list[Exchange]:
        """Store several (user text, reply) exchanges of one session as turns `first_turn`,
        `first_turn + 1`, ... (as `remember_exchange` does, embedded in one batch)."""
        session_id, character = validate_session_id(session_id), validate_slug(character)
        user_id = None if user_id is None else validate_session_id(user_id, "user id")
        now = time.time()
        exchanges = [
            Exchange(
                session_id=session_id,
                character=character,
                turn=validate_count(turn, "turn", 0),
                user_text=validate_text(user_text, "user text"),
                reply_text=validate_text(reply_text, "reply text"),
                time=now,
                user_id=user_id,
            )
            for turn, (user_text, reply_text) in enumerate(texts, start=first_turn)
        ]
        if exchanges:
            self._conversations.add_texts(
                [f"{e.user_text}\n{e.reply_text}" for e in exchanges],
                metadatas=[_metadata(e) for e in exchanges],
                ids=[f"{e.session_id}:{e.character}:{e.turn}" for e in exchanges],
            )
        return exchanges

    def recall(
        self,
        session_id: str,
        character: str,
        query: str,
        k: int = 4,
        before_turn: int | None = None,
        within: float | None = None,
    ) -> list[Exchange]:
        """The `k` exchanges of this session with this character most similar to `query`,
        best first; with `before_turn`, only turns before it (the later ones are still in the
        prompt's recent history). Exchanges with the same words count once (the latest), so a
        line said many times ("go on") cannot fill every place. With `within`, only exchanges
        whose cosine similarity is at most `within` below the best one's are returned: an
        exchange far less related than the best is a distraction, not a reminder."""
        scope = _session_scope(session_id, character)
        query = validate_text(query, "query")
        k = validate_count(k, "k", 1)
        if before_turn is not None:
            scope["$and"].append({"turn": {"$lt": validate_count(before_turn, "before_turn", 0)}})
        found = self._nearest(self._conversations, query, k, scope, within)
        return [_exchange(document, metadata) for document, metadata in found]

    def forget_turns(self, session_id: str, character: str, from_turn: int) -> None:
        """Delete this session's exchanges with `character` from turn `from_turn` on (the
        conversation was undone or edited back to before them)."""
        scope = _session_scope(session_id, character)
        scope["$and"].append({"turn": {"$gte": validate_count(from_turn, "from_turn", 0)}})
        self._conversations.delete(where=scope)

    def list_session(self, session_id: str) -> list[Exchange]:
        """Every exchange of the session, in turn order."""
        found = self._conversations.get(
            where={"session_id": validate_session_id(session_id)},
            include=["documents", "metadatas"],
        )
        exchanges = map(_exchange, found["documents"], found["metadatas"])
        return sorted(exchanges, key=lambda exchange: exchange.turn)

    def forget_session(self, session_id: str) -> None:
        """Delete every exchange of the session."""
        self._conversations.delete(where={"session_id": validate_session_id(session_id)})

    def forget_character(self, slug: str) -> None:
        """Delete the character's knowledge and every exchange with it, in all sessions."""
        where = {"character": validate_slug(slug)}
        for collection in (self._knowledge, self._first_notes, self._conversations):
            if collection is not None:
                collection.delete(where=where)

    def _scored(self, store: Chroma, where: dict[str, Any], query: str
                ) -> tuple[dict[str, Any], np.ndarray]:
        """Every entry under `where` (documents, metadatas) and its cosine to `query`."""
        found = store.get(where=where, include=["documents", "metadatas", "embeddings"])
        if not found["ids"]:
            return found, np.zeros(0, dtype=np.float32)
        vector = self._query_vector(store.embeddings, query)
        return found, np.asarray(found["embeddings"], dtype=np.float32) @ vector

    @staticmethod
    def _embed_query(embeddings: Embeddings, query: str) -> np.ndarray:
        """`query` embedded by `embeddings` (through `_query_vector`, which keeps the last
        few: one reply searches knowledge and recall with the same message)."""
        return np.asarray(embeddings.embed_query(query), dtype=np.float32)

    def _nearest(self, store: Chroma, query: str, k: int, where: dict[str, Any],
                 within: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The `k` distinct documents under `where` closest to `query` (exact cosine ranking),
        best first, with their metadata; of equal documents the latest turn is kept. With
        `within`, none scoring more than `within` below the best."""
        found, scores = self._scored(store, where, query)
        documents, metadatas = found["documents"], found["metadatas"]
        latest: dict[str, int] = {}
        for index, document in enumerate(documents):
            kept = latest.get(document)
            if kept is None or metadatas[index].get("turn", 0) > metadatas[kept].get("turn", 0):
                latest[document] = index
        if not latest:
            return []
        indices = np.fromiter(latest.values(), dtype=np.int64)
        distinct = scores[indices]
        order = np.argsort(-distinct, kind="stable")[:k]
        if within is not None:
            order = order[distinct[order] >= distinct[order[0]] - within]
        return [(documents[index], metadatas[index]) for index in indices[order]]


def _metadata(exchange: Exchange) -> dict[str, Any]:
    """What Chroma stores beside an exchange's text (`_exchange` reads it back)."""
    metadata: dict[str, Any] = {
        "session_id": exchange.session_id,
        "character": exchange.character,
        "turn": exchange.turn,
        "time": exchange.time,
        "user_chars": len(exchange.user_text),
    }
    if exchange.user_id is not None:  # Chroma drops None-valued metadata anyway
        metadata["user_id"] = exchange.user_id
    return metadata


def _session_scope(session_id: str, character: str) -> dict[str, Any]:
    """The metadata filter for one session with one character."""
    return {"$and": [
        {"session_id": validate_session_id(session_id)},
        {"character": validate_slug(character)},
    ]}


def _exchange(document: str, metadata: dict[str, Any]) -> Exchange:
    """Rebuild an Exchange from its stored document (`user text\\nreply`) and metadata."""
    split = metadata["user_chars"]
    return Exchange(
        session_id=metadata["session_id"],
        character=metadata["character"],
        turn=metadata["turn"],
        user_text=document[:split],
        reply_text=document[split + 1:],
        time=metadata["time"],
        user_id=metadata.get("user_id"),
    )


def _collection(client: ClientAPI, name: str, embeddings: Embeddings) -> Chroma:
    """The LangChain view of Chroma collection `name` (created if missing)."""
    return Chroma(client=client, collection_name=validate_collection_name(name),
                  embedding_function=embeddings,
                  collection_configuration=_COLLECTION_CONFIGURATION)


def _synchronise(collection: Chroma, slug: str,
                 entries: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Make `collection` hold exactly `entries` (id -> text, metadata) for character `slug`.
    Entries already stored alike are not embedded again; the others are written first and
    the character's remaining old entries deleted after, so a failed embedding leaves the old
    knowledge."""
    stored = collection.get(where={"character": slug}, include=["documents", "metadatas"])
    kept = {id_ for id_, document, metadata
            in zip(stored["ids"], stored["documents"], stored["metadatas"], strict=True)
            if entries.get(id_) == (document, metadata)}
    changed = [id_ for id_ in entries if id_ not in kept]
    if changed:
        collection.add_texts([entries[id_][0] for id_ in changed],
                             metadatas=[entries[id_][1] for id_ in changed], ids=changed)
    stale = [id_ for id_ in stored["ids"] if id_ not in entries]
    if stale:
        collection.delete(ids=stale)

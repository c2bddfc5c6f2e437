"""Role identification: is a reply closer to its own character's profile than to the others?"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from neeko_app.characters.card import Character
from neeko_app.embedding import embed_texts
from neeko_app.memory.chunks import profile_chunks


def profile_embedding(character: Character) -> torch.Tensor:
    """Unit vector for a character: the mean MiniLM embedding of its profile's paragraphs.

    Paragraph by paragraph, because MiniLM reads only the first 256 word pieces of a text.
    """
    chunks = profile_chunks(character.profile_text())
    vectors = embed_texts([chunk.text for chunk in chunks])
    return F.normalize(vectors.mean(0), dim=0)


def identify(replies: Sequence[str], profiles: torch.Tensor) -> list[int]:
    """Index of the nearest profile (rows of `profiles`) for each reply; -1 for an empty one."""
    predicted = [-1] * len(replies)
    spoken = [k for k, reply in enumerate(replies) if reply.strip()]
    if spoken:
        vectors = embed_texts([replies[k] for k in spoken])
        nearest = (vectors @ profiles.T).argmax(-1).tolist()
        for k, index in zip(spoken, nearest, strict=True):
            predicted[k] = index
    return predicted

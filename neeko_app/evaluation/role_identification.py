"""Role identification: is a reply closer to its own character than to the others?

The issue's measure compares a reply with each character's profile. A second measure,
reported beside it, compares it with the mean of each character's training replies: how
the character talks rather than what its biography says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from neeko_app.characters.card import DIALOGUES_FILE, Character
from neeko_app.embedding import embed_texts
from neeko_app.memory.chunks import profile_chunks
from neeko_app.training.data import load_dialogues


def identification_cast(library: Mapping[str, Character],
                        evaluated: Sequence[str]) -> list[Character]:
    """Whom a reply is told apart from: the evaluated characters, then every other character
    of `library` (slug -> character) that has training dialogues. Evaluating one character
    alone is then not a race it cannot lose."""
    others = [character for slug, character in sorted(library.items())
              if slug not in evaluated and character.folder is not None
              and (character.folder / DIALOGUES_FILE).is_file()]
    return [*(library[slug] for slug in evaluated), *others]


def profile_embedding(character: Character) -> torch.Tensor:
    """Unit vector for a character: the mean MiniLM embedding of its profile's paragraphs.

    Paragraph by paragraph, because MiniLM reads only the first 256 word pieces of a text.
    """
    chunks = profile_chunks(character.profile_text())
    vectors = embed_texts([chunk.text for chunk in chunks])
    return F.normalize(vectors.mean(0), dim=0)


def training_lines_embedding(character: Character) -> torch.Tensor:
    """Unit vector for a character: the mean MiniLM embedding of its training replies."""
    lines = [turn.text for conversation in load_dialogues(character.folder / DIALOGUES_FILE)
             for turn in conversation.turns if turn.role == "character"]
    if not lines:
        raise ValueError(f"{character.slug} has no training replies to compare with")
    return F.normalize(embed_texts(lines).mean(0), dim=0)


def identify(replies: Sequence[str], profiles: torch.Tensor) -> list[int]:
    """Index of the nearest row of `profiles` (one unit vector per character) for each
    reply; -1 for an empty one."""
    return identify_each(replies, [profiles])[0]


def identify_each(replies: Sequence[str], references: Sequence[torch.Tensor]) -> list[list[int]]:
    """`identify` against each of `references`, embedding the replies once."""
    predicted = [[-1] * len(replies) for _ in references]
    spoken = [k for k, reply in enumerate(replies) if reply.strip()]
    if spoken:
        vectors = embed_texts([replies[k] for k in spoken])
        for row, reference in zip(predicted, references, strict=True):
            for k, index in zip(spoken, (vectors @ reference.T).argmax(-1).tolist(),
                                strict=True):
                row[k] = index
    return predicted

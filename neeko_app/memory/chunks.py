"""Character knowledge as chunks: one-sentence facts, or profile paragraphs and example
lines; and lore entries."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from neeko_app.memory.validation import validate_text

KNOWLEDGE_KINDS = ("fact", "profile", "example", "lore")
MAX_CHUNK_CHARS = 800

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class KnowledgeChunk:
    """One retrievable piece of what a character knows; `kind` is one of KNOWLEDGE_KINDS.
    `questions` are ways a user asks for it: retrieval matches a message against them as
    well as against the text (a question is closer to another question than to the
    statement that answers it)."""

    text: str
    kind: str
    questions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_text(self.text, "knowledge chunk text")
        for question in self.questions:
            validate_text(question, "knowledge chunk question")
        if self.kind not in KNOWLEDGE_KINDS:
            raise ValueError(f"chunk kind must be one of {KNOWLEDGE_KINDS}, got {self.kind!r}")


def profile_chunks(
    profile_markdown: str,
    example_lines: Iterable[str] = (),
    lore: Iterable[str] = (),
    max_chars: int = MAX_CHUNK_CHARS,
) -> list[KnowledgeChunk]:
    """Profile paragraphs (a heading is kept with the paragraph under it), then example lines,
    then lore entries; blank entries are skipped and every chunk has at most `max_chars`."""
    if max_chars < 20:
        raise ValueError(f"max_chars must be at least 20, got {max_chars}")
    chunks = [
        KnowledgeChunk(piece, "profile")
        for paragraph in _profile_paragraphs(profile_markdown)
        for piece in _bounded_pieces(paragraph, max_chars)
    ]
    for kind, entries in (("example", example_lines), ("lore", lore)):
        chunks += [
            KnowledgeChunk(piece, kind)
            for entry in entries
            if entry.strip()
            for piece in _bounded_pieces(entry.strip(), max_chars)
        ]
    return chunks


def _profile_paragraphs(markdown: str) -> list[str]:
    """Paragraphs with heading markers removed; a heading-only paragraph prefixes the next."""
    paragraphs: list[str] = []
    heading = ""
    for block in _PARAGRAPH_BREAK.split(markdown.strip()):
        lines = [line for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        text = "\n".join(_HEADING.sub("", line).strip() for line in lines)
        if all(_HEADING.match(line) for line in lines):
            heading = text
            continue
        paragraphs.append(f"{heading}\n{text}" if heading else text)
        heading = ""
    return paragraphs


def _bounded_pieces(text: str, max_chars: int) -> list[str]:
    """`text` split at sentence ends, else at spaces, else anywhere, into pieces of at most
    `max_chars`, packing neighbouring pieces together while they fit."""
    if len(text) <= max_chars:
        return [text]
    for separator in (_SENTENCE_END, _WHITESPACE):
        parts = [part for part in separator.split(text) if part]
        if len(parts) > 1:
            return _pack([piece for part in parts for piece in _bounded_pieces(part, max_chars)],
                         max_chars)
    return [text[start:start + max_chars] for start in range(0, len(text), max_chars)]


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Join consecutive pieces with a space while the result stays within `max_chars`."""
    packed: list[str] = []
    for piece in pieces:
        if packed and len(packed[-1]) + 1 + len(piece) <= max_chars:
            packed[-1] = f"{packed[-1]} {piece}"
        else:
            packed.append(piece)
    return packed

"""PNG chunk I/O for character cards: the base64 card JSON in `chara` (V2) and `ccv3` (V3) chunks.

Cards travel in a PNG's text chunks (tEXt, zTXt or iTXt) as UTF-8 JSON, then base64. Everything
read here is untrusted: chunk lengths and CRCs are checked, and inflated text is bounded by
MAX_CARD_BYTES. Every problem is reported as a CharacterError.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib

from neeko_app.characters.card import CharacterError

MAX_CARD_BYTES = 8 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CARD_KEYWORDS = ("ccv3", "chara")  # in order of preference


def read_card_json(data: bytes) -> bytes:
    """The card JSON bytes from a PNG's `ccv3` text chunk, else its `chara` chunk."""
    texts = {}
    for kind, body in _read_chunks(data):
        keyword = _text_keyword(kind, body)
        if keyword in CARD_KEYWORDS:
            texts.setdefault(keyword, _text_value(kind, body))
    keyword = next((k for k in CARD_KEYWORDS if k in texts), None)
    if keyword is None:
        raise CharacterError("PNG holds no character card (no 'ccv3' or 'chara' text chunk)")
    try:
        return base64.b64decode(b"".join(texts[keyword].split()), validate=True)
    except (binascii.Error, ValueError):
        raise CharacterError(f"PNG chunk {keyword!r} is not valid base64") from None


def write_card_chunks(image_png: bytes, cards: dict[str, dict]) -> bytes:
    """`image_png` with a tEXt chunk per keyword -> card in `cards`, base64 JSON, before IEND.

    Card chunks already in `image_png` are replaced.
    """
    chunks = [(kind, body) for kind, body in _read_chunks(image_png)
              if _text_keyword(kind, body) not in CARD_KEYWORDS]
    texts = [(b"tEXt", keyword.encode("ascii") + b"\0" + _encode_card(card))
             for keyword, card in cards.items()]
    chunks[-1:-1] = texts  # before IEND
    return PNG_MAGIC + b"".join(_encode_chunk(kind, body) for kind, body in chunks)


def without_text_chunks(data: bytes) -> bytes:
    """`data`, a PNG, without its text chunks (card or other): the picture alone."""
    chunks = [(kind, body) for kind, body in _read_chunks(data)
              if _text_keyword(kind, body) is None]
    return PNG_MAGIC + b"".join(_encode_chunk(kind, body) for kind, body in chunks)


def _read_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk up to IEND, checking lengths and CRCs."""
    if not data.startswith(PNG_MAGIC):
        raise CharacterError("image is not a PNG")
    chunks, pos = [], len(PNG_MAGIC)
    while True:
        if pos + 12 > len(data):
            raise CharacterError("PNG is truncated (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        label = kind.decode("ascii", "replace")
        end = pos + 12 + length
        if end > len(data):
            raise CharacterError(f"PNG is truncated: chunk {label!r} runs past the end of the file")
        body = data[pos + 8:end - 4]
        if zlib.crc32(kind + body) != struct.unpack_from(">I", data, end - 4)[0]:
            raise CharacterError(f"PNG is corrupt: bad CRC in chunk {label!r}")
        chunks.append((kind, body))
        if kind == b"IEND":
            return chunks
        pos = end


def _text_keyword(kind: bytes, body: bytes) -> str | None:
    """The lowercased keyword of a tEXt/zTXt/iTXt chunk, None for other chunks."""
    if kind not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    return body.partition(b"\0")[0].decode("latin-1").lower()


def _text_value(kind: bytes, body: bytes) -> bytes:
    """The text of a tEXt, zTXt or iTXt chunk, inflated if compressed."""
    rest = body.partition(b"\0")[2]
    if kind == b"tEXt":
        return rest
    if kind == b"zTXt":
        return _inflate(rest[1:])
    compressed, rest = rest[:1] == b"\1", rest[2:]  # iTXt: flag, method, language, keyword
    text = rest.split(b"\0", 2)[-1]
    return _inflate(text) if compressed else text


def _inflate(data: bytes) -> bytes:
    """zlib-decompress a text chunk, refusing output over MAX_CARD_BYTES."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CARD_BYTES)
    except zlib.error:
        raise CharacterError("PNG text chunk is not valid compressed data") from None
    if inflater.unconsumed_tail:
        raise CharacterError(f"compressed card is larger than {MAX_CARD_BYTES} bytes")
    return out


def _encode_card(card: dict) -> bytes:
    """Card JSON as UTF-8, base64-encoded (the payload of a card text chunk)."""
    return base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8"))


def _encode_chunk(kind: bytes, body: bytes) -> bytes:
    """One encoded PNG chunk."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

"""A PNG card's own picture as the character's portrait (`characters/<slug>/avatar.png`).

The picture is untrusted: its size is checked from the PNG header before Pillow decodes
anything, only the PNG decoder is used, and the text chunks (the card itself) are dropped
first. The result is re-encoded, at most MAX_SIDE pixels a side, without any metadata.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

from neeko_app.characters.card import CharacterError
from neeko_app.characters.png_chunks import without_text_chunks

AVATAR_FILE = "avatar.png"
MAX_SIDE = 512
MAX_PIXELS = 4096 * 4096


def card_portrait(card_png: bytes) -> bytes:
    """The picture of the PNG card `card_png`, scaled down to fit MAX_SIDE x MAX_SIDE, as a
    PNG; CharacterError when it is too large or cannot be decoded."""
    picture = without_text_chunks(card_png)
    width, height = _header_size(picture)
    if width * height > MAX_PIXELS:
        raise CharacterError(f"the card's picture is {width}×{height} pixels; pictures of up to "
                             f"{MAX_PIXELS / 1e6:.1f} megapixels are used")
    try:
        with Image.open(io.BytesIO(picture), formats=["PNG"]) as image:
            image.load()
            portrait = image.convert("RGBA")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise CharacterError(f"the card's picture cannot be read ({err})") from None
    if portrait.getchannel("A").getextrema() == (255, 255):  # opaque: a smaller file
        portrait = portrait.convert("RGB")
    portrait.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    portrait.save(buffer, format="PNG")
    return buffer.getvalue()


def _header_size(picture: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which must come first."""
    if picture[12:16] != b"IHDR" or len(picture) < 24:
        raise CharacterError("the card's picture cannot be read (no PNG header chunk)")
    return struct.unpack(">II", picture[16:24])

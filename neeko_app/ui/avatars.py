"""Character portraits: a character's own picture, else a monogram (its initials on a
circle coloured from its id).

A character's own picture is `avatar.png` in its folder (an imported card's picture); the
web app serves a copy from its data folder. Shipped characters have monograms in
`assets/avatars/<slug>.png` (regenerate with `python -m neeko_app.ui.avatars`); any other
character gets one generated on first use into the app's data folder.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import logging
import re
import sys
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from neeko_app.characters.card import Character
from neeko_app.characters.png_chunks import PNG_MAGIC
from neeko_app.characters.portrait import AVATAR_FILE
from neeko_app.characters.registry import discover_characters
from neeko_app.config import PROJECT_ROOT
from neeko_app.storage import atomic_write_bytes

log = logging.getLogger(__name__)

SHIPPED_AVATARS = PROJECT_ROOT / "assets" / "avatars"
MAX_AVATAR_BYTES = 4 * 2**20  # a larger avatar.png is not served (ours are far smaller)
SIZE = 256
_SUPERSAMPLE = 4  # draw large, then shrink: smooth edges without an antialiasing API
_ROMAN_NUMERAL = re.compile(r"[IVXLCDM]+")
_SUFFIXES = frozenset({"Jr", "Sr"})


def initials(name: str) -> str:
    """Up to two capitals: first and last name ("Isaac Newton" -> "IN"), skipping regnal
    numbers and suffixes ("Cleopatra VII" -> "C"); "?" when the name has no Latin letter."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", ascii_name)
             if w not in _SUFFIXES and not _ROMAN_NUMERAL.fullmatch(w)]
    capitalised = [w for w in words if w[0].isupper()] or words
    if not capitalised:
        return "?"
    first, last = capitalised[0], capitalised[-1]
    return (first[0] + (last[0] if len(capitalised) > 1 else "")).upper()


def colour(slug: str) -> tuple[int, int, int]:
    """A muted colour that depends only on the character's id."""
    hue = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:2], "big") / 65536
    red, green, blue = colorsys.hls_to_rgb(hue, 0.42, 0.45)
    return round(red * 255), round(green * 255), round(blue * 255)


def monogram_png(name: str, slug: str, size: int = SIZE) -> bytes:
    """A square PNG: `initials(name)` in white on a circle of `colour(slug)`, transparent
    around it."""
    big = size * _SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0, 0, big - 1, big - 1), fill=colour(slug))
    letters = initials(name)
    font = ImageFont.load_default(size=int(big * (0.56 if len(letters) == 1 else 0.44)))
    draw.text((big / 2, big / 2), letters, fill="white", font=font, anchor="mm",
              stroke_width=big // 80, stroke_fill="white")  # the stroke makes it bold
    buffer = io.BytesIO()
    image.resize((size, size), Image.Resampling.LANCZOS).save(buffer, format="PNG")
    return buffer.getvalue()


def avatar_path(character: Character, data_dir: Path) -> Path:
    """The character's portrait: its own picture, else the shipped monogram, else one
    generated into `data_dir/avatars`."""
    own = own_avatar(character, data_dir)
    if own is not None:
        return own
    shipped = SHIPPED_AVATARS / f"{character.slug}.png"
    if shipped.is_file():
        return shipped
    generated = data_dir / "avatars" / f"{character.slug}.png"
    if not generated.is_file():
        atomic_write_bytes(generated, monogram_png(character.name, character.slug))
    return generated


def own_avatar(character: Character, data_dir: Path) -> Path | None:
    """A servable copy of the character's `avatar.png` in `data_dir/avatars`, named by its
    content (a changed picture gets a new name, never an old cached one); None when the
    character has none, or it is not a PNG of at most MAX_AVATAR_BYTES."""
    source = character.folder / AVATAR_FILE if character.folder else None
    if source is None or not source.is_file():
        return None
    if source.stat().st_size > MAX_AVATAR_BYTES:
        log.warning("%s is over %d bytes; a monogram is shown instead", source, MAX_AVATAR_BYTES)
        return None
    data = source.read_bytes()
    if not data.startswith(PNG_MAGIC):
        log.warning("%s is not a PNG; a monogram is shown instead", source)
        return None
    digest = hashlib.sha256(data).hexdigest()[:16]
    served = data_dir / "avatars" / f"{character.slug}-{digest}.png"
    if not served.is_file():
        atomic_write_bytes(served, data)
    return served


def write_avatars(characters_dir: Path, out_dir: Path) -> list[Path]:
    """Write `out_dir/<slug>.png` for every valid character in `characters_dir`."""
    written = []
    for slug, character in discover_characters(characters_dir).characters.items():
        atomic_write_bytes(out_dir / f"{slug}.png", monogram_png(character.name, slug))
        written.append(out_dir / f"{slug}.png")
    return written


if __name__ == "__main__":
    args = sys.argv[1:] or [str(PROJECT_ROOT / "characters"), str(SHIPPED_AVATARS)]
    for path in write_avatars(Path(args[0]), Path(args[1])):
        print(path)

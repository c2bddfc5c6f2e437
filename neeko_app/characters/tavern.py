"""Tavern character cards (V1, chara_card_v2, chara_card_v3; JSON or PNG) to and from Character.

SillyTavern, RisuAI and the character hubs exchange cards as JSON files or as PNG images whose
`tEXt` chunk `chara` (V2) or `ccv3` (V3) holds the card JSON (the chunks are png_chunks' job).
This module maps card fields and lorebooks to and from Character. Everything read here is
untrusted: sizes, nesting and field lengths are bounded, and every problem is reported as a
CharacterError naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from neeko_app.characters.card import (
    MAX_FIELD_CHARS,
    RESERVED_SLUGS,
    Character,
    CharacterError,
    character_from_dict,
    validate_slug,
)
from neeko_app.characters.card_text import (
    attribute,
    example_dialogues,
    example_lines,
    first_sentence,
    replace_macros,
    split_examples,
    summary_line,
)
from neeko_app.characters.png_chunks import (
    MAX_CARD_BYTES,
    PNG_MAGIC,
    read_card_json,
    write_card_chunks,
)
from neeko_app.characters.portrait import card_portrait

MAX_JSON_DEPTH = 64
SPECS = ("chara_card_v2", "chara_card_v3")
V1_SPEC = "chara_card_v1"  # what we call a card without `spec`
NEEKO_EXTENSION = "neeko"
NEEKO_FIELDS = ("slug", "speaking_style", "era", "knowledge_limits", "licence")
IGNORED_FIELDS = ("system_prompt", "post_history_instructions")

_TRANSLIT = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe",
                           "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th",
                           "Þ": "TH", "ı": "i"})


@dataclass(frozen=True)
class LoreEntry:
    """One lorebook entry: text to bring in when one of `keys` comes up in the chat."""

    keys: tuple[str, ...]
    content: str
    name: str = ""


@dataclass
class ParsedCard:
    """An imported card: the Character plus what `character.json` has no field for.

    `profile` is the card's description without its example blocks ('' when it says no more
    than the one-line description); `dialogues` are its example chats as dialogues.jsonl
    records; `portrait` is the picture of a PNG card, ready to be the avatar.
    """

    character: Character
    spec: str
    profile: str = ""
    dialogues: list[dict] = field(default_factory=list)
    portrait: bytes | None = None
    lorebook: list[LoreEntry] = field(default_factory=list)
    alternate_greetings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- import ---------------------------------------------------------------------------------


def parse_card_bytes(data: bytes, filename: str) -> ParsedCard:
    """Parse a Tavern card file (JSON or PNG, told apart by magic bytes); CharacterError if bad."""
    try:
        if len(data) > MAX_CARD_BYTES:
            raise CharacterError(
                f"file is too large ({len(data)} bytes; a card may have at most {MAX_CARD_BYTES})")
        card = _load_json(_card_payload(bytes(data)))
        spec, fields = _card_fields(card)
        parsed = _build(spec, fields)
    except CharacterError as err:
        raise CharacterError(f"{filename}: {err}") from None
    if data.startswith(PNG_MAGIC):
        try:
            parsed.portrait = card_portrait(bytes(data))
        except CharacterError as err:
            parsed.warnings.append(f"{err}; the character gets a lettered circle instead")
    return parsed


def slugify(name: str) -> str:
    """A valid character id from `name`: transliterated to ASCII, never a path.

    Names with no Latin letters (emoji, Arabic, Japanese...) get `char-` and a short hash.
    """
    ascii_name = unicodedata.normalize("NFKD", name.translate(_TRANSLIT))
    ascii_name = ascii_name.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")
    if not slug:
        slug = "char-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    elif not slug[0].isalpha():
        slug = "char-" + slug
    slug = slug[:40].rstrip("-")
    return validate_slug(f"{slug}-character" if slug in RESERVED_SLUGS else slug)


def _card_payload(data: bytes) -> bytes:
    """The card JSON bytes: the file itself, or the card chunk of a PNG."""
    if data.startswith(PNG_MAGIC):
        return read_card_json(data)
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return data
    raise CharacterError("not a character card: expected a PNG image or a JSON file")


def _load_json(raw: bytes) -> dict:
    """Decode UTF-8 JSON, refusing nesting bombs and anything but an object."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CharacterError(f"card is not valid UTF-8 (bad byte at offset {err.start})") from None
    try:
        card = json.loads(text)
    except RecursionError:
        raise CharacterError(f"card JSON is nested too deeply (limit {MAX_JSON_DEPTH})") from None
    except ValueError as err:
        raise CharacterError(f"card is not valid JSON: {err}") from None
    _check_depth(card)
    if not isinstance(card, dict):
        raise CharacterError("card JSON must be an object")
    return card


def _check_depth(value: object) -> None:
    """CharacterError if lists/objects nest deeper than MAX_JSON_DEPTH (iterative walk)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise CharacterError(f"card JSON is nested too deeply (limit {MAX_JSON_DEPTH})")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _card_fields(card: dict) -> tuple[str, dict]:
    """The spec name and the object holding the card fields (`data` for V2/V3, root for V1)."""
    spec = card.get("spec")
    if spec is None:
        return V1_SPEC, card
    if spec not in SPECS:
        raise CharacterError(f"unknown card spec {spec!r}: expected one of {', '.join(SPECS)}")
    data = card.get("data")
    if not isinstance(data, dict):
        raise CharacterError(f"{spec} card has no 'data' object")
    return spec, data


def _build(spec: str, fields: dict) -> ParsedCard:
    """Map card fields onto a Character, filling what the card lacks (noted in warnings).

    A foreign card's description becomes the profile, and the Character's description a
    line derived from it (card_text.summary_line); a card we exported keeps its description.
    """
    name = " ".join(_text(fields, "name").split())
    if not name:
        raise CharacterError("card has no name")
    shown = _text(fields, "nickname") or name  # V3: {{char}} stands for the nickname if given
    warnings: list[str] = []
    alternates = [replace_macros(g, shown) for g in _strings(fields, "alternate_greetings")]
    prose, examples = split_examples(_text(fields, "description"), name)
    examples += "\n<START>\n" + _text(fields, "mes_example")
    profile = replace_macros(prose, shown)
    personality = replace_macros(_text(fields, "personality"), shown)
    scenario = attribute(profile, "scenario")  # W++/PList cards may give it in the description
    extras = _neeko_extras(fields)
    description = profile if extras is not None else summary_line(
        [name, shown], replace_macros(_text(fields, "creator_notes"), shown), profile,
        personality)
    record = {
        "name": name,
        "description": description,
        "personality": personality,
        "scenario": replace_macros(_text(fields, "scenario"), shown) or scenario,
        "greeting": replace_macros(_text(fields, "first_mes"), shown),
        "example_lines": [replace_macros(line, shown) for line in example_lines(examples, name)],
        "tags": _strings(fields, "tags"),
        "source": _source(spec, _text(fields, "creator")),
        **(extras or {}),
    }
    record["slug"] = _slug(record.pop("slug", ""), name, warnings)
    _fill_defaults(record, alternates, warnings)
    warnings += [f"{key} is not imported" for key in IGNORED_FIELDS if _text(fields, key)]
    return ParsedCard(character=character_from_dict(record), spec=spec,
                      profile="" if profile == description else profile,
                      dialogues=example_dialogues(examples, name, shown),
                      lorebook=_lorebook(fields, shown), alternate_greetings=alternates,
                      warnings=warnings)


def _text(obj: dict, key: str, where: str = "") -> str:
    """A text field ('' if absent or null), with line ends normalised and length bounded."""
    label = f"{where}.{key}" if where else key
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CharacterError(f"field {label!r} must be text, not {type(value).__name__}")
    return _bounded(value, label)


def _strings(obj: dict, key: str, where: str = "") -> list[str]:
    """A list-of-text field, stripped, without empties or duplicates."""
    label = f"{where}.{key}" if where else key
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CharacterError(f"field {label!r} must be a list of strings")
    cleaned = (_bounded(v, f"{label}[{i}]") for i, v in enumerate(value))
    return list(dict.fromkeys(v for v in cleaned if v))


def _bounded(value: str, label: str) -> str:
    """`value` stripped with line ends normalised; CharacterError if over MAX_FIELD_CHARS."""
    if len(value) > MAX_FIELD_CHARS:
        raise CharacterError(
            f"field {label!r} is too long ({len(value)} characters; at most {MAX_FIELD_CHARS})")
    return value.replace("\r\n", "\n").strip()


def _source(spec: str, creator: str) -> str:
    """Where an imported character comes from."""
    source = f"Imported from a Tavern card (spec {spec})"
    return f"{source}, by {creator}" if creator else source


def _neeko_extras(fields: dict) -> dict[str, str] | None:
    """Our own fields, kept in `extensions.neeko` by card_to_json; None for a foreign card."""
    extensions = fields.get("extensions")
    extras = extensions.get(NEEKO_EXTENSION) if isinstance(extensions, dict) else None
    if not isinstance(extras, dict):
        return None
    where = f"extensions.{NEEKO_EXTENSION}"
    return {key: _text(extras, key, where) for key in NEEKO_FIELDS if extras.get(key)}


def _slug(stored: str, name: str, warnings: list[str]) -> str:
    """The slug stored in the card if it is valid, else one made from the name."""
    if stored:
        try:
            return validate_slug(stored)
        except CharacterError:
            warnings.append(f"stored id {stored!r} is invalid; made one from the name")
    return slugify(name)


def _fill_defaults(record: dict, alternates: list[str], warnings: list[str]) -> None:
    """Fill description/personality/scenario/greeting the card left empty; warn for each."""
    name = record["name"]
    if not record["description"]:
        record["description"] = f"{name}, imported from a Tavern card without a description."
        warnings.append("description was missing; filled with a default")
    summary = first_sentence(record["description"], limit=200)
    defaults = {
        "personality": f"{name} acts as described: {summary}",
        "scenario": f"You are talking with {name}. {summary}",
        "greeting": alternates[0] if alternates else f"Hello, I am {name}.",
    }
    for key, default in defaults.items():
        if not record[key]:
            record[key] = default
            warnings.append(f"{key} was missing; filled with a default")


def _lorebook(fields: dict, name: str) -> list[LoreEntry]:
    """The enabled, non-empty entries of `character_book`."""
    book = fields.get("character_book")
    if book is None:
        return []
    if not isinstance(book, dict) or not isinstance(book.get("entries"), list):
        raise CharacterError("character_book must be an object with a list of entries")
    entries = []
    for i, entry in enumerate(book["entries"]):
        where = f"character_book.entries[{i}]"
        if not isinstance(entry, dict):
            raise CharacterError(f"{where} must be an object")
        content = replace_macros(_text(entry, "content", where), name)
        if entry.get("enabled") is False or not content:
            continue
        title = _text(entry, "name", where) or _text(entry, "comment", where)
        entries.append(LoreEntry(tuple(_strings(entry, "keys", where)), content, title))
    return entries


# --- export ---------------------------------------------------------------------------------


def card_to_json(character: Character, lorebook: Iterable[LoreEntry] = ()) -> dict:
    """`character` as a chara_card_v2 card; our extra fields go to `extensions.neeko`."""
    return {"spec": "chara_card_v2", "spec_version": "2.0",
            "data": _card_data(character, list(lorebook))}


def card_to_v3_json(character: Character, lorebook: Iterable[LoreEntry] = ()) -> dict:
    """`character` as a chara_card_v3 card (the V2 fields plus the V3 additions)."""
    data = _card_data(character, list(lorebook))
    data.update(nickname="", group_only_greetings=[],
                assets=[{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}])
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def card_to_png(character: Character, image_png: bytes | None = None,
                lorebook: Iterable[LoreEntry] = ()) -> bytes:
    """A PNG card: `image_png` (or a generated monogram) with `chara` (V2) and `ccv3` chunks.

    Card chunks already in `image_png` are replaced.
    """
    lorebook = list(lorebook)
    cards = {"chara": card_to_json(character, lorebook),
             "ccv3": card_to_v3_json(character, lorebook)}
    return write_card_chunks(image_png or _monogram(character), cards)


def _card_data(character: Character, lorebook: list[LoreEntry]) -> dict:
    """The `data` object shared by V2 and V3 cards."""
    data = {
        "name": character.name,
        "description": character.description,
        "personality": character.personality,
        "scenario": character.scenario,
        "first_mes": character.greeting,
        "mes_example": "\n".join(f"<START>\n{{{{char}}}}: {line}"
                                 for line in character.example_lines),
        "creator_notes": character.source,
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": [],
        "tags": list(character.tags),
        "creator": "",
        "character_version": "",
        "extensions": {NEEKO_EXTENSION: {key: getattr(character, key) for key in NEEKO_FIELDS}},
    }
    if lorebook:
        data["character_book"] = _character_book(character.name, lorebook)
    return data


def _character_book(name: str, lorebook: list[LoreEntry]) -> dict:
    """A `character_book` object (valid for V2 and V3) from our entries."""
    entries = [{"keys": list(entry.keys), "content": entry.content, "extensions": {},
                "enabled": True, "insertion_order": i, "use_regex": False, "id": i,
                "name": entry.name, "comment": entry.name}
               for i, entry in enumerate(lorebook)]
    return {"name": f"{name} lorebook", "entries": entries, "extensions": {}}


def _monogram(character: Character) -> bytes:
    """A 256x256 PNG with the character's initial on a colour derived from its id."""
    from PIL import Image, ImageColor, ImageDraw, ImageFont  # only needed for exports

    hue = zlib.crc32(character.slug.encode("ascii")) % 360
    image = Image.new("RGB", (256, 256), ImageColor.getrgb(f"hsl({hue}, 45%, 35%)"))
    font = ImageFont.load_default(size=160)
    ImageDraw.Draw(image).text((128, 128), character.slug[0].upper(), fill="white", font=font,
                               anchor="mm")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

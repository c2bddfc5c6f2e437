"""Tavern card import/export: V1/V2/V3 JSON, PNG chunks, lorebooks, macros, hostile files."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from neeko_app.characters.card import CharacterError, load_character, validate_slug
from neeko_app.characters.png_chunks import MAX_CARD_BYTES
from neeko_app.characters.tavern import (
    MAX_FIELD_CHARS,
    MAX_JSON_DEPTH,
    LoreEntry,
    card_to_json,
    card_to_png,
    parse_card_bytes,
    slugify,
)

NEWTON = Path(__file__).resolve().parents[1] / "characters" / "newton"

FIELDS = {
    "name": "Mira",
    "description": "A lighthouse keeper on a storm-beaten island. She keeps a logbook.",
    "personality": "Calm, wry, stubborn.",
    "scenario": "{{char}} finds {{user}} on the shore of {{char}}'s island.",
    "first_mes": "*{{char}} lowers her lantern.* {{user}}? You're soaked.",
    "mes_example": "<START>\n{{user}}: Hello?\n{{char}}: The sea brought you.\n"
                   "<START>\n{{char}}: Tea first.\nQuestions later.",
}


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(*extra: bytes) -> bytes:
    """A 1x1 PNG with `extra` chunks before IEND."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"".join(extra) + chunk(b"IEND", b"")


def b64(card: dict) -> bytes:
    return base64.b64encode(json.dumps(card).encode("utf-8"))


def text_chunk(keyword: str, card: dict) -> bytes:
    return chunk(b"tEXt", keyword.encode() + b"\0" + b64(card))


def v2(**fields) -> dict:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {**FIELDS, **fields}}


def v3(**fields) -> dict:
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": {**FIELDS, **fields}}


def parse_json(card: object, filename: str = "card.json"):
    return parse_card_bytes(json.dumps(card).encode("utf-8"), filename)


# --- formats ---------------------------------------------------------------------------------


def test_v1_card_has_fields_at_top_level():
    parsed = parse_json(dict(FIELDS))
    c = parsed.character
    assert parsed.spec == "chara_card_v1"
    assert (c.name, c.slug) == ("Mira", "mira")
    assert c.description == FIELDS["description"]
    assert c.personality == "Calm, wry, stubborn."
    assert c.scenario == "Mira finds you on the shore of Mira's island."
    assert c.greeting == "*Mira lowers her lantern.* You? You're soaked."
    assert c.example_lines == ("The sea brought you.", "Tea first. Questions later.")
    assert c.source == "Imported from a Tavern card (spec chara_card_v1)"
    assert parsed.warnings == [] and parsed.lorebook == []


def test_v2_card_reads_data_tags_creator_and_alternate_greetings():
    card = v2(tags=["fantasy", " sea ", "fantasy", ""], creator="anon",
              alternate_greetings=["{{char}} waves.", "Storm's coming."])
    card["name"] = "Root name is ignored"
    parsed = parse_json(card)
    c = parsed.character
    assert parsed.spec == "chara_card_v2"
    assert c.name == "Mira"
    assert c.tags == ("fantasy", "sea")
    assert c.source == "Imported from a Tavern card (spec chara_card_v2), by anon"
    assert parsed.alternate_greetings == ["Mira waves.", "Storm's coming."]


def test_v3_card_uses_the_nickname_for_char_macros():
    parsed = parse_json(v3(name="Mirabel Storrow", nickname="Mira",
                           group_only_greetings=["Hi all."], assets=[], creation_date=0))
    assert parsed.spec == "chara_card_v3"
    assert parsed.character.name == "Mirabel Storrow"
    assert parsed.character.slug == "mirabel-storrow"
    assert parsed.character.greeting.startswith("*Mira lowers")


def test_png_with_chara_chunk():
    parsed = parse_card_bytes(png(text_chunk("chara", v2())), "mira.png")
    assert parsed.spec == "chara_card_v2"
    assert parsed.character.name == "Mira"


def test_png_with_ccv3_chunk():
    parsed = parse_card_bytes(png(text_chunk("ccv3", v3())), "mira.png")
    assert parsed.spec == "chara_card_v3"
    assert parsed.character.name == "Mira"


def test_png_with_both_chunks_prefers_ccv3():
    data = png(text_chunk("chara", v2(name="Old Mira")), text_chunk("ccv3", v3(name="New Mira")))
    parsed = parse_card_bytes(data, "mira.png")
    assert (parsed.spec, parsed.character.name) == ("chara_card_v3", "New Mira")


@pytest.mark.parametrize(("kind", "body"), [
    (b"zTXt", b"chara\0\0" + zlib.compress(b64(v2()))),
    (b"iTXt", b"chara\0\0\0en\0\0" + b64(v2())),
    (b"iTXt", b"chara\0\1\0\0\0" + zlib.compress(b64(v2()))),
], ids=["zTXt", "iTXt", "iTXt-compressed"])
def test_compressed_and_international_text_chunks(kind, body):
    parsed = parse_card_bytes(png(chunk(kind, body)), "mira.png")
    assert parsed.character.name == "Mira"


def test_lorebook_entries_are_imported():
    book = {"entries": [
        {"keys": ["lamp", "lantern"], "content": "{{char}}'s lamp burns whale oil.",
         "name": "Lamp", "enabled": True, "insertion_order": 0, "extensions": {}},
        {"keys": ["wreck"], "content": "The Albatross sank in 1891.", "comment": "Wreck",
         "enabled": True, "insertion_order": 1, "extensions": {}},
        {"keys": ["secret"], "content": "Hidden.", "enabled": False},
        {"keys": ["empty"], "content": "  "},
    ]}
    parsed = parse_json(v2(character_book=book))
    assert parsed.lorebook == [
        LoreEntry(("lamp", "lantern"), "Mira's lamp burns whale oil.", "Lamp"),
        LoreEntry(("wreck",), "The Albatross sank in 1891.", "Wreck"),
    ]


def test_macros_are_replaced():
    parsed = parse_json(v2(
        description="<BOT> meets <USER>. {{user}}'s boat is gone; {{ Char }} helps {{user}}.",
        personality="{{char}}'s temper is short.",
    ))
    assert parsed.character.description == (
        "Mira meets you. Your boat is gone; Mira helps you.")
    assert parsed.character.personality == "Mira's temper is short."


def test_example_lines_from_blocks_names_and_untagged_text():
    mes = ("<START>\nMira: By name.\n{{User}}: skipped\n<start>\nA whole untagged block\n"
           "over two lines.\n<START>\n<BOT>: Bot tag.\n<USER>: skipped\n{{char}}:\n")
    assert parse_json(v2(mes_example=mes)).character.example_lines == (
        "By name.", "A whole untagged block over two lines.", "Bot tag.")


def test_missing_personality_and_scenario_are_filled_and_warned():
    parsed = parse_json({"name": "Mira", "description": FIELDS["description"],
                         "first_mes": "Hello."})
    c = parsed.character
    assert "A lighthouse keeper on a storm-beaten island." in c.personality
    assert "logbook" not in c.personality
    assert "Mira" in c.scenario
    assert parsed.warnings == ["personality was missing; filled with a default",
                               "scenario was missing; filled with a default"]


def test_missing_greeting_uses_first_alternate_and_missing_description_is_filled():
    parsed = parse_json({"name": "Mira", "alternate_greetings": ["Ahoy."]})
    assert parsed.character.greeting == "Ahoy."
    assert parsed.character.description
    assert [w.split()[0] for w in parsed.warnings] == [
        "description", "personality", "scenario", "greeting"]


def test_system_prompt_is_reported_as_not_imported():
    parsed = parse_json(v2(system_prompt="Be Mira.", post_history_instructions=""))
    assert parsed.warnings == ["system_prompt is not imported"]


# --- export and round trip -------------------------------------------------------------------


def test_png_round_trip_keeps_every_field():
    newton = load_character(NEWTON)
    lore = [LoreEntry(("prism", "light"), "Newton split white light with a prism.", "Optics")]
    data = card_to_png(newton, lorebook=lore)
    parsed = parse_card_bytes(data, "newton.png")
    assert parsed.spec == "chara_card_v3"
    assert parsed.character == dataclasses.replace(newton, source=parsed.character.source)
    assert parsed.lorebook == lore
    assert parsed.warnings == []
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (256, 256)
        assert image.text["chara"] and image.text["ccv3"]


def test_json_export_is_a_v2_card_that_round_trips():
    newton = load_character(NEWTON)
    card = card_to_json(newton)
    assert card["spec"] == "chara_card_v2"
    assert card["data"]["first_mes"] == newton.greeting
    assert card["data"]["mes_example"].count("<START>\n{{char}}: ") == len(newton.example_lines)
    parsed = parse_json(card)
    assert parsed.character == dataclasses.replace(newton, source=parsed.character.source)


def test_export_into_a_given_image_replaces_old_card_chunks():
    newton = load_character(NEWTON)
    source = png(text_chunk("chara", v2()), text_chunk("ccv3", v3()))
    data = card_to_png(newton, image_png=source)
    assert zlib.compress(b"\x00\xff\x00\x00") in data  # the image data is kept
    assert data.count(b"tEXtchara\0") == 1 and data.count(b"tEXtccv3\0") == 1
    assert parse_card_bytes(data, "newton.png").character.name == "Isaac Newton"
    with pytest.raises(CharacterError, match="not a PNG"):
        card_to_png(newton, image_png=b"GIF89a")


# --- slugs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "slug"), [
    ("../../etc/passwd", "etc-passwd"),
    ("Émile Zola", "emile-zola"),
    ("Straße Ærø", "strasse-aero"),
    ("2B", "char-2b"),
    ("🐱 Neko-chan!", "neko-chan"),
    ("A" * 60, "a" * 40),
])
def test_slugify_makes_safe_ids(name, slug):
    assert slugify(name) == slug


@pytest.mark.parametrize("name", ["🐱🐶", "ليلى", "初音ミク", "\u202eevil"])
def test_names_without_latin_letters_get_a_valid_hashed_slug(name):
    slug = slugify(name)
    assert validate_slug(slug) == slug
    assert slug.startswith("char-") or slug == "evil"
    assert slugify(name) == slug


def test_path_like_name_and_stored_slug_never_become_paths():
    card = v2(name="../../etc/passwd", extensions={"neeko": {"slug": "../x"}})
    parsed = parse_json(card)
    assert parsed.character.slug == "etc-passwd"
    assert parsed.character.name == "../../etc/passwd"
    assert parsed.warnings == ["stored id '../x' is invalid; made one from the name"]


# --- errors ----------------------------------------------------------------------------------


def error(data: bytes, filename: str = "bad.card") -> str:
    with pytest.raises(CharacterError) as info:
        parse_card_bytes(data, filename)
    return str(info.value)


@pytest.mark.parametrize("data", [b"\xff\xd8\xff\xe0JFIF", b"name: Mira", b""])
def test_wrong_file_type(data):
    assert error(data) == "bad.card: not a character card: expected a PNG image or a JSON file"


def test_truncated_png():
    data = png(text_chunk("chara", v2()))
    assert "runs past the end" in error(data[:len(data) // 2])
    assert "no IEND" in error(data[:-12])


def test_png_with_bad_crc():
    data = bytearray(png(text_chunk("chara", v2())))
    data[data.index(b"tEXt") + 10] ^= 0xFF
    assert "bad CRC in chunk 'tEXt'" in error(bytes(data))


def test_png_without_card():
    assert "no character card" in error(png(chunk(b"tEXt", b"Comment\0hello")))


def test_png_with_invalid_base64():
    assert "'chara' is not valid base64" in error(png(chunk(b"tEXt", b"chara\0not*base64!")))


def test_png_with_compressed_bomb():
    body = b"chara\0\0" + zlib.compress(b"A" * (MAX_CARD_BYTES + 1))
    assert "larger than" in error(png(chunk(b"zTXt", body)))


def test_non_utf8_and_invalid_json():
    assert "not valid UTF-8" in error(b'{"name": "Mira\xff"}')
    assert "not valid JSON" in error(b'{"name": "Mira",}')
    b64_latin1 = base64.b64encode(b'{"name": "\xe9"}')
    assert "not valid UTF-8" in error(png(chunk(b"tEXt", b"chara\0" + b64_latin1)))


def test_wrong_spec_and_missing_data():
    assert "unknown card spec 'chara_card_v9'" in error(
        json.dumps({**v2(), "spec": "chara_card_v9"}).encode())
    assert "has no 'data' object" in error(json.dumps({"spec": "chara_card_v2"}).encode())


def test_missing_name():
    assert error(json.dumps(v2(name="  ")).encode()) == "bad.card: card has no name"
    assert "card has no name" in error(json.dumps({"description": "x"}).encode())


def test_card_json_must_be_an_object():
    assert "must be an object" in error(b"[1, 2, 3]")
    assert "must be an object" in error(png(chunk(b"tEXt", b"chara\0" + base64.b64encode(b"7"))))


def test_file_over_the_size_limit_is_refused_before_parsing():
    assert "too large" in error(b"\0" * (9 * 1024 * 1024))
    assert "too large" in error(b"{" + b" " * MAX_CARD_BYTES + b"}")


def test_deeply_nested_json_is_refused():
    bomb = b'{"name": "Mira", "extensions": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    assert "nested too deeply" in error(bomb)
    deep = {"name": "Mira"}
    for _ in range(MAX_JSON_DEPTH):
        deep = {"x": deep}
    assert "nested too deeply" in error(json.dumps(deep).encode())


def test_overlong_text_field_is_named():
    message = error(json.dumps(v2(personality="x" * (MAX_FIELD_CHARS + 1))).encode())
    assert "field 'personality' is too long" in message
    lore = {"entries": [{"keys": ["k"], "content": "y" * (MAX_FIELD_CHARS + 1)}]}
    assert "'character_book.entries[0].content' is too long" in error(
        json.dumps(v2(character_book=lore)).encode())


@pytest.mark.parametrize(("fields", "message"), [
    ({"tags": "fantasy"}, "field 'tags' must be a list of strings"),
    ({"first_mes": 3}, "field 'first_mes' must be text, not int"),
    ({"character_book": {"entries": {}}}, "character_book must be an object"),
    ({"name": "M" * 101}, "name is too long"),
])
def test_malformed_fields(fields, message):
    assert message in error(json.dumps(v2(**fields)).encode())

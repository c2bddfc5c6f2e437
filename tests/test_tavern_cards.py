"""Tavern card import/export: V1/V2/V3 JSON, PNG chunks, lorebooks, macros, hostile files;
cards shaped like real ones (W++ descriptions, `<START>` examples, creator notes, a picture)."""

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
from neeko_app.characters.card_text import MAX_SUMMARY_CHARS
from neeko_app.characters.png_chunks import MAX_CARD_BYTES, write_card_chunks
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


# A card shaped like SillyTavern's bundled ones: W++ attributes, sample chat after <START>
# inside the description, a PList line with the scenario, mes_example, creator notes about
# the card (not the character), a lorebook.
FERRYMAN = {
    "name": "Corvin Ashdown",
    "description": (
        '[{{char}}\'s Personality= "patient", "dry-humoured", "superstitious", "loyal", '
        '"patient"]\r\n'
        '[{{char}}\'s body= "grey beard", "oilskin coat", "one silver earring"]\r\n'
        "<START>\r\n"
        '{{user}}: "Why do you never cross at night?"\r\n'
        '{{char}}: *{{char}} taps the lantern hook.* "The river keeps its own hours, '
        'and I keep mine."\r\n'
        '{{user}}: "And if I paid double?"\r\n'
        '{{char}}: "Then you would be a rich fool on the wrong bank."\r\n'
        "[Genre: folk tale; Scenario: Dusk at the ferry landing, the last crossing of the day "
        "on the river Marrow.]"),
    "personality": "",
    "scenario": "",
    "first_mes": "*The ferry bumps the landing.* Evening, {{user}}. Crossing, or looking?",
    "mes_example": ("<START>\n{{char}}: *He coils a rope.* Fare's a copper.\n"
                    "{{user}}: Only a copper?\n{{char}}: And a story, if you have one.\n"),
    "creator_notes": "Made for a folk-tale jam. Slow burn; best with long replies.",
    "tags": ["folk tale"],
    "creator": "a tester",
    "character_book": {"entries": [
        {"keys": ["marrow", "river"], "comment": "river", "enabled": True,
         "content": "The Marrow floods every spring and once carried a whole mill away."}]},
}
FERRYMAN_TRAITS = "patient, dry-humoured, superstitious, loyal"


def ferryman(**fields) -> dict:
    """The ferryman's V3 card, with `fields` replacing his."""
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": {**FERRYMAN, **fields}}


def picture(width: int = 600, height: int = 900) -> bytes:
    """A PNG picture with a gradient (not one flat colour)."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def card_png(card: dict, image: bytes | None = None) -> bytes:
    """`card` in the ccv3 chunk of `image` (default: a 600x900 picture)."""
    return write_card_chunks(image or picture(), {"ccv3": card})


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
    assert c.description == "A lighthouse keeper on a storm-beaten island."
    assert parsed.profile == FIELDS["description"]
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
    assert parsed.profile == "Mira meets you. Your boat is gone; Mira helps you."
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


# --- cards shaped like real ones -------------------------------------------------------------


def test_the_description_becomes_the_profile_without_its_examples():
    parsed = parse_card_bytes(card_png(ferryman()), "corvin.png")
    c = parsed.character
    assert c.description == FERRYMAN_TRAITS  # the creator notes do not name him
    assert parsed.profile.startswith('[Corvin Ashdown\'s Personality= "patient"')
    assert parsed.profile.endswith("on the river Marrow.]")
    assert "<START>" not in parsed.profile and "rich fool" not in parsed.profile
    assert "\r" not in parsed.profile
    assert c.scenario == ("Dusk at the ferry landing, the last crossing of the day on the "
                          "river Marrow.")
    assert c.greeting == "*The ferry bumps the landing.* Evening, you. Crossing, or looking?"
    assert parsed.lorebook[0].keys == ("marrow", "river")
    assert parsed.warnings == ["personality was missing; filled with a default"]


def test_start_blocks_become_example_dialogues_and_lines():
    parsed = parse_json(ferryman())
    assert parsed.dialogues == [
        {"id": "card-0001", "turns": [
            {"role": "user", "text": '"Why do you never cross at night?"'},
            {"role": "character", "text": '*Corvin Ashdown taps the lantern hook.* "The river '
                                          'keeps its own hours, and I keep mine."'},
            {"role": "user", "text": '"And if I paid double?"'},
            {"role": "character", "text": '"Then you would be a rich fool on the wrong bank."'}]},
        {"id": "card-0002", "turns": [  # the block's opening line is the character's: dropped
            {"role": "user", "text": "Only a copper?"},
            {"role": "character", "text": "And a story, if you have one."}]},
    ]
    assert parsed.character.example_lines == (
        '*Corvin Ashdown taps the lantern hook.* "The river keeps its own hours, and I keep '
        'mine."', '"Then you would be a rich fool on the wrong bank."',
        "*He coils a rope.* Fare's a copper.", "And a story, if you have one.")


def test_an_example_block_in_prose_ends_at_a_blank_line_before_prose():
    description = ("{{char}} ferries people across the Marrow.\n<START>\n{{user}}: Hi.\n"
                   "{{char}}: Fare's a copper.\n\n{{user}}: Just one?\n{{char}}: One.\n\n"
                   "He never crosses at night.")
    parsed = parse_json(ferryman(description=description, mes_example=""))
    assert parsed.profile == ("Corvin Ashdown ferries people across the Marrow.\n\n"
                              "He never crosses at night.")
    assert parsed.character.description == "Corvin Ashdown ferries people across the Marrow."
    [dialogue] = parsed.dialogues
    assert [turn["text"] for turn in dialogue["turns"]] == ["Hi.", "Fare's a copper.",
                                                            "Just one?", "One."]


@pytest.mark.parametrize(("fields", "line"), [
    ({"creator_notes": "{{char}} ferries travellers across the Marrow, for a price. v2: typos."},
     "Corvin Ashdown ferries travellers across the Marrow, for a price."),
    ({"creator_notes": "<p>Corvin, by <a href='https://example.org'>me</a></p>"}, "Corvin, by me"),
    ({"creator_notes": "Corvin " + "waits " * 30 + "."}, FERRYMAN_TRAITS),  # too long
    ({"description": "Corvin has ferried the Marrow for forty years. He charges a copper."},
     "Corvin has ferried the Marrow for forty years."),
    ({"description": "**Corvin** ferries _people_ across! [Corvin: old]"},
     "Corvin ferries people across!"),
    ({"description": '[character("Corvin")\n{\nPersonality("Patient" + "Dry" + "Loyal")\n}]'},
     "Patient, Dry, Loyal"),
    ({"description": "[Corvin's persona: patient, dry; Corvin's clothes: oilskin coat]"},
     "patient, dry"),
    ({"description": "[Corvin's body: grey beard]", "personality": "Quiet. Loyal."}, "Quiet."),
    ({"description": "Ferryman. https://example.org/corvin"}, "Ferryman."),
], ids=["notes", "notes-html", "notes-too-long", "first-sentence", "markdown", "wpp", "plist",
        "personality", "link"])
def test_the_picker_line(fields, line):
    assert parse_json(ferryman(**fields)).character.description == line


def test_the_picker_line_is_cut_at_a_word_when_long():
    sentence = "Corvin Ashdown " + " ".join(["keeps the ferry"] * 30) + "."
    parsed = parse_json(ferryman(description=sentence))
    line = parsed.character.description
    assert len(line) <= MAX_SUMMARY_CHARS and line.endswith("…")
    assert sentence.startswith(line[:-1]) and sentence[len(line) - 1] == " "
    assert parsed.profile == sentence


def test_a_one_sentence_description_needs_no_profile():
    parsed = parse_json(ferryman(description="A ferryman on the Marrow."))
    assert parsed.character.description == "A ferryman on the Marrow."
    assert parsed.profile == ""


def test_the_cards_picture_becomes_a_small_clean_portrait():
    parsed = parse_card_bytes(card_png(ferryman()), "corvin.png")
    with Image.open(io.BytesIO(parsed.portrait)) as image:
        assert (image.format, image.size) == ("PNG", (341, 512))
        assert image.text == {}  # no card chunks in the avatar
        assert image.getextrema() != ((0, 0), (0, 0), (0, 0))
    assert b"ccv3" not in parsed.portrait
    assert parse_json(ferryman()).portrait is None
    small = parse_card_bytes(card_png(ferryman(), picture(100, 50)), "small.png").portrait
    with Image.open(io.BytesIO(small)) as image:
        assert (image.size, image.mode) == ((100, 50), "RGB")  # never scaled up
    buffer = io.BytesIO()
    Image.new("RGBA", (10, 10), (200, 30, 30, 0)).save(buffer, format="PNG")
    clear = parse_card_bytes(card_png(ferryman(), buffer.getvalue()), "clear.png").portrait
    with Image.open(io.BytesIO(clear)) as image:
        assert image.mode == "RGBA"  # transparency is kept


def ihdr(width: int, height: int) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


@pytest.mark.parametrize(("image", "message"), [
    (b"\x89PNG\r\n\x1a\n" + ihdr(2, 2) + chunk(b"IDAT", b"not zlib at all") + chunk(b"IEND", b""),
     "the card's picture cannot be read"),
    (b"\x89PNG\r\n\x1a\n" + ihdr(20_000, 20_000) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
     + chunk(b"IEND", b""), "the card's picture is 20000×20000 pixels"),
    (b"\x89PNG\r\n\x1a\n" + chunk(b"IEND", b""), "the card's picture cannot be read"),
], ids=["corrupt", "huge", "empty"])
def test_a_bad_picture_is_skipped_with_a_clear_warning(image, message):
    parsed = parse_card_bytes(card_png(ferryman(), image), "bad-picture.png")
    assert parsed.portrait is None and parsed.character.name == "Corvin Ashdown"
    [warning] = [w for w in parsed.warnings if "picture" in w]
    assert warning.startswith(message) and warning.endswith("gets a lettered circle instead")


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

"""Dialogue scripts: parsing, clear errors for broken ones, expectations on known replies,
and the shipped scripts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from neeko_app.characters.registry import discover_characters
from neeko_app.evaluation.script import (
    SHIPPED_SCRIPTS,
    Expectation,
    ScriptError,
    first_exchanges,
    load_script,
    only_characters,
    parse_script,
    unmet_expectations,
    without_character,
)

SHIPPED_CHARACTERS = Path(__file__).resolve().parents[1] / "characters"
VALID = """
name: tiny-interview
description: Two questions and a follow-up.
characters: [beethoven, newton]
era_terms: [computer, telephone]
exchanges:
  - ask: Where were you born?
    tags: [life]
    expect: {mentions_any: ["bonn", "woolsthorpe"]}
  - conversation:
      - ask: Name a friend.
      - ask: Why that friend?
        expect: {avoids: ["as an ai"], in_character: true}
    tags: [multi-turn]
"""


def test_a_valid_script_keeps_every_field(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(VALID)
    script = load_script(path)
    assert script.name == "tiny-interview" and script.characters == ("beethoven", "newton")
    assert script.era_terms == ("computer", "telephone")
    first, second = script.exchanges
    assert first.tags == ("life",) and first.turns[0].ask == "Where were you born?"
    assert first.turns[0].expect == Expectation(mentions_any=("bonn", "woolsthorpe"))
    assert [t.ask for t in second.turns] == ["Name a friend.", "Why that friend?"]
    assert second.turns[0].expect is None
    assert second.turns[1].expect == Expectation(avoids=("as an ai",), in_character=True)


@pytest.mark.parametrize(("text", "message"), [
    ("- just a list", "must be a mapping"),
    ("name: Bad Name\ncharacters: [a]\nexchanges: [{ask: hi}]", "invalid name 'Bad Name'"),
    ("name: s\ncharacters: []\nexchanges: [{ask: hi}]", "at least one character"),
    ("name: s\ncharacters: [a]\nexchanges: []", "'exchanges' must be a non-empty list"),
    ("name: s\ncharacters: [a]\nexchanges: [{ask: ''}]", "exchange 1: 'ask' must be"),
    ("name: s\ncharacters: [a]\nexchanges: [{ask: hi, expect: {mention_any: [x]}}]",
     "exchange 1: expect: unknown key(s) ['mention_any']"),
    ("name: s\ncharacters: [a]\nexchanges: [{ask: hi}, {ask: yo, expect: {avoids: ['(']}}]",
     "exchange 2: avoids: invalid regex '('"),
    ("name: s\ncharacters: [a]\nexchanges: [{conversation: [{ask: a}, {say: b}]}]",
     "exchange 1, turn 2: unknown key(s) ['say']"),
    ("name: s\ncharacters: [a]\nexchanges: [{ask: hi, expect: {in_character: 'yes'}}]",
     "in_character must be true or false"),
    ("name: s\ncharacters: [a]\nexchanges: [{ask: hi}]\nturns: 3", "unknown key(s) ['turns']"),
    ("name: [unclosed", "not valid YAML"),
])
def test_broken_scripts_say_where_and_why(tmp_path, text, message):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ScriptError, match=r"broken\.yaml: .*" + re.escape(message)):
        load_script(path)


def test_unreadable_and_oversized_scripts_are_refused(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9".encode("latin-1"))
    with pytest.raises(ScriptError, match="latin.yaml: cannot read it"):
        load_script(latin)
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    with pytest.raises(ScriptError, match="big.yaml: larger than 1024 KiB"):
        load_script(big)


@pytest.mark.parametrize(("expect", "reply", "failures"), [
    (Expectation(mentions_any=("bonn", "vienna")), "I was born in Bonn.", []),
    (Expectation(mentions_any=("bonn", "vienna")), "Somewhere by a river.",
     ["mentions none of ['bonn', 'vienna']"]),
    (Expectation(mentions_all=("haydn", "mozart")), "Haydn taught me.",
     ["does not mention 'mozart'"]),
    (Expectation(avoids=("as an ai",)), "As an AI I cannot say.", ["mentions 'as an ai'"]),
    (Expectation(in_character=True), "My ears fail me, but I hear you.", []),
    (Expectation(in_character=True), "Beethoven was a composer.",
     ["does not speak in the first person"]),
    (Expectation(in_character=True), "I am an AI assistant, not Caesar.", ["says it is an AI"]),
    (Expectation(era_bound=True), "Send me a telegram; I despise the Telephone.",
     ["uses the modern term 'telephone'"]),
])
def test_expectations_on_known_replies(expect, reply, failures):
    assert unmet_expectations(expect, reply, ("telephone", "computer")) == failures


def test_every_shipped_script_parses_and_names_shipped_characters():
    scripts = sorted(SHIPPED_SCRIPTS.glob("*.yaml"))
    characters = discover_characters(SHIPPED_CHARACTERS).characters
    assert scripts, "no scripts shipped"
    names = set()
    for path in scripts:
        script = load_script(path)
        assert script.name == path.stem and script.name not in names
        names.add(script.name)
        assert set(script.characters) <= set(characters), path.name
        if script.name.endswith("-interview"):
            questions = sum(len(e.turns) for e in script.exchanges)
            assert questions >= 30, f"{path.name} has {questions} questions"


def test_a_script_cut_to_its_first_exchanges_and_without_a_character():
    script = parse_script(yaml.safe_load(VALID))
    assert first_exchanges(script, None) is script
    cut = first_exchanges(script, 2)  # the conversation would make it three turns
    assert [e.turns[0].ask for e in cut.exchanges] == ["Where were you born?"]
    assert len(first_exchanges(script, 3).exchanges) == 2
    assert len(first_exchanges(script, 0).exchanges) == 1  # never empty
    assert without_character(script, "newton").characters == ("beethoven",)
    assert without_character(without_character(script, "newton"), "beethoven") is None
    assert only_characters(script, {"newton", "caesar"}).characters == ("newton",)
    assert only_characters(script, ["caesar"]) is None

"""Dialogue scripts for `neeko eval`: load and check a YAML script (format in
`scripts/FORMAT.md`), and judge a reply against an exchange's expectations."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from neeko_app.evaluation.voice import speaks_in_first_person

SHIPPED_SCRIPTS = Path(__file__).parent / "scripts"
MAX_SCRIPT_BYTES = 1024 * 1024
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
AI_DISCLOSURE = re.compile(r"\b(as an ai|language model|ai (language )?assistant|"
                           r"i am an? (ai|assistant|chatbot|program))\b", re.IGNORECASE)
EXPECT_KEYS = {"mentions_any", "mentions_all", "avoids", "in_character", "era_bound"}
TURN_KEYS = {"ask", "expect", "tags"}
SCRIPT_KEYS = {"name", "description", "characters", "era_terms", "exchanges"}


class ScriptError(ValueError):
    """A script file that cannot be used, with where and why."""


@dataclass(frozen=True)
class Expectation:
    """What a reply must (not) contain; regexes are matched case-insensitively."""

    mentions_any: tuple[str, ...] = ()
    mentions_all: tuple[str, ...] = ()
    avoids: tuple[str, ...] = ()
    in_character: bool = False
    era_bound: bool = False


@dataclass(frozen=True)
class ScriptTurn:
    ask: str
    expect: Expectation | None = None


@dataclass(frozen=True)
class Exchange:
    """One question, or a multi-turn conversation whose later turns see earlier replies."""

    turns: tuple[ScriptTurn, ...]
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DialogueScript:
    name: str
    description: str
    characters: tuple[str, ...]
    era_terms: tuple[str, ...]
    exchanges: tuple[Exchange, ...]


def load_script(path: str | Path) -> DialogueScript:
    """Read and check a script; ScriptError names the file, the exchange and the problem."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SCRIPT_BYTES:
            raise ScriptError(f"{path.name}: larger than {MAX_SCRIPT_BYTES // 1024} KiB")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ScriptError(f"{path.name}: cannot read it ({err})") from None
    except yaml.YAMLError as err:
        raise ScriptError(f"{path.name}: not valid YAML ({err})") from None
    try:
        return parse_script(data)
    except ScriptError as err:
        raise ScriptError(f"{path.name}: {err}") from None


def parse_script(data: object) -> DialogueScript:
    """A script from already-parsed YAML/JSON data."""
    if not isinstance(data, dict):
        raise ScriptError("a script must be a mapping with name, characters and exchanges")
    _no_unknown_keys(data, SCRIPT_KEYS, "the script")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ScriptError(f"invalid name {name!r}: use lowercase letters, digits and '-'")
    characters = _strings(data.get("characters"), "characters")
    if not characters:
        raise ScriptError("'characters' must list at least one character id")
    exchanges = data.get("exchanges")
    if not isinstance(exchanges, list) or not exchanges:
        raise ScriptError("'exchanges' must be a non-empty list")
    return DialogueScript(
        name=name, description=str(data.get("description") or ""),
        characters=characters, era_terms=_strings(data.get("era_terms", []), "era_terms"),
        exchanges=tuple(_exchange(raw, number) for number, raw in enumerate(exchanges, 1)))


def first_exchanges(script: DialogueScript, max_turns: int | None) -> DialogueScript:
    """`script` cut to its first exchanges that together have at most `max_turns` turns
    (always the first one; all of them when `max_turns` is None)."""
    if max_turns is None:
        return script
    kept, turns = [], 0
    for exchange in script.exchanges:
        turns += len(exchange.turns)
        if kept and turns > max_turns:
            break
        kept.append(exchange)
    return replace(script, exchanges=tuple(kept))


def without_character(script: DialogueScript, slug: str) -> DialogueScript | None:
    """`script` with `slug` taken out of its characters; None when nobody is left."""
    return only_characters(script, [c for c in script.characters if c != slug])


def only_characters(script: DialogueScript, slugs: Collection[str]) -> DialogueScript | None:
    """`script` put only to those of its characters in `slugs`; None when none is."""
    kept = tuple(c for c in script.characters if c in slugs)
    return replace(script, characters=kept) if kept else None


def unmet_expectations(expect: Expectation, reply: str, era_terms: tuple[str, ...] = ()
                       ) -> list[str]:
    """Why `reply` fails `expect` (empty: it passes)."""
    def found(pattern: str) -> bool:
        return re.search(pattern, reply, re.IGNORECASE) is not None

    failures = []
    if expect.mentions_any and not any(map(found, expect.mentions_any)):
        failures.append(f"mentions none of {list(expect.mentions_any)}")
    failures += [f"does not mention {p!r}" for p in expect.mentions_all if not found(p)]
    failures += [f"mentions {p!r}" for p in expect.avoids if found(p)]
    if expect.in_character and not speaks_in_first_person(reply):
        failures.append("does not speak in the first person")
    if expect.in_character and AI_DISCLOSURE.search(reply):
        failures.append("says it is an AI")
    if expect.era_bound:
        failures += [f"uses the modern term {term!r}" for term in era_terms
                     if re.search(rf"\b{re.escape(term)}", reply, re.IGNORECASE)]
    return failures


def _exchange(raw: object, number: int) -> Exchange:
    where = f"exchange {number}"
    if not isinstance(raw, dict):
        raise ScriptError(f"{where}: expected a mapping with 'ask' or 'conversation'")
    if "conversation" in raw:
        _no_unknown_keys(raw, {"conversation", "tags"}, where)
        turns = raw["conversation"]
        if not isinstance(turns, list) or not turns:
            raise ScriptError(f"{where}: 'conversation' must be a non-empty list of turns")
        return Exchange(tuple(_turn(t, f"{where}, turn {i}") for i, t in enumerate(turns, 1)),
                        _strings(raw.get("tags", []), f"{where}: tags"))
    return Exchange((_turn(raw, where),), _strings(raw.get("tags", []), f"{where}: tags"))


def _turn(raw: object, where: str) -> ScriptTurn:
    if not isinstance(raw, dict):
        raise ScriptError(f"{where}: expected a mapping with 'ask'")
    _no_unknown_keys(raw, TURN_KEYS, where)
    ask = raw.get("ask")
    if not isinstance(ask, str) or not ask.strip():
        raise ScriptError(f"{where}: 'ask' must be a non-empty string")
    expect = raw.get("expect")
    return ScriptTurn(ask.strip(), None if expect is None else _expectation(expect, where))


def _expectation(raw: object, where: str) -> Expectation:
    if not isinstance(raw, dict):
        raise ScriptError(f"{where}: 'expect' must be a mapping")
    _no_unknown_keys(raw, EXPECT_KEYS, f"{where}: expect")
    lists = {key: _patterns(raw.get(key, []), f"{where}: {key}")
             for key in ("mentions_any", "mentions_all", "avoids")}
    flags = {}
    for key in ("in_character", "era_bound"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise ScriptError(f"{where}: {key} must be true or false")
        flags[key] = value
    return Expectation(**lists, **flags)


def _patterns(raw: object, where: str) -> tuple[str, ...]:
    patterns = _strings(raw, where)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ScriptError(f"{where}: invalid regex {pattern!r} ({err})") from None
    return patterns


def _strings(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise ScriptError(f"{where} must be a list of non-empty strings")
    return tuple(x.strip() for x in raw)


def _no_unknown_keys(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ScriptError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")

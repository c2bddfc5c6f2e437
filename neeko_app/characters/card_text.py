"""The free text of a Tavern card: macros, `<START>` example blocks, and a one-line summary.

Real cards put everything in `description`: prose or W++/PList attribute blocks
(`[Mira's personality= "calm", "wry"]`), often followed by sample chats after `<START>`
lines. This module splits the examples off, turns them into example lines and dialogues,
and finds a short clean line for the picker (which is also the start of every prompt).
"""

from __future__ import annotations

import re

from neeko_app.characters.transcript import parse_transcript
from neeko_app.training.data import DialogueError

MAX_SUMMARY_CHARS = 120

_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}(['’]s)?|<(bot|user)>(['’]s)?", re.IGNORECASE)
_SPEAKER = re.compile(r"^(\{\{\s*(?:char|user)\s*\}\}|<(?:bot|user)>)\s*:\s*", re.IGNORECASE)
_START = re.compile(r"^\s*<start>\s*$", re.IGNORECASE | re.MULTILINE)
_SENTENCE = re.compile(r"(.+?[.!?…])(?=\s|$)")
_BRACKETED = re.compile(r"\[[^\]]*\]?|\{[^{}]*\}")  # W++ / PList blocks, even unclosed
_MARKUP = re.compile(r"<[^<>]*>|\(?https?://\S+|[*_`~#|]")
_ATTRIBUTE = r"\b(?:{keys})\b[\s\"')]*[=:(]\s*([^\];\n]+)"  # `Key= v`, `key: v`, `Key("v")`
TRAIT_KEYS = "personality|persona|traits|mind|nature"
_BLANK_RUNS = re.compile(r"\n{3,}")


def replace_macros(text: str, name: str) -> str:
    """Replace {{char}}/<BOT> with the name and {{user}}/<USER> with "you" ("your" for 's)."""
    def swap(match: re.Match) -> str:
        who = (match.group(1) or match.group(3)).lower()
        possessive = match.group(2) or match.group(4)
        if who in ("char", "bot"):
            return name + (possessive or "")
        word = "your" if possessive else "you"
        before = match.string[:match.start()].rstrip()
        return word.capitalize() if not before or before[-1] in ".!?\"*" else word
    return _MACRO.sub(swap, text)


# --- example blocks -------------------------------------------------------------------------


def split_examples(description: str, name: str) -> tuple[str, str]:
    """(the description without its `<START>` blocks, those blocks).

    In a description a block runs from its `<START>` line over the speaker lines that
    follow; it ends at a line opening an attribute block (`[`), or at a blank line not
    followed by another speaker line.
    """
    lines = description.split("\n")
    following = _next_text(lines)
    prose: list[str] = []
    examples: list[str] = []
    inside = False
    for line, after in zip(lines, following, strict=True):
        if _START.match(line):
            inside = True
            examples.append("<START>")
            continue
        if inside and _ends_block(line, after, name):
            inside = False
        (examples if inside else prose).append(line)
    return _BLANK_RUNS.sub("\n\n", "\n".join(prose)).strip(), "\n".join(examples)


def _next_text(lines: list[str]) -> list[str]:
    """For each line, the next line after it that is not blank ('' at the end)."""
    following, after = [], ""
    for line in reversed(lines):
        following.append(after)
        if line.strip():
            after = line
    return following[::-1]


def _ends_block(line: str, following: str, name: str) -> bool:
    """Whether `line` of a description (`following`: the next line with text) is past the
    example block it is in."""
    if line.strip():
        return line.strip().startswith("[")
    return not (_START.match(following) or _speaker(following.strip(), name)[0])


def example_lines(examples: str, name: str) -> list[str]:
    """The character's lines in `examples`: `{{char}}:` turns of each `<START>` block.

    A block without any speaker tags counts as one line.
    """
    lines: list[str] = []
    for block in _START.split(examples):
        turns = _turns(block, name)
        lines += [text for who, text in turns if who == "char" or (who is None and len(turns) == 1)]
    return [line for line in lines if line]


def example_dialogues(examples: str, name: str, shown: str) -> list[dict]:
    """The `<START>` blocks as conversations in our dialogues format (characters/FORMAT.md):
    each from the user's first line to the character's last, macros replaced by `shown`."""
    try:
        records = parse_transcript(examples, name)
    except DialogueError:  # no block holds an exchange
        return []
    return [{"id": f"card-{number:04d}",
             "turns": [{"role": turn["role"], "text": replace_macros(turn["text"], shown)}
                       for turn in record["turns"]]}
            for number, record in enumerate(records, start=1)]


def _turns(block: str, name: str) -> list[tuple[str | None, str]]:
    """(speaker, text) turns of one example block; untagged lines continue the previous turn."""
    turns: list[tuple[str | None, str]] = []
    for raw in block.splitlines():
        line = raw.strip()
        if not line:
            continue
        who, text = _speaker(line, name)
        if who or not turns:
            turns.append((who, text))
        else:
            turns[-1] = (turns[-1][0], f"{turns[-1][1]} {line}")
    return turns


def _speaker(line: str, name: str) -> tuple[str | None, str]:
    """("char" / "user" / None, rest of the line) for an example line."""
    match = _SPEAKER.match(line)
    if match:
        tag = match.group(1).lower()
        return ("char" if "char" in tag or "bot" in tag else "user"), line[match.end():].strip()
    if line.startswith(f"{name}:"):
        return "char", line[len(name) + 1:].strip()
    return None, line


# --- the one-line summary -------------------------------------------------------------------


def summary_line(names: list[str], creator_notes: str, description: str,
                 personality: str) -> str:
    """A clean line of at most MAX_SUMMARY_CHARS about the character ('' if none is found).

    In order: the creator's notes when they fit and name the character (notes about the
    card itself, such as "contest winner", would mislead the model); else the first
    sentence of the description's or the personality's prose; else the personality traits
    listed in an attribute block.
    """
    notes = first_sentence(_clean(creator_notes), limit=None)
    words = {word.casefold() for name in names for word in re.findall(r"\w{3,}", name)}
    if notes and len(notes) <= MAX_SUMMARY_CHARS and words & {
            word.casefold() for word in re.findall(r"\w{3,}", notes)}:
        return notes
    candidates = (first_sentence(_clean(description)), first_sentence(_clean(personality)),
                  _traits(description), _traits(personality))
    return next((line for line in candidates if line), "")


def first_sentence(text: str, limit: int | None = MAX_SUMMARY_CHARS) -> str:
    """The first sentence of `text` on one line; past `limit` characters it is cut at a word
    and ends with '…'."""
    flat = " ".join(text.split())
    match = _SENTENCE.match(flat)
    sentence = match.group(1) if match else flat
    if limit is None or len(sentence) <= limit:
        return sentence
    cut = sentence[:limit].rsplit(" ", 1)[0] if " " in sentence[:limit] else sentence[:limit - 1]
    return cut.rstrip(" ,;:-–—") + "…"


def _clean(text: str) -> str:
    """`text` without attribute blocks, HTML tags, links and Markdown signs, on one line."""
    text = _MARKUP.sub("", _BRACKETED.sub(" ", text))
    return " ".join(text.split()).lstrip(" .,;:-–—")


def attribute(text: str, keys: str) -> str:
    """The value of the first attribute named by `keys` (a regex alternation, any case) in
    W++ (`Key("a" + "b")`, `Key= "a", "b"`) or PList (`key: a, b;`) form; '' if none."""
    match = re.search(_ATTRIBUTE.format(keys=keys), text, re.IGNORECASE)
    return match.group(1).strip().rstrip(")").strip(" \"'“”") if match else ""


def _traits(text: str) -> str:
    """The values of the first personality attribute, joined while they fit."""
    line = ""
    for value in re.split(r"[,+/]", attribute(text, TRAIT_KEYS)):
        value = " ".join(value.strip(" \"'“”()").split())
        if not value or value.casefold() in line.casefold().split(", "):
            continue
        joined = f"{line}, {value}" if line else value
        if len(joined) > MAX_SUMMARY_CHARS:
            break
        line = joined
    return line

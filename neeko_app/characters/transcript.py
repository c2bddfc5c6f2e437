"""Plain `Name: line` transcripts to conversations in our dialogues format (FORMAT.md).

    <START>
    You: Good morning, Socrates.
    Socrates: Is it? Let us first agree on what makes a morning good.
    *He smiles.* Sit down.

A line `Label: text` starts a turn; a line without a label continues the turn before it.
The character's lines are those whose label is its name, a word of its name ("Newton" for
Isaac Newton, any case) or `{{char}}`; every other label is the user's side. `<START>`,
`---` or `***` lines separate conversations; long ones are cut into windows of at most
`max_exchanges` exchanges (training keeps only what fits its token limit). Each
conversation starts with the user and ends with the character: a leading character line
(a greeting) and trailing user lines are dropped.
"""

from __future__ import annotations

import re

from neeko_app.training.data import DialogueError

MAX_LABEL_WORDS = 4
CHARACTER_LABELS = frozenset({"{{char}}", "<bot>", "char"})

_SEPARATOR = re.compile(r"^\s*(<start>|-{3,}|\*{3,})\s*$", re.IGNORECASE)
_LABELLED = re.compile(r"^\s*([^:\s][^:]{0,60}?)\s*:\s*(.*)$")


def parse_transcript(text: str, name: str, max_exchanges: int = 8) -> list[dict]:
    """Conversations (dialogues.jsonl records) from a transcript of `name` talking with others.

    DialogueError when no exchange between the user and the character is found.
    """
    if max_exchanges < 1:
        raise ValueError("max_exchanges must be >= 1")
    conversations = []
    for block in _blocks(text):
        turns = _conversation(_turns(block, name))
        for start in range(0, len(turns), 2 * max_exchanges):
            conversations.append(turns[start:start + 2 * max_exchanges])
    if not conversations:
        raise DialogueError(f"no exchange found in the transcript: label the lines "
                            f"'You: ...' and '{name}: ...'")
    return [{"id": f"transcript-{i:04d}", "turns": [{"role": role, "text": line}
                                                   for role, line in turns]}
            for i, turns in enumerate(conversations, start=1)]


def is_character_label(label: str, name: str) -> bool:
    """Whether a transcript label names the character (full name, a word of it, {{char}})."""
    label = " ".join(label.split()).casefold()
    words = {w.casefold() for w in re.findall(r"\w{2,}", name)}
    return label in CHARACTER_LABELS or label == " ".join(name.split()).casefold() or (
        label in words)


def _blocks(text: str) -> list[list[str]]:
    """The transcript's lines, split into conversations at separator lines."""
    blocks: list[list[str]] = [[]]
    for line in text.replace("\r\n", "\n").split("\n"):
        if _SEPARATOR.match(line):
            blocks.append([])
        elif line.strip():
            blocks[-1].append(line.strip())
    return [block for block in blocks if block]


def _turns(lines: list[str], name: str) -> list[tuple[str, str]]:
    """(role, text) per labelled line; a line without a label continues the turn before it."""
    turns: list[tuple[str, str]] = []
    for line in lines:
        match = _LABELLED.match(line)
        if match and len(match.group(1).split()) <= MAX_LABEL_WORDS:
            role = "character" if is_character_label(match.group(1), name) else "user"
            turns.append((role, match.group(2).strip()))
        elif turns:  # text before the first labelled line belongs to nobody
            turns[-1] = (turns[-1][0], f"{turns[-1][1]}\n{line}".strip())
    return turns


def _conversation(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Turns without empties, one turn per side in a row, from a user turn to a character's."""
    merged: list[tuple[str, str]] = []
    for role, text in turns:
        if not text:
            continue
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]}\n{text}")
        else:
            merged.append((role, text))
    while merged and merged[0][0] != "user":
        merged.pop(0)
    while merged and merged[-1][0] != "character":
        merged.pop()
    return merged

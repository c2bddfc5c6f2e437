"""The greedy fact quiz with names and numbers the prompt never mentions damped.

Read one by one, most quiz replies give the answer from the memory notes and then add
colour of the block's own: Beethoven meets Jérôme "again in Teplitz in 1912", Newton's
stepfather dies "in 1695". `UnheardNamePenalty` subtracts a fixed amount from the logits of
the tokens that would begin a name the prompt does not hold (a capitalised word that does
not open a sentence; "I" is no name) or write a number that leaves every number of the
prompt. Dropped (see README); kept here with the run it made.

    python reports/unheard-names-2026-12-05/unheard_quiz.py quiz 2 quiz-unheard2.json
    python reports/unheard-names-2026-12-05/unheard_quiz.py count BEFORE.json AFTER.json

`quiz PENALTY OUT`: every character's quiz put to blocks+memory greedily, as `neeko quiz`
does, with `UnheardNamePenalty(PENALTY)` added to its decoding; the report to OUT.
`count`: for each report, the quiz scores and how many replies bring in a name or number
that neither the character's fact sheet and profile nor the question holds (capitalised
words that do not open a sentence, and numbers): a rough count of invented detail.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from transformers.generation.logits_process import LogitsProcessor

from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.note_copy import SENTENCE_ENDS, SPACE_MARKS
from neeko_app.config import Settings
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.evaluation.quiz import GREEDY, format_quiz_report
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json


@cache
def _word_classes(tokenizer) -> tuple[torch.Tensor, dict[int, str]]:
    """The tokens of `tokenizer` that begin a capitalised word after a space (ids), and
    its digit tokens (id -> ASCII digits)."""
    capitals, digits = [], {}
    for token, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        text = piece or ""
        for mark in SPACE_MARKS:
            text = text.replace(mark, " ")
        if text[:1] == " " and text[1:2].isupper() and re.match(r" \w+", text).group() != " I":
            capitals.append(token)
        elif text.isascii() and text.isdigit():  # other scripts' digits: the script guard
            digits[token] = text
    return torch.tensor(capitals, dtype=torch.long), digits


class UnheardNamePenalty(LogitsProcessor):
    """Subtract `penalty` from the tokens that begin a name, or write a number, that the
    prompt `prompt_ids` does not hold."""

    def __init__(self, tokenizer, prompt_ids: Sequence[int], penalty: float) -> None:
        capitals, self.digits = _word_classes(tokenizer)
        heard = torch.tensor(sorted(set(prompt_ids)), dtype=torch.long)
        self.unheard = capitals[~torch.isin(capitals, heard)]
        numbers = re.findall(r"\d+", tokenizer.decode(list(prompt_ids)))
        self.prefixes = {number[:end] for number in numbers for end in range(1, len(number) + 1)}
        self.tokenizer = tokenizer
        self.prompt_length = len(prompt_ids)
        self.penalty = penalty

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.clone()
        for row, ids in enumerate(input_ids):
            reply = ids[self.prompt_length:].tolist()
            if not self._opens_sentence(reply):
                scores[row, self.unheard] -= self.penalty
            written = self._number_so_far(reply)
            off = [token for token, digits in self.digits.items()
                   if written + digits not in self.prefixes]
            scores[row, off] -= self.penalty
        return scores

    def _opens_sentence(self, reply: list[int]) -> bool:
        """Whether the next word opens a sentence (a capital there is no sign of a name)."""
        if not reply:
            return True
        last = self.tokenizer.decode(reply[-1:])
        return last.endswith("\n") or last.rstrip().endswith(SENTENCE_ENDS)

    def _number_so_far(self, reply: list[int]) -> str:
        """The digits the reply ends with, if its last tokens write a number."""
        written = ""
        for token in reversed(reply):
            if token not in self.digits:
                break
            written = self.digits[token] + written
        return written


@dataclass(frozen=True)
class WithUnheardPenalty(DecodingSettings):
    """The app's decoding with `UnheardNamePenalty` after its other processors (greedy here:
    the penalty and the note-copy bias only add to logits, so their order does not matter)."""

    unheard_penalty: float = 0.0

    def logits_processors(self, prompt_ids, tokenizer, quotable=()):
        processors = super().logits_processors(prompt_ids, tokenizer, quotable)
        if self.unheard_penalty:
            processors.append(UnheardNamePenalty(tokenizer, prompt_ids, self.unheard_penalty))
        return processors


SYSTEM = "blocks+memory"
CHARACTERS = Path(__file__).parents[2] / "characters"
NAME_OR_NUMBER = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w'-]+|\d+)")


def quiz(penalty: float, out: str) -> None:
    runtime = load_runtime(Settings.from_env())
    slugs = sorted(runtime.characters)
    decoding = WithUnheardPenalty(**{**GREEDY.__dict__, "max_sentences": 0,
                                    "unheard_penalty": penalty})
    report = quiz_with_bars(runtime, slugs, [SYSTEM], decoding, f"unheard{penalty:g}")
    print(format_quiz_report(report))
    atomic_write_json(out, report.to_dict())


def unheard(reply: str, material: str, question: str) -> list[str]:
    """The names and numbers of `reply` found in neither `material` nor `question`."""
    return [word for word in NAME_OR_NUMBER.findall(reply)
            if word != "I" and word not in material and word not in question]


def count(reports: list[str]) -> None:
    material = {folder.name: "".join((folder / name).read_text()
                                     for name in ("facts.jsonl", "profile.md"))
                for folder in CHARACTERS.iterdir() if (folder / "facts.jsonl").is_file()}
    for path in reports:
        answers = [a for a in json.loads(Path(path).read_text())["answers"]
                   if a["system"].startswith(SYSTEM)]
        found = [unheard(a["reply"], material[a["character"]], a["question"]) for a in answers]
        shares = [sum(values) / len(answers) for values in (
            [a["correct"] for a in answers], [a["answered_first"] for a in answers],
            list(map(bool, found)), list(map(len, found)))]
        print(f"{path}: right {shares[0]:.3f}, in the first sentence {shares[1]:.3f}, replies "
              f"with an unheard name or number {shares[2]:.3f}, per reply {shares[3]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("quiz")
    one.add_argument("penalty", type=float)
    one.add_argument("out")
    many = commands.add_parser("count")
    many.add_argument("reports", nargs="+")
    args = parser.parse_args()
    if args.command == "quiz":
        quiz(args.penalty, args.out)
    else:
        count(args.reports)


if __name__ == "__main__":
    main()

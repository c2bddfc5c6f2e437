"""Replies cut after their first N sentences: right answers kept, false claims left out.

    python reports/reply-length-2026-12-05/reply_length.py [quiz|recall|openers|all]

Cuts stored replies where the sentence limit (`--max-sentences N`) would have ended them.
Decoding is the same up to the cut, so the cut reply is the one the limit generates, for
greedy and seeded sampling alike. For each N in 1, 2, 3 and no limit it prints:

- quiz: over the 342 greedy blocks+memory replies of the shipped quiz report, the quiz's
  score and the mean words a reply; over the 30 replies read (the seed-7 sample of
  in-role-reading-2026-12-05, each labelled here with the first sentence that holds a false
  or invented claim), false claims and "right and nothing false";
- recall: over the 70 greedy probes of the shipped recall report (the user's fact asked back
  after the history overflowed), the share answered;
- openers: over 35 held-out openers answered as the chat app samples (5 a character,
  `openers-sampled.json`, labelled with the first sentence that is false or nonsense, and
  whether the first sentence alone is thin: a bare yes or no, or words that say nothing),
  the replies with nothing wrong, those that also say something, and the mean words.

Writes the rates to reply-length.json here.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from neeko_app.characters.facts import QUIZ_FILE, load_quiz
from neeko_app.chat.sentences import kept_sentences
from neeko_app.config import Settings
from neeko_app.evaluation.recall import PROBES
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
QUIZ_REPLIES = HERE.parent / "lexical-retrieval-2026-12-05" / "quiz-lexical.json"
RECALL_REPLIES = HERE.parent / "about-user-2026-12-05" / "recall-seven.json"
LIMITS = (1, 2, 3, 0)  # 0: no limit


def cut(reply: str, limit: int) -> str:
    """`reply` as the sentence limit ends it (a sentence ends once the next has begun)."""
    return kept_sentences(reply.strip(), limit) if limit else reply.strip()


def words(texts: list[str]) -> float:
    return round(sum(len(t.split()) for t in texts) / len(texts), 1)


def clean_within(first_bad: int | None, limit: int) -> bool:
    """Nothing wrong in what the limit keeps of a reply whose first wrong sentence is
    `first_bad` (None: none is)."""
    return first_bad is None or (limit > 0 and first_bad > limit)


def quiz_rates() -> dict:
    answers = [a for a in json.loads(QUIZ_REPLIES.read_text())["answers"]
               if a["system"] == "blocks+memory"]
    questions = {q.id: q for slug in {a["character"] for a in answers}
                 for q in load_quiz(Settings().characters_dir / slug / QUIZ_FILE)}
    labels = {row["question_id"]: row["first_false_sentence"]
              for row in map(json.loads, (HERE / "quiz-sentence-labels.jsonl").open())}
    read = [a for a in answers if a["question_id"] in labels]
    assert len(read) == len(labels), "a labelled reply is missing from the quiz report"
    rates = {}
    for limit in LIMITS:
        replies = [cut(a["reply"], limit) for a in answers]
        right = [questions[a["question_id"]].is_answered_by(text)
                 for a, text in zip(answers, replies, strict=True)]
        read_right = [questions[a["question_id"]].is_answered_by(cut(a["reply"], limit))
                      for a in read]
        read_clean = [clean_within(labels[a["question_id"]], limit) for a in read]
        rates[limit or "none"] = {
            "quiz": round(sum(right) / len(right), 3), "words": words(replies),
            "read_false_claim": round(1 - sum(read_clean) / len(read), 3),
            "read_right_and_nothing_false": round(
                sum(r and c for r, c in zip(read_right, read_clean, strict=True)) / len(read), 3)}
    return rates


def recall_rates() -> dict:
    answers = json.loads(RECALL_REPLIES.read_text())["answers"]
    rates = {}
    for limit in LIMITS:
        replies = [cut(a["reply"], limit) for a in answers]
        recalled = [re.search(PROBES[a["probe"]].answer, text, re.I) is not None
                    for a, text in zip(answers, replies, strict=True)]
        rates[limit or "none"] = {"recalled": round(sum(recalled) / len(recalled), 3),
                                  "words": words(replies)}
    return rates


def opener_rates() -> dict:
    answers = json.loads((HERE / "openers-sampled.json").read_text())["answers"]
    labels = [json.loads(line) for line in (HERE / "openers-sentence-labels.jsonl").open()]
    assert [(a["character"], a["question"]) for a in answers] == [
        (row["character"], row["question"]) for row in labels], "labels and replies differ"
    rates = {}
    for limit in LIMITS:
        clean = [clean_within(row["first_bad_sentence"], limit) for row in labels]
        # a first sentence alone may say nothing ("Not yet.", "I am composing, and I
        # write."); no reply of two sentences or more in this sample was that thin
        full = [ok and not (limit == 1 and row["first_sentence_thin"])
                for ok, row in zip(clean, labels, strict=True)]
        rates[limit or "none"] = {"read_nothing_wrong": round(sum(clean) / len(clean), 3),
                                  "read_nothing_wrong_not_thin": round(sum(full) / len(full), 3),
                                  "words": words([cut(a["reply"], limit) for a in answers])}
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="all",
                        choices=("quiz", "recall", "openers", "all"))
    args = parser.parse_args()
    results = {}
    if args.part in ("quiz", "all"):
        results["quiz"] = quiz_rates()
    if args.part in ("recall", "all"):
        results["recall"] = recall_rates()
    if args.part in ("openers", "all"):
        results["openers"] = opener_rates()
    for part, rates in results.items():
        for limit, row in rates.items():
            print(f"{part:8} sentences {limit!s:>4}: " + "  ".join(
                f"{key} {value}" for key, value in row.items()))
    atomic_write_json(HERE / "reply-length.json", results)


if __name__ == "__main__":
    main()

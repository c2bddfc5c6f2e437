"""Optional LLM judge: an OpenAI-compatible chat endpoint scores replies 1-7 on the Neeko
paper's criteria (behavior, utterance, relevance, stability, real and virtual knowledge,
transfer). Off unless `--judge-url` is given; the prompt is `judge_prompts/role_play.txt`."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import httpx

from neeko_app.characters.card import Character
from neeko_app.evaluation.runner import ScriptedReply

CRITERIA = ("behavior", "utterance", "relevance", "stability", "real_knowledge",
            "virtual_knowledge", "transfer")
PROMPT = (Path(__file__).parent / "judge_prompts" / "role_play.txt").read_text(encoding="utf-8")
PROFILE_CHARS = 1500
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


class JudgeError(RuntimeError):
    """The judge endpoint could not be used at all (unreachable, refused, wrong model)."""


class Judge:
    """Scores replies through `url`/chat/completions with `model` (temperature 0)."""

    def __init__(self, url: str, model: str, api_key: str | None = None,
                 timeout_s: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers,
                                    timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def prompt(self, character: Character, reply: ScriptedReply) -> str:
        """The grading prompt for one reply."""
        return PROMPT.format(name=character.name, description=character.description,
                             profile=character.profile_text()[:PROFILE_CHARS],
                             question=reply.question, reply=reply.reply or "(no reply)")

    def score(self, character: Character, reply: ScriptedReply) -> dict[str, int] | None:
        """Scores by criterion; None when the judge's answer holds no usable scores."""
        response = self._client.post("/chat/completions", json={
            "model": self.model, "temperature": 0,
            "messages": [{"role": "user", "content": self.prompt(character, reply)}]})
        if response.status_code != 200:
            raise JudgeError(f"the judge answered {response.status_code}: "
                             f"{response.text[:300]}")
        content = response.json()["choices"][0]["message"]["content"] or ""
        return parse_scores(content)


def parse_scores(content: str) -> dict[str, int] | None:
    """The criteria scores in the judge's answer (the first JSON object holding all of
    them, each an integer 1-7), else None."""
    for match in _JSON_OBJECT.finditer(content):
        try:
            found = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        scores = {c: found.get(c) for c in CRITERIA}
        if all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 7
               for v in scores.values()):
            return scores
    return None


def judge_replies(judge: Judge, characters: dict[str, Character],
                  replies: Sequence[ScriptedReply]) -> dict[str, dict[str, float | int]]:
    """Mean score per criterion for each system, with how many replies were scored and how
    many answers from the judge were unusable."""
    totals: dict[str, dict[str, float | int]] = {}
    for reply in replies:
        row = totals.setdefault(reply.system, {**dict.fromkeys(CRITERIA, 0.0),
                                               "scored": 0, "unusable": 0})
        scores = judge.score(characters[reply.character], reply)
        if scores is None:
            row["unusable"] += 1
            continue
        row["scored"] += 1
        for criterion, value in scores.items():
            row[criterion] += value
    for row in totals.values():
        for criterion in CRITERIA:
            row[criterion] = row[criterion] / row["scored"] if row["scored"] else 0.0
    return totals

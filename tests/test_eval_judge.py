"""The optional LLM judge against a fake OpenAI-compatible server started by the test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from neeko_app.characters.registry import discover_characters
from neeko_app.cli import main
from neeko_app.evaluation.judge import CRITERIA, Judge, JudgeError, judge_replies, parse_scores
from neeko_app.evaluation.runner import ScriptedReply
from tests.tiny_characters import make_tiny_runtime

SHIPPED = Path(__file__).resolve().parents[1] / "characters"


class FakeJudge(BaseHTTPRequestHandler):
    """Grades 6 everywhere, 2 for stability when the reply says it is an AI; answers prose
    when the reply is "gibberish"; refuses a wrong key."""

    prompts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != "Bearer judge-key":
            return self._send(401, {"error": {"message": "bad key"}})
        prompt = body["messages"][0]["content"]
        FakeJudge.prompts.append(prompt)
        reply = prompt.split("replied:\n", 1)[1].split("\n\nScore the reply", 1)[0]
        if "gibberish" in reply:
            content = "I would rather not grade this."
        else:
            scores = dict.fromkeys(CRITERIA, 6) | {"stability": 2 if "AI" in reply else 7}
            content = f"Here you go: {json.dumps(scores)}"
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def judge_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def reply(system: str, text: str) -> ScriptedReply:
    return ScriptedReply(system, "s", "socrates", 0, 0, "Are you an AI?", text, 1.0, 5, (),
                         None)


def test_the_judge_scores_each_system_on_every_criterion(judge_url):
    characters = discover_characters(SHIPPED).characters
    judge = Judge(judge_url, "fake-judge", api_key="judge-key")
    try:
        table = judge_replies(judge, characters, [
            reply("blocks", "I am a stonemason's son, and I only know that I know nothing."),
            reply("blocks", "gibberish"),
            reply("baseline", "As an AI language model I cannot be Socrates."),
        ])
    finally:
        judge.close()
    assert table["blocks"]["scored"] == 1 and table["blocks"]["unusable"] == 1
    assert table["blocks"]["stability"] == 7 and table["baseline"]["stability"] == 2
    assert table["baseline"]["behavior"] == 6
    prompt = FakeJudge.prompts[0]
    assert "Character: Socrates" in prompt and "Are you an AI?" in prompt
    assert "stonemason" in prompt and "real_knowledge" in prompt


def test_a_refusing_judge_is_a_clear_error(judge_url):
    characters = discover_characters(SHIPPED).characters
    judge = Judge(judge_url, "fake-judge", api_key="wrong")
    with pytest.raises(JudgeError, match="the judge answered 401"):
        judge.score(characters["socrates"], reply("blocks", "Hello."))
    judge.close()


@pytest.mark.parametrize(("content", "scores"), [
    ('{"behavior": 5, "utterance": 5, "relevance": 5, "stability": 5, "real_knowledge": 5, '
     '"virtual_knowledge": 5, "transfer": 5}', dict.fromkeys(CRITERIA, 5)),
    ('Scores: {"behavior": 9, "utterance": 5}', None),  # out of range and incomplete
    ('{"behavior": true, "utterance": 5}', None),
    ("no JSON at all", None),
])
def test_parse_scores_accepts_only_complete_in_range_answers(content, scores):
    assert parse_scores(content) == scores


def test_the_eval_command_adds_the_judges_scores(judge_url, tmp_path, monkeypatch):
    runtime = make_tiny_runtime(tmp_path, {"socrates": "Socrates"})
    script = tmp_path / "one.yaml"
    script.write_text(json.dumps({"name": "one", "characters": ["socrates"],
                                  "exchanges": [{"ask": "Who are you?"}]}))
    monkeypatch.setenv("NEEKO_JUDGE_KEY", "judge-key")
    settings = runtime.settings
    assert main(["eval", str(script), "--base-model", "tiny", "--characters-dir",
                 str(settings.characters_dir), "--cache-dir", str(settings.cache_dir),
                 "--systems", "blocks", "--out", str(tmp_path / "out"), "--max-new-tokens", "4",
                 "--judge-url", judge_url, "--judge-model", "fake-judge"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["meta"]["judge"] == "fake-judge"
    assert results["judge"]["blocks"]["scored"] + results["judge"]["blocks"]["unusable"] == 1
    assert "LLM judge (fake-judge), 1-7" in (tmp_path / "out" / "report.md").read_text()

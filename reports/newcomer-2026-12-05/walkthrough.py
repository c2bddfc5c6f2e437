"""Time what a newcomer does after the README's first command, in a real headless Chromium:
open the web app on the embedded model, chat with Socrates, add a character from a Tavern
card by fusion in the wizard, and chat with it.

    python reports/newcomer-2026-12-05/walkthrough.py

Uses a fresh temporary data folder (the user's is not touched) and the converted model in
the user cache. Prints one line per step with its seconds and writes walkthrough.json here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from neeko_app.chat.session import SessionStore
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
CARD = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
    "name": "Mira Vance", "description": "A lighthouse keeper on a storm-beaten island who "
    "keeps a logbook of every ship that passes.", "personality": "Calm, wry and stubborn.",
    "scenario": "A stormy night on Gull Rock.", "first_mes": "Shut the door, the wind bites.",
    "mes_example": "<START>\n{{user}}: Why stay out here?\n{{char}}: Because the ships need "
                   "a light, and I need the quiet."}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("neeko serve exited")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def reply_saved(sessions: SessionStore, text: str, timeout_s: float = 300) -> str:
    """Wait until the reply to `text` is saved in a session; its text."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for session_id in sessions.list_ids():
            turns = sessions.load(session_id).turns
            asked = [i for i, turn in enumerate(turns) if turn.role == "user"]
            if asked and turns[asked[-1]].text == text and len(turns) > asked[-1] + 1:
                return turns[asked[-1] + 1].text
        time.sleep(0.2)
    raise TimeoutError(f"no reply to {text!r}")


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="neeko-newcomer-"))
    card = data / "mira.json"
    card.write_text(json.dumps(CARD))
    sessions = SessionStore(data / "sessions")
    port = free_port()
    neeko = Path(sys.executable).with_name("neeko")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    server = subprocess.Popen([str(neeko), "serve", "--port", str(port), "--data-dir",
                               str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url, server)
        timings["neeko serve until the page answers"] = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page()
            page.set_default_timeout(300_000)
            step = time.perf_counter()
            page.goto(url)
            page.locator("#picker tr", has_text="Socrates").click()
            expect(page.locator("#chat-title")).to_contain_text("Socrates")
            timings["open the page and pick Socrates"] = time.perf_counter() - step
            replies = {}
            for name, question in (("Socrates", "What is justice?"),):
                step = time.perf_counter()
                page.fill("#message textarea", question)
                page.press("#message textarea", "Enter")
                replies[name] = reply_saved(sessions, question)
                timings[f"ask {name} and get the whole reply"] = time.perf_counter() - step
            step = time.perf_counter()
            page.get_by_role("tab", name="Add character").click()
            page.locator("#card-file input[type=file]").set_input_files(str(card))
            page.locator("#read").click()
            expect(page.locator("#field-name textarea")).to_have_value("Mira Vance")
            page.locator("#add").click()
            expect(page.locator("#add-status")).to_contain_text("was added")
            timings["wizard: upload a card, read it, add by fusion"] = time.perf_counter() - step
            step = time.perf_counter()
            page.locator("#chat-now").click()
            expect(page.locator("#chat-title")).to_contain_text("Mira Vance")
            question = "How many ships passed this week?"
            page.fill("#message textarea", question)
            page.press("#message textarea", "Enter")
            replies["Mira Vance"] = reply_saved(sessions, question)
            timings["chat with the new character and get the whole reply"] = (
                time.perf_counter() - step)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    for what, seconds in timings.items():
        print(f"{seconds:6.1f} s  {what}")
    for name, text in replies.items():
        print(f"{name}: {text}")
    atomic_write_json(HERE / "walkthrough.json", {"seconds": timings, "replies": replies})


if __name__ == "__main__":
    main()

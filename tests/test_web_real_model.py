"""Smoke test of the main command: `neeko serve` on the real embedded model with the shipped
characters and their trained blocks, used through a real headless Chromium.

Memory and sessions go to a temporary folder; the converted model comes from the user cache.
Its screenshot, chat-real-model.png, goes to a temporary folder, or to $NEEKO_SCREENSHOTS_DIR
when set: that is how the README's assets/screenshots/chat-real-model.png is refreshed
(docs/screenshots.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from neeko_app.chat.sentences import cut_after_sentences
from neeko_app.chat.session import SessionStore
from tests.test_memory import free_port
from tests.test_serve_cli import start_server, wait_for_page
from tests.test_web_e2e import (  # noqa: F401  (browser and screenshots are fixtures)
    TIMEOUT_MS,
    assert_streamed,
    bot_messages,
    browser,
    expect,
    pick,
    record_last_reply,
    recorded_replies,
    say,
    screenshots,
)

pytestmark = pytest.mark.real_model


@contextmanager
def serving_real_model(tmp_path: Path) -> Iterator[tuple[str, SessionStore, str]]:
    """`neeko serve` on the real model (memory and sessions under `tmp_path`), 60-token
    replies: (URL, its session store, the page's text once it answers); stopped afterwards."""
    port = free_port()
    sessions = SessionStore(tmp_path / "sessions")
    env = os.environ | {"NEEKO_SESSIONS_DIR": str(sessions.directory)}
    log = tmp_path / "serve.log"
    server = start_server("serve", ["--port", str(port), "--memory-dir",
                                    str(tmp_path / "memory"), "--max-new-tokens", "60"], env, log)
    try:
        url = f"http://127.0.0.1:{port}/"
        yield url, sessions, wait_for_page(server, url, timeout_s=600, log=log)
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_real_model_streams_an_in_character_reply_in_the_browser(
        browser, screenshots, tmp_path):  # noqa: F811
    with serving_real_model(tmp_path) as (url, sessions, page_text):
        assert "Neeko: role-play chat" in page_text
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#message textarea")
        for name in ("Ludwig van Beethoven", "Socrates", "Cleopatra VII", "Julius Caesar"):
            expect(page.locator("#picker")).to_contain_text(name)
        pick(page, "Ludwig van Beethoven")

        record_last_reply(page)
        [reply] = say(page, sessions, "What are you composing these days?")
        assert_streamed(recorded_replies(page), reply)
        # a sampled one-sentence reply may be one word ("Nothing."), but it is a word
        assert re.search(r"[^\W\d_]{2,}", reply), f"a reply without a word: {reply!r}"
        assert cut_after_sentences(reply, 1) is None, f"more than one sentence: {reply!r}"
        assert "<end_of_turn>" not in reply and "You are" not in reply, reply
        expect(page.locator("#memory")).to_contain_text("Knowledge")
        page.mouse.move(0, 0)
        page.screenshot(path=str(screenshots / "chat-real-model.png"))
        print("Beethoven:", reply)
        page.close()

"""The persona and the versions of a reply on the real embedded model, through `neeko serve`
in a real headless Chromium: the README's screenshots of these features.

persona-real-model.png and swipes-real-model.png go to a temporary folder, or to
$NEEKO_SCREENSHOTS_DIR when set (docs/screenshots.md). The persona file goes to the test's
own data folder (tests/conftest.py), memory and sessions to a temporary folder.
"""

from __future__ import annotations

import pytest

from tests.test_web_e2e import (  # noqa: F401  (browser and screenshots are fixtures)
    TIMEOUT_MS,
    bot_messages,
    browser,
    expect,
    pick,
    say,
    screenshots,
    wait_until,
)
from tests.test_web_real_model import serving_real_model

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_the_persona_and_the_versions_of_a_reply_on_the_real_model(
        browser, screenshots, tmp_path):  # noqa: F811
    with serving_real_model(tmp_path) as (url, sessions, _):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#message textarea")
        pick(page, "Ludwig van Beethoven")

        page.get_by_text("Your persona").click()
        page.locator("#persona-name input").fill("Clara")
        page.locator("#persona-description textarea").fill(
            "A young pianist from Bonn who comes to you for lessons.")
        page.locator("#persona-save").click()
        saved = page.get_by_text("the characters now know you as Clara")
        expect(saved).to_be_visible()
        [reply] = say(page, sessions, "Good morning, maestro! Shall we begin today's lesson?")
        print("Beethoven to Clara:", reply)
        expect(saved).to_be_hidden(timeout=30_000)  # the toast closes by itself
        page.mouse.move(0, 0)
        page.screenshot(path=str(screenshots / "persona-real-model.png"), full_page=True)
        page.get_by_text("Your persona").click()  # folded again: the chat fills the view

        def versions() -> int:
            return len(sessions.load(sessions.list_ids()[0]).versions_of(1).texts)

        for count in (2, 3):  # → past the newest version writes a new one
            page.locator("#next").click()
            wait_until(lambda count=count: versions() == count, f"version {count}", 300)
            expect(page.locator("#versions")).to_have_text(f"Reply {count} of {count}")
        page.locator("#previous").click()
        expect(page.locator("#versions")).to_have_text("Reply 2 of 3")
        expect(bot_messages(page)).to_have_count(2)
        page.evaluate("window.scrollTo(0, 0)")
        page.mouse.move(0, 0)
        page.screenshot(path=str(screenshots / "swipes-real-model.png"))
        page.close()

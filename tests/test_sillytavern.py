"""SillyTavern as a real client of `neeko api`: the pinned npm release runs on loopback with a
throwaway data folder and talks to `neeko api` through a recording proxy; headless Chromium
drives SillyTavern's own page like a user.

- Set-up as the README tells it: our preset (docs/sillytavern/neeko.json) imported, Chat
  Completion source "Custom (OpenAI-compatible)" at the API's /v1, a character id picked as
  the model.
- Cards exported by neeko (PNG and JSON, as the web app exports them) import into SillyTavern,
  which shows their name, description and greeting.
- A message sent from SillyTavern's page reaches the API, and the reply the page shows is the
  one the API streamed back; with SillyTavern's Default preset the card goes in as system
  messages (too long for the tiny model's context: the page shows the API's error).

Slow (SillyTavern compiles its front end on every fresh data folder; about two minutes in
all): `python -m pytest -m slow tests/test_sillytavern.py`. Needs node and npm (the first run
installs SillyTavern from npm into the cache, about a minute) and /usr/bin/chromium; skipped,
saying so, without them.

The API runs the tiny model; `NEEKO_SILLYTAVERN_MODEL=embedded` runs the real one with the
shipped characters (the README's screenshot; `NEEKO_SCREENSHOTS_DIR` keeps it). What
SillyTavern sent is checked against tests/data/sillytavern_request*.json (the API's tests
replay them); `NEEKO_SILLYTAVERN_CAPTURE=1` rewrites them from this run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from neeko_app.characters.card import Character
from neeko_app.characters.registry import discover_characters
from neeko_app.config import PROJECT_ROOT
from neeko_app.storage import atomic_write_json
from neeko_app.ui.avatars import avatar_path
from neeko_app.ui.cards import export_card
from tests import sillytavern
from tests.recording_proxy import Exchange, recording_proxy
from tests.test_memory import free_port, stop
from tests.test_serve_cli import start_server, wait_for_page
from tests.test_web_e2e import (  # noqa: F401  (fixtures)
    CHROMIUM,
    TIMEOUT_MS,
    browser,
    expect,
    screenshots,
    wait_until,
)
from tests.tiny_characters import make_tiny_runtime

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(sillytavern.missing_tools()),
                       reason=f"SillyTavern needs {' and '.join(sillytavern.missing_tools())} "
                              "on the PATH"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="SillyTavern's page is driven by Debian's chromium at "
                              "/usr/bin/chromium (apt-get install chromium)"),
]

SHIPPED = PROJECT_ROOT / "characters"
PRESET = PROJECT_ROOT / "docs" / "sillytavern" / "neeko.json"
CAPTURED = Path(__file__).parent / "data" / "sillytavern_request.json"  # with our preset
CAPTURED_DEFAULT = CAPTURED.with_name("sillytavern_request_default_preset.json")
MODEL = os.environ.get("NEEKO_SILLYTAVERN_MODEL", "tiny")
CHAT_WITH, SECOND = "socrates", "newton"  # their cards go in as PNG and as JSON
QUESTION = "What is justice, Socrates?"
# what a role-play user typically adds in Advanced Formatting: stop where the model would
# begin to speak for the user
STOPPING_STRINGS = ["\n{{user}}:"]


@dataclass
class Stack:
    """SillyTavern's page, and what went between it and the API."""

    url: str  # SillyTavern's page
    api_url: str  # the /v1 URL SillyTavern is given (the proxy's)
    exchanges: list[Exchange]  # what went through the proxy, in order
    characters: dict[str, Character]  # what the API serves
    data_root: Path  # SillyTavern's data folder


@pytest.fixture(scope="module")
def server_dir() -> Path:
    try:
        return sillytavern.install()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:  # no registry, ...
        pytest.fail(f"could not install SillyTavern {sillytavern.VERSION}: {err}")


def characters_dir(root: Path) -> Path:
    """The characters the API serves: on the tiny model, two with random blocks and the shipped
    cards; on the real model, the shipped characters themselves."""
    if MODEL != "tiny":
        return SHIPPED
    runtime = make_tiny_runtime(root, {CHAT_WITH: "Socrates", SECOND: "Isaac Newton"})
    for slug in (CHAT_WITH, SECOND):
        shutil.copy(SHIPPED / slug / "character.json",
                    runtime.settings.characters_dir / slug / "character.json")
    return runtime.settings.characters_dir


@pytest.fixture(scope="module")
def neeko_api(tmp_path_factory) -> Iterator[tuple[str, dict[str, Character]]]:
    """`neeko api` on a free port: (its root URL, the characters it serves). On the tiny model
    without memory (fast); on the real model as a user runs it."""
    root = tmp_path_factory.mktemp("neeko")
    characters = characters_dir(root)
    tiny = ["--no-memory", "--cache-dir", str(root / "cache")] if MODEL == "tiny" else []
    port, log = free_port(), root / "api.log"
    server = start_server("api", ["--base-model", MODEL, "--characters-dir", str(characters),
                                  "--data-dir", str(root), "--port", str(port), *tiny],
                          os.environ | {"NEEKO_SESSIONS_DIR": str(root / "sessions")}, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_page(server, f"{url}/v1/models", timeout_s=600, log=log)
        yield url, discover_characters(characters).characters
    finally:
        stop(server, timeout_s=30)


@pytest.fixture(scope="module")
def stack(server_dir, neeko_api, tmp_path_factory) -> Iterator[Stack]:
    """SillyTavern running, with the API behind a recording proxy."""
    api_url, characters = neeko_api
    home = tmp_path_factory.mktemp("sillytavern")
    proxy_port = free_port()
    with recording_proxy(api_url, proxy_port) as exchanges, sillytavern.running(
            server_dir, home, free_port(), STOPPING_STRINGS) as url:
        yield Stack(url, f"http://127.0.0.1:{proxy_port}/v1", exchanges, characters,
                    home / "data")


@pytest.fixture(scope="module")
def cards(stack, tmp_path_factory) -> dict[str, Path]:
    """The card files neeko exports (as the web app's export does): a PNG for the character
    we chat with, a JSON card for the other."""
    out = tmp_path_factory.mktemp("cards")
    exported = {}
    for slug, kind in ((CHAT_WITH, ".png"), (SECOND, ".json")):
        character = stack.characters[slug]
        portrait = avatar_path(character, out).read_bytes()
        [exported[slug]] = [p for p in export_card(character, portrait, out) if p.suffix == kind]
    return exported


@pytest.fixture(scope="module")
def page(browser, stack, cards) -> Iterator:  # noqa: F811  (a fixture)
    """SillyTavern's page set up as the README says: our preset imported, connected to the API
    with a character id as the model, neeko's cards imported."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(stack.url)
    page.wait_for_selector("#send_textarea")
    connect(page, stack.api_url, CHAT_WITH)
    import_preset(page, PRESET)
    for path in cards.values():
        import_card(page, path)
    yield page
    page.close()


# --- what a user does on SillyTavern's page -------------------------------------------------


def drawer(page, icon: str, open_: bool) -> None:
    """Open or close one of the top bar's panels (`icon`: the id of its button)."""
    button = page.locator(f"#{icon}")
    if ("openIcon" in (button.get_attribute("class") or "").split()) != open_:
        button.click()
    expect(button).to_have_class(re.compile(r"\bopenIcon\b" if open_ else r"\bclosedIcon\b"))


def connect(page, api_url: str, model: str) -> None:
    """API Connections: Chat Completion, source Custom (OpenAI-compatible) at `api_url`,
    Connect, then pick `model` from the list the API gave."""
    drawer(page, "API-status-top", True)
    page.select_option("#main_api", "openai")
    page.select_option("#chat_completion_source", "custom")
    page.fill("#custom_api_url_text", api_url)
    page.locator("#api_button_openai").click()
    expect(page.locator("#rm_api_block .online_status_text:visible")).to_have_text("Valid")
    page.select_option("#model_custom_select", model)
    drawer(page, "API-status-top", False)


def import_preset(page, path: Path) -> None:
    """AI Response Configuration: import the Chat Completion preset `path` (it is selected)."""
    drawer(page, "leftNavDrawerIcon", True)
    page.locator("#openai_preset_import_file").set_input_files(str(path))
    expect(page.locator("#settings_preset_openai option:checked")).to_have_text(path.stem)
    preset = json.loads(path.read_text())
    expect(page.locator("#openai_max_context")).to_have_value(str(preset["openai_max_context"]))
    drawer(page, "leftNavDrawerIcon", False)


def choose_preset(page, name: str) -> None:
    """AI Response Configuration: select the Chat Completion preset `name`."""
    drawer(page, "leftNavDrawerIcon", True)
    page.select_option("#settings_preset_openai", label=name)
    expect(page.locator("#settings_preset_openai option:checked")).to_have_text(name)
    drawer(page, "leftNavDrawerIcon", False)


def import_card(page, path: Path) -> None:
    """Character Management: import the card file `path`, keeping its tags."""
    drawer(page, "rightNavDrawerIcon", True)
    page.locator("#rm_button_characters").click()
    before = character_entries(page).count()
    page.locator("#character_import_file").set_input_files(str(path))
    page.get_by_role("button", name="Import All").click()  # SillyTavern asks about tags
    expect(character_entries(page)).to_have_count(before + 1)
    drawer(page, "rightNavDrawerIcon", False)


def character_entries(page, name: str | None = None):
    entries = page.locator("#rm_print_characters_block .character_select")
    return entries.filter(has=page.locator(".ch_name", has_text=name)) if name else entries


def open_character(page, name: str) -> None:
    """Pick `name` in the character list; its chat opens."""
    drawer(page, "rightNavDrawerIcon", True)
    page.locator("#rm_button_characters").click()  # the list, not the last one opened
    character_entries(page, name).click()
    expect(page.locator("#chat .mes").first).to_have_attribute("ch_name", name)


def record_toasts(page) -> None:
    """Start keeping the text of every notification the page pops up (they fade away)."""
    page.evaluate("""() => {
        window.toastTexts = [];
        new MutationObserver(() => {
            for (const toast of document.querySelectorAll('#toast-container .toast')) {
                if (!window.toastTexts.includes(toast.innerText))
                    window.toastTexts.push(toast.innerText);
            }
        }).observe(document.body, {childList: true, subtree: true});
    }""")


def toasts(page) -> list[str]:
    """The notifications shown since `record_toasts`."""
    return page.evaluate("() => window.toastTexts")


def messages(page):
    return page.locator("#chat .mes")


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", [CHAT_WITH, SECOND])
def test_a_card_exported_by_neeko_shows_its_name_description_and_greeting(page, stack, slug):
    character = stack.characters[slug]
    open_character(page, character.name)
    expect(page.locator("#description_textarea")).to_have_value(character.description)
    expect(page.locator("#firstmessage_textarea")).to_have_value(character.greeting)
    expect(messages(page)).to_have_count(1)  # a new chat opens with the greeting
    expect(messages(page).first.locator(".mes_text")).to_have_text(character.greeting)
    drawer(page, "rightNavDrawerIcon", False)


def test_sillytavern_chats_with_a_neeko_character_through_the_api(
        page, stack, screenshots):  # noqa: F811  (a fixture)
    character = stack.characters[CHAT_WITH]
    exchange = send(page, stack, character.name, QUESTION)
    assert exchange.status == 200, exchange.response_body
    sent = exchange.request_json()
    assert sent["model"] == CHAT_WITH
    assert sent["messages"][-1] == {"role": "user", "content": QUESTION}
    reply = exchange.streamed_text()
    assert reply.strip(), "the API streamed an empty reply"
    expect(messages(page)).to_have_count(3)
    expect(page.locator("#mes_stop")).to_be_hidden()  # SillyTavern is done with the stream
    shown = messages(page).last
    expect(shown).to_have_attribute("ch_name", character.name)
    # the page renders the reply as Markdown (quotes and emphasis become markup): the same
    # letters and digits in the same order; SillyTavern's saved chat holds the text itself
    assert letters(shown.locator(".mes_text").inner_text()) == letters(reply)
    # SillyTavern saves the chat a moment after the stream ends
    wait_until(lambda: saved_reply(stack.data_root, character.name) == reply.strip(),
               "the reply to be saved")
    page.screenshot(path=str(screenshots / "sillytavern-chat.png"))
    check_captured(sent, CAPTURED)


def test_continue_in_sillytavern_goes_on_with_the_last_reply(page, stack):
    """SillyTavern's Continue sends the reply to go on with as the last assistant message
    (then a system nudge): the API continues it, and the page shows the two as one."""
    character = stack.characters[CHAT_WITH]
    first = send(page, stack, character.name, "Tell me about your teacher.")
    assert first.status == 200, first.response_body
    expect(page.locator("#mes_stop")).to_be_hidden()
    before = first.streamed_text()
    wait_until(lambda: saved_reply(stack.data_root, character.name) == before.strip(),
               "the first reply to be saved")
    sent_before = len(stack.exchanges)
    page.locator("#options_button").click()
    page.locator("#option_continue").click()

    def continued() -> Exchange | None:
        return next((e for e in stack.exchanges[sent_before:]
                     if e.method == "POST" and e.path == "/v1/chat/completions"), None)

    wait_until(lambda: continued() is not None, "the Continue request", timeout_s=300)
    exchange = continued()
    assert exchange.status == 200, exchange.response_body
    roles = [m["role"] for m in exchange.request_json()["messages"]]
    assert roles[-2:] == ["assistant", "system"], roles  # the reply, then the nudge
    more = exchange.streamed_text()
    assert more.strip(), "the API streamed nothing to add"
    assert exchange.request_json()["messages"][-2]["content"] == before.strip()
    wait_until(lambda: letters(saved_reply(stack.data_root, character.name))
               == letters(before + more), "the continued reply to be saved")


def test_sillytavern_default_preset_sends_the_card_as_system_messages(page, stack):
    """Without our preset, SillyTavern sends the card's text and example lines as system
    messages, which the API appends to the character's header: on the tiny model (a token per
    character) they overflow the context, and the page shows the API's error."""
    choose_preset(page, "Default")  # its connection fields replace ours: connect again
    connect(page, stack.api_url, SECOND)
    record_toasts(page)
    try:
        character = stack.characters[SECOND]
        exchange = send(page, stack, character.name, "Who are you?")
    finally:
        choose_preset(page, PRESET.stem)
    sent = exchange.request_json()
    system = [m for m in sent["messages"] if m["role"] == "system"]
    assert {"role": "system", "content": character.description} in system
    assert any(m.get("name") == "example_assistant" for m in system)  # the example lines
    if MODEL == "tiny":
        assert exchange.status == 400
        error = json.loads(exchange.response_body)["error"]
        assert error["code"] == "context_length_exceeded"
        wait_until(lambda: any(error["message"] in text for text in toasts(page)),
                   f"the page to show {error['message']!r}")
    else:
        assert exchange.status == 200, exchange.response_body
    check_captured(sent, CAPTURED_DEFAULT)


def send(page, stack: Stack, name: str, text: str) -> Exchange:
    """Open `name`'s chat, send `text` from the page; the chat completion that went through
    the proxy for it, once the API has answered it in full."""
    open_character(page, name)
    drawer(page, "rightNavDrawerIcon", False)
    before = len(stack.exchanges)
    page.fill("#send_textarea", text)
    page.locator("#send_but").click()

    def chat_request() -> Exchange | None:
        return next((e for e in stack.exchanges[before:]
                     if e.method == "POST" and e.path == "/v1/chat/completions"), None)

    wait_until(lambda: chat_request() is not None, "SillyTavern's request to reach the API",
               timeout_s=300)
    return chat_request()


def letters(text: str) -> str:
    return re.sub(r"[\W_]", "", text)


def saved_reply(data_root: Path, name: str) -> str:
    """The last message of `name`'s newest chat file, as SillyTavern saved it."""
    [chat] = (data_root / "default-user" / "chats" / name).glob("*.jsonl")
    *_, last = chat.read_text().splitlines()
    return json.loads(last)["mes"]


def check_captured(sent: dict, path: Path) -> None:
    """The stored request `path` has the shape SillyTavern sends now: the same fields and the
    same roles in the same order. With NEEKO_SILLYTAVERN_CAPTURE=1 it is rewritten from `sent`
    instead (nothing in it is machine-specific: the model is the character id, the texts are
    the shipped card's and the test's)."""
    if os.environ.get("NEEKO_SILLYTAVERN_CAPTURE") == "1":
        atomic_write_json(path, sent)
    stored = json.loads(path.read_text())
    assert sorted(stored) == sorted(sent), "SillyTavern sends other fields now: recapture"
    assert [m["role"] for m in stored["messages"]] == [m["role"] for m in sent["messages"]]

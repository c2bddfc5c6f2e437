"""The web app in a real headless Chromium: the app runs in-process on 127.0.0.1 on the tiny
model (with real Chroma memory); the tests click through it like a user.

Needs Debian's chromium at /usr/bin/chromium (CI installs it); skipped, saying so, without it.
Screenshots of the chat, the wizard and the Evaluate tab go to a temporary folder, or to
$NEEKO_SCREENSHOTS_DIR when set: that is how assets/screenshots/ is refreshed
(docs/screenshots.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from neeko_app.characters.card import character_from_dict
from neeko_app.characters.tavern import LoreEntry, card_to_png
from neeko_app.chat.engine import ChatEngine, ContextLimits
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.scheduler import BatchScheduler
from neeko_app.chat.session import SessionStore
from neeko_app.config import PROJECT_ROOT, Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.knowledge import index_characters
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.ui.app import build_app, launch
from tests.test_memory import free_port
from tests.test_tavern_cards import FERRYMAN_TRAITS, card_png, ferryman
from tests.test_ui_reports import write_fake_report
from tests.tiny_characters import make_tiny_runtime

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="end-to-end web tests need Debian's chromium at /usr/bin/chromium "
           "(apt-get install chromium; CI installs it)")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

SHIPPED = PROJECT_ROOT / "characters"
SCREENSHOTS_ENV = "NEEKO_SCREENSHOTS_DIR"  # where to keep the screenshots (docs/screenshots.md)
DECODING = DecodingSettings(max_new_tokens=16, temperature=0)
TIMEOUT_MS = 60_000
LIGHTHOUSE_FACT = "The lighthouse on Gull Rock has exactly 132 steps and a brass bell."
MIRA = {"name": "Mira Vance", "slug": "mira-vance",
        "description": "A lighthouse keeper on a storm-beaten island who keeps a logbook.",
        "personality": "Calm, wry and stubborn.", "scenario": "A stormy night on Gull Rock.",
        "greeting": "Shut the door, the wind bites. Tea?"}
PROFILE = ("# {name}\n\n{name} is an astronomer who measures the sky without a telescope."
           "\n\nHe keeps an observatory on an island.")


def transcript(name: str, conversations: int) -> str:
    return "\n".join(
        f"<START>\nYou: Tell me about the stars, number {i}.\n"
        f"{name}: I measured them night after night, {i} times over.\n"
        f"You: And the comet?\n{name}: It flew beyond the Moon; the heavens can change."
        for i in range(conversations))


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[tuple[str, ChatEngine]]:
    """The app on a free port: Socrates and Newton with (random) blocks, Cleopatra by fusion,
    with the shipped cards and profiles."""
    root = tmp_path_factory.mktemp("web")
    runtime = make_tiny_runtime(root, trained={"socrates": "Socrates", "newton": "Isaac Newton"},
                                fused={"cleopatra": "Cleopatra"})
    for slug in runtime.characters:
        for name in ("character.json", "profile.md"):
            shutil.copy(SHIPPED / slug / name, runtime.settings.characters_dir / slug / name)
    runtime = load_runtime(runtime.settings, report=lambda _: None)
    memory = MemoryStore.open(root / "memory")
    index_characters(memory, runtime.characters.values())
    # no stop tokens: a random model's reply could otherwise end before its first word
    scheduler = BatchScheduler(runtime.model, runtime.base.tokenizer, stop_ids=[])
    settings = dataclasses.replace(runtime.settings, reports_dir=root / "reports")
    write_fake_report(settings.reports_dir / "tiny-run")
    with served(runtime, memory, scheduler, settings, root / "sessions") as (url, engine):
        yield url, engine


@contextmanager
def served(runtime: Runtime, memory: MemoryStore, scheduler: BatchScheduler,
           settings: Settings, sessions_dir: Path, decoding: DecodingSettings = DECODING
           ) -> Iterator[tuple[str, ChatEngine]]:
    """The web app on a free port with short tiny-model replies: (URL, its engine); closed
    afterwards."""
    engine = ChatEngine(runtime, memory, decoding, sessions=SessionStore(sessions_dir),
                        limits=ContextLimits(context_tokens=1024, max_reply_tokens=32),
                        scheduler=scheduler)
    demo = build_app(engine, settings)
    port = free_port()
    launch(demo, settings, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", engine
    finally:
        demo.close()
        engine.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the screenshots go: $NEEKO_SCREENSHOTS_DIR (relative to the project root), else
    a temporary folder, so a test run leaves the checkout as it was."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    folder = PROJECT_ROOT / chosen if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app) -> Iterator:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(app[0])
    page.wait_for_selector("#message textarea")  # a Gradio page never reaches networkidle
    yield page
    page.close()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def bot_messages(page):
    return page.locator("#chat .bot-row")


def record_last_reply(page) -> None:
    """Start recording every text the next new bot message shows, as it changes."""
    page.evaluate("""() => {
        window.replyTexts = [];
        const chat = document.querySelector('#chat');
        const before = chat.querySelectorAll('.bot-row').length;
        new MutationObserver(() => {
            const rows = chat.querySelectorAll('.bot-row');
            const text = rows.length > before ? rows[before].innerText.trim() : '';
            if (text && text !== window.replyTexts.at(-1)) window.replyTexts.push(text);
        }).observe(chat, {childList: true, subtree: true, characterData: true});
    }""")


def recorded_replies(page) -> list[str]:
    """The texts the last bot message went through since `record_last_reply`."""
    return page.evaluate("() => window.replyTexts")


def assert_streamed(shown: list[str], reply: str) -> None:
    """The page showed `reply` growing: at least one shorter piece of it before the whole."""
    def words(text: str) -> str:
        return re.sub(r"\W", "", text)

    assert shown and words(reply) in words(shown[-1]), (reply, shown)
    growing = [text for text in shown[:-1] if 0 < len(text) < len(shown[-1])]
    assert growing, f"the reply appeared at once, not streamed: {shown}"


def pick(page, name: str) -> None:
    page.locator("#picker tr", has_text=name).click()
    expect(page.locator("#chat-title")).to_contain_text(name)


def say(page, sessions: SessionStore, text: str, replies: int = 1) -> list[str]:
    """Send `text` and wait until its replies are shown and saved; the saved replies."""
    before = bot_messages(page).count()
    page.fill("#message textarea", text)
    page.press("#message textarea", "Enter")

    def saved() -> list[str]:
        session = sessions.load(sessions.list_ids()[0])
        asked = [i for i, turn in enumerate(session.turns) if turn.role == "user"]
        if not asked or session.turns[asked[-1]].text != text:
            return []
        return [turn.text for turn in session.turns[asked[-1] + 1:]]

    wait_until(lambda: len(saved()) == replies, f"{replies} saved replies to {text!r}")
    expect(bot_messages(page)).to_have_count(before + replies)
    expect(page.locator("#message textarea")).to_have_value("")
    return saved()


def upload(page, selector: str, path: Path) -> None:
    """Put `path` into the file box `selector` (replacing the file it shows, if any)."""
    shown = page.locator(f"{selector} button[aria-label=Clear]")
    if shown.count():
        shown.click()
    page.locator(f"{selector} input[type=file]").set_input_files(str(path))
    expect(page.locator(selector)).to_contain_text(path.stem)


def test_chat_with_a_character_streams_a_reply_and_shows_memory(page, app, screenshots):
    url, engine = app
    pick(page, "Socrates")
    greeting = engine.runtime.characters["socrates"].greeting
    expect(bot_messages(page).first).to_contain_text(greeting[:40])

    record_last_reply(page)
    [reply] = say(page, engine.sessions, "What did your mother do for a living?")
    assert reply.strip(), "the tiny model gave an empty reply"
    assert_streamed(recorded_replies(page), reply)
    expect(page.locator("#memory")).to_contain_text("Knowledge")
    expect(page.locator("#memory")).to_contain_text("profile")
    page.mouse.move(0, 0)  # no hover highlight in the screenshot
    page.screenshot(path=str(screenshots / "chat.png"))

    page.get_by_role("button", name="↶ Undo").click()
    expect(bot_messages(page)).to_have_count(1)
    expect(page.locator("#chat")).not_to_contain_text("What did your mother do")


def test_a_saved_session_is_resumed_after_a_reload(page, app):
    url, engine = app
    pick(page, "Isaac Newton")
    say(page, engine.sessions, "Tell me about the prism.")
    page.reload()
    page.wait_for_selector("#message textarea")
    page.get_by_text("Saved sessions").click()
    page.locator("#saved input").click()
    page.get_by_role("option", name=re.compile("Isaac Newton · “Tell me about the prism.”")).click()
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#chat")).to_contain_text("Tell me about the prism.")
    expect(page.locator("#chat-title")).to_contain_text("Isaac Newton")


def test_group_scene_shows_each_speaker_by_name(page, app):
    url, engine = app
    page.get_by_text("Group scene", exact=True).click()
    for name in ("Socrates", "Isaac Newton"):
        page.locator("#cast input").click()
        page.get_by_role("option", name=name).click()
    page.get_by_role("button", name="Start scene").click()
    expect(page.locator("#chat-title")).to_contain_text("Group scene: Socrates, Isaac Newton")

    say(page, engine.sessions, "Socrates and Newton, what is light?", replies=2)
    expect(bot_messages(page).nth(2)).to_contain_text("Socrates:")
    expect(bot_messages(page).nth(3)).to_contain_text("Isaac Newton:")
    expect(page.locator("#memory")).to_contain_text("For Isaac Newton")


def test_wizard_adds_a_png_card_by_fusion_with_its_lorebook(page, app, tmp_path, screenshots):
    url, engine = app
    card = tmp_path / "mira.png"
    card.write_bytes(card_to_png(character_from_dict(MIRA),
                                 lorebook=[LoreEntry(("lighthouse",), LIGHTHOUSE_FACT, "Rock")]))
    page.get_by_role("tab", name="Add character").click()
    upload(page, "#card-file", card)
    page.locator("#read").click()
    expect(page.locator("#read-notes")).to_contain_text("Read Mira Vance from mira.png")
    expect(page.locator("#field-name textarea")).to_have_value("Mira Vance")
    page.locator("#field-greeting textarea").fill("Shut the door! The wind bites.")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text("Mira Vance was added")
    page.mouse.move(0, 0)
    page.screenshot(path=str(screenshots / "wizard.png"), full_page=True)
    folder = engine.runtime.settings.characters_dir / "mira-vance"
    assert json.loads((folder / "lorebook.json").read_text())[0]["content"] == LIGHTHOUSE_FACT

    page.locator("#chat-now").click()
    expect(page.locator("#chat-title")).to_contain_text("Mira Vance")
    expect(bot_messages(page).first).to_contain_text("Shut the door! The wind bites.")
    say(page, engine.sessions, "How many steps does your lighthouse have?")
    expect(page.locator("#memory")).to_contain_text("lore")
    expect(page.locator("#memory")).to_contain_text("132 steps")
    expect(page.locator("#picker")).to_contain_text("Mira Vance")


def test_wizard_shows_a_real_shaped_cards_profile_and_makes_its_picture_the_avatar(
        page, app, tmp_path):
    card = tmp_path / "corvin.png"
    card.write_bytes(card_png(ferryman()))
    page.get_by_role("tab", name="Add character").click()
    upload(page, "#card-file", card)
    page.locator("#read").click()
    expect(page.locator("#read-notes")).to_contain_text("2 example conversations (2 from the card)")
    expect(page.locator("#field-description textarea")).to_have_value(FERRYMAN_TRAITS)
    expect(page.locator("#profile textarea")).to_have_value(
        re.compile(r"^\[Corvin Ashdown's Personality= .*river Marrow\.\]$", re.DOTALL))
    portrait = page.locator("#portrait img")
    wait_until(lambda: portrait.evaluate("img => img.naturalHeight") == 512, "the portrait")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text("Corvin Ashdown was added")
    avatar = page.locator("#picker tr", has_text="Corvin Ashdown").locator("img")
    expect(avatar).to_have_attribute("src", re.compile(r"/corvin-ashdown-[0-9a-f]{16}\.png$"))


def read_profile_and_transcript(page, tmp_path: Path, name: str, conversations: int) -> None:
    """Wizard step 1: a Markdown profile of `name` and a `Name: line` transcript, read."""
    stem = name.split()[0]
    (tmp_path / f"{stem}.md").write_text(PROFILE.format(name=name))
    (tmp_path / f"{stem}.txt").write_text(transcript(stem, conversations))
    page.get_by_role("tab", name="Add character").click()
    upload(page, "#card-file", tmp_path / f"{stem}.md")
    upload(page, "#dialogues-file", tmp_path / f"{stem}.txt")
    page.locator("#read").click()
    expect(page.locator("#read-notes")).to_contain_text(f"{conversations} example conversations")


def test_wizard_trains_a_new_block_from_a_profile_and_a_transcript(page, app, tmp_path):
    url, engine = app
    blocks_before = list(engine.runtime.model.block_names)
    read_profile_and_transcript(page, tmp_path, "Tycho Brahe", 6)
    expect(page.locator("#field-slug textarea")).to_have_value("tycho-brahe")
    expect(page.locator("#mode input[value=expansion]")).to_be_checked()
    page.locator("#epochs input[type=number]").fill("1")
    page.locator("#batch-size input[type=number]").fill("4")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text(
        re.compile(r"Tycho Brahe was added: its own block was trained in 2 steps"))
    assert engine.runtime.model.block_names == [*blocks_before, "tycho-brahe"]
    assert (engine.runtime.settings.characters_dir / "tycho-brahe" / "block.safetensors").is_file()

    page.locator("#chat-now").click()
    expect(page.locator("#chat-title")).to_contain_text("Tycho Brahe")
    [reply] = say(page, engine.sessions, "What did you see in 1572?")
    assert reply.strip()


def test_a_cancelled_training_adds_nothing(page, app, tmp_path):
    url, engine = app
    blocks_before = list(engine.runtime.model.block_names)
    read_profile_and_transcript(page, tmp_path, "Hipparchus", 200)
    page.locator("#epochs input[type=number]").fill("10")
    page.locator("#batch-size input[type=number]").fill("1")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text("/2000 · epoch 1 · loss")
    page.locator("#cancel").click()
    expect(page.get_by_text("Cancelling after the current step")).to_be_visible()  # a toast
    expect(page.locator("#add-status")).to_contain_text("Training cancelled. Nothing was added.")
    assert engine.runtime.model.block_names == blocks_before
    assert not (engine.runtime.settings.characters_dir / "hipparchus").exists()
    assert "hipparchus" not in engine.runtime.characters


def test_a_character_is_exported_as_png_and_json_cards(page, app):
    page.get_by_text("Export a character card").click()
    page.locator("#export-pick input").click()
    page.get_by_role("option", name="Socrates").click()
    page.get_by_role("button", name="Export PNG + JSON").click()
    for name in ("socrates.png", "socrates.json"):  # download links to the exported files
        expect(page.locator(f"#card-files a[href$='/{name}']")).to_have_count(1)


def test_the_evaluate_tab_shows_the_newest_report_with_its_plots(page, app, screenshots):
    page.get_by_role("tab", name="Evaluate").click()
    expect(page.locator("#report-picker input")).to_have_value(
        "tiny-run (blocks, profile-prompt)")
    expect(page.locator("#report-text")).to_contain_text("Role identification per character")
    expect(page.locator("#report-text table").first).to_contain_text("profile-prompt")
    plot = page.locator("#report-text img").first
    expect(plot).to_be_visible()
    wait_until(lambda: plot.evaluate("img => img.naturalWidth") > 100, "the plot to load")
    page.screenshot(path=str(screenshots / "evaluate.png"), full_page=True)


def test_broken_or_duplicate_uploads_say_what_is_wrong_and_change_nothing(page, app, tmp_path):
    url, engine = app
    characters_dir = engine.runtime.settings.characters_dir
    before = sorted(p.name for p in characters_dir.iterdir())
    page.get_by_role("tab", name="Add character").click()

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    upload(page, "#card-file", broken)
    page.locator("#read").click()
    expect(page.locator("#read-notes")).to_contain_text("Could not read the files.")
    expect(page.locator("#read-notes")).to_contain_text("broken.png: PNG is truncated")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text("Nothing to add yet")

    socrates = tmp_path / "socrates.json"
    shutil.copy(SHIPPED / "socrates" / "character.json", socrates)
    upload(page, "#card-file", socrates)
    page.locator("#read").click()
    expect(page.locator("#field-name textarea")).to_have_value("Socrates")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text(
        "Could not add the character. the id 'socrates' is taken")
    page.locator("#field-slug textarea").fill("../socrates")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text("invalid character id '../socrates'")
    page.locator("#field-slug textarea").fill("socrates-2")
    page.locator("#add").click()
    expect(page.locator("#add-status")).to_contain_text("a character named 'Socrates' already")
    assert sorted(p.name for p in characters_dir.iterdir()) == before
    assert page.locator("text=Traceback").count() == 0

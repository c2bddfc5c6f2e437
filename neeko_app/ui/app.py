"""The Gradio web app: Chat and Add-character tabs over one `ChatEngine`, and an Evaluate
tab showing the reports `neeko eval` wrote."""

from __future__ import annotations

import logging

import gradio as gr
from starlette.middleware import Middleware

from neeko_app.chat.engine import ChatEngine
from neeko_app.config import Settings
from neeko_app.serving.limits import RequestLimits
from neeko_app.ui.avatars import SHIPPED_AVATARS
from neeko_app.ui.cards import MAX_UPLOAD_BYTES
from neeko_app.ui.chat_tab import ChatTab
from neeko_app.ui.evaluate_tab import EvaluateTab
from neeko_app.ui.wizard_tab import WizardTab

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_CONCURRENCY = 8
# Local fonts only: the app must not reach out to a font CDN (offline hosts).
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])
CSS = """
#picker .caption-label { white-space: normal; font-size: 0.8em; line-height: 1.25; }
#memory { font-size: 0.9em; }
#versions { text-align: center; align-self: center; white-space: nowrap; }
"""
INTRO = ("# Neeko\nOne small language model plays every character: each owns a LoRA block "
         "inside the model, and new characters are added without retraining the others.")


def build_app(engine: ChatEngine, settings: Settings) -> gr.Blocks:
    """The app's Blocks: a chat tab and the add-character wizard over `engine`, and the
    evaluation reports."""
    folder = settings.app_dir
    with gr.Blocks(title="Neeko: role-play chat", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                chat = ChatTab(engine, folder)
            with gr.Tab("Add character", id="add"):
                WizardTab(engine, settings, folder, chat, tabs)
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate = EvaluateTab(settings.reports_dir)
        demo.load(lambda: (*chat.picker_values(), chat.saved_sessions(), evaluate.choices(),
                           *chat.persona.values()),
                  None, [*chat.picker, chat.saved, evaluate.picker, chat.persona.name,
                         chat.persona.description])
    return demo


def parse_auth(value: str) -> tuple[str, str]:
    """`user:pass` as (user, password); ValueError when either part is missing."""
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must be USER:PASSWORD, both non-empty")
    return user, password


def launch(demo: gr.Blocks, settings: Settings, host: str, port: int,
           auth: tuple[str, str] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
           block: bool = True) -> None:
    """Queue and launch `demo` (`block=False` returns at once, for tests). Every request's
    body is held to `settings.max_request_bytes`, and to a minimum pace (`RequestLimits`)."""
    if auth is None and host not in LOOPBACK:
        log.warning("serving on %s without --auth: anyone who can reach it may use it", host)
    demo.queue(default_concurrency_limit=concurrency)
    limits = Middleware(RequestLimits, max_bytes=settings.max_request_bytes)
    demo.launch(server_name=host, server_port=port, auth=auth, max_file_size=MAX_UPLOAD_BYTES,
                app_kwargs={"middleware": [limits]},
                allowed_paths=[str(SHIPPED_AVATARS), str(settings.app_dir / "avatars"),
                               str(settings.reports_dir)],
                theme=THEME, css=CSS, prevent_thread_lock=not block, ssr_mode=False,
                footer_links=[], quiet=not block)


def serve(engine: ChatEngine, settings: Settings, auth: tuple[str, str] | None = None,
          concurrency: int = DEFAULT_CONCURRENCY) -> None:
    """Serve the app on `settings.host:settings.port` until interrupted."""
    launch(build_app(engine, settings), settings, settings.host, settings.port, auth,
           concurrency)

"""The Chat tab: pick a character (or a group), chat with streamed replies (stop, continue,
regenerate and browse the versions, edit any message), see what memory retrieved, resume
saved sessions, set your persona, export or delete a character."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import gradio as gr

from neeko_app.characters.card import CharacterError
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.persona import PersonaError
from neeko_app.chat.reply import Reply
from neeko_app.chat.session import ChatSession, SessionError
from neeko_app.ui.avatars import avatar_path
from neeko_app.ui.cards import export_card
from neeko_app.ui.delete_panel import DeletePanel
from neeko_app.ui.persona_panel import PersonaPanel
from neeko_app.ui.views import (
    chat_messages,
    edited_turn,
    memory_markdown,
    session_choices,
    title_markdown,
    versions_markdown,
)

log = logging.getLogger(__name__)

USER_ERRORS = (SessionError, CharacterError, PersonaError, ValueError)
PICKER_PAGE = 12
REPLY_LENGTHS = [("1 sentence", 1), ("2 sentences", 2), ("3 sentences", 3), ("no limit", 0)]


class ChatTab:
    """Builds the tab's components (inside a `gr.Blocks`) and wires its events."""

    def __init__(self, engine: ChatEngine, data_dir: Path) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self._running: dict[str, list[Reply]] = {}  # replies being streamed, by session id
        self.session = gr.State(None)
        self.slugs = gr.State(list(engine.runtime.characters))
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                self.picker_table = gr.Dataset(
                    components=[gr.Image(visible=False), gr.Markdown(visible=False)],
                    samples=self._picker_samples(), type="index", layout="table",
                    samples_per_page=PICKER_PAGE, label="Characters", elem_id="picker")
                with gr.Accordion("Group scene", open=False):
                    self.cast = gr.Dropdown(self._choices(), multiselect=True, label="Characters",
                                            info="two or more", elem_id="cast")
                    start_scene = gr.Button("Start scene")
                with gr.Accordion("Saved sessions", open=False):
                    self.saved = gr.Dropdown([], label="Session", elem_id="saved")
                    resume = gr.Button("Resume")
                self.persona = PersonaPanel(engine)
                with gr.Accordion("Export a character card", open=False):
                    self.export_pick = gr.Dropdown(self._choices(), label="Character",
                                                   elem_id="export-pick")
                    export = gr.Button("Export PNG + JSON")
                    card_files = gr.File(label="Card files", file_count="multiple",
                                         interactive=False, elem_id="card-files")
                self.deleting = DeletePanel(engine, self._choices())
            with gr.Column(scale=5):
                self.title = gr.Markdown("### Pick a character to start", elem_id="chat-title")
                self.chatbot = gr.Chatbot(height=460, show_label=False, elem_id="chat",
                                          group_consecutive_messages=False, editable="all",
                                          buttons=["copy", "copy_all"],
                                          placeholder="Pick a character on the left.")
                self.message = gr.Textbox(show_label=False, placeholder="Say something…",
                                          elem_id="message", submit_btn=True)
                with gr.Row():
                    regenerate = gr.Button("↻ Regenerate", size="sm", min_width=80)
                    previous = gr.Button("←", size="sm", min_width=40, elem_id="previous")
                    self.versions = gr.Markdown("", elem_id="versions", min_width=110,
                                                container=False)
                    following = gr.Button("→", size="sm", min_width=40, elem_id="next")
                    more = gr.Button("▶ Continue", size="sm", min_width=80, elem_id="continue")
                    stop = gr.Button("■ Stop", size="sm", min_width=80, elem_id="stop")
                with gr.Row():
                    undo = gr.Button("↶ Undo", size="sm", min_width=80)
                    clear = gr.Button("Clear", size="sm", min_width=80)
                    new = gr.Button("New session", size="sm", min_width=80)
                    self.length = gr.Dropdown(_length_choices(engine.decoding.max_sentences),
                                              value=engine.decoding.max_sentences,
                                              show_label=False, container=False, min_width=130,
                                              elem_id="reply-length")
            with gr.Column(scale=2, min_width=240), gr.Accordion("Memory for the last reply"):
                self.memory = gr.Markdown(self._memory([]), elem_id="memory")

        self.picker = [self.picker_table, self.slugs, self.cast, self.export_pick,
                       self.deleting.pick]
        self.view = [self.session, self.chatbot, self.title, self.memory, self.versions]
        self.stream_outputs = [self.message, *self.view, self.saved]

        self.picker_table.click(self._pick, [self.picker_table, self.slugs], self.view)
        start_scene.click(self._start_scene, self.cast, self.view)
        resume.click(self._resume, self.saved, self.view)
        export.click(self._export, self.export_pick, card_files)
        self.message.submit(self._send, [self.message, self.session, self.length],
                            self.stream_outputs)
        regenerate.click(self._regenerate, [self.session, self.length], self.stream_outputs)
        previous.click(self._previous, self.session, self.view)
        following.click(self._next, [self.session, self.length], self.stream_outputs)
        more.click(self._continue, [self.session, self.length], self.stream_outputs)
        stop.click(self._stop, self.session, None)
        self.chatbot.edit(self._edit, self.session, self.view)
        undo.click(self._undo, self.session, self.view)
        clear.click(self._clear, self.session, self.view)
        self.chatbot.clear(self._clear, self.session, self.view)  # the chatbot's own 🗑
        new.click(self._new, self.session, self.view)
        self.persona.wire(self)
        self.deleting.wire(self)

    # ---- what the components show --------------------------------------------------------

    def _picker_samples(self) -> list[list[str]]:
        return [[str(avatar_path(c, self.data_dir)), f"**{c.name}**  \n{c.description}"]
                for c in list(self.engine.runtime.characters.values())]

    def _choices(self) -> list[tuple[str, str]]:
        return [(c.name, slug) for slug, c in list(self.engine.runtime.characters.items())]

    def _memory(self, replies: list[Reply]) -> str:
        names = self.engine.runtime.characters
        return memory_markdown([(names[r.character].name, r.context) for r in replies],
                               self.engine.memory is not None)

    def picker_values(self) -> tuple:
        """Fresh values for `self.picker` (after a character was added, or on page load:
        characters another replica added to the shared folder appear then)."""
        self.engine.runtime.refresh()
        choices = self._choices()
        return (gr.Dataset(samples=self._picker_samples()), [slug for _, slug in choices],
                gr.Dropdown(choices=choices), gr.Dropdown(choices=choices),
                gr.Dropdown(choices=choices, value=None))

    def saved_sessions(self) -> gr.Dropdown:
        """The saved-sessions dropdown with the sessions that can be resumed now."""
        return gr.Dropdown(choices=session_choices(self.engine.sessions,
                                                   self.engine.runtime.characters))

    def show(self, session: ChatSession, replies: list[Reply] | None = None) -> tuple:
        """Values for `self.view` showing `session`."""
        characters = self.engine.runtime.characters
        avatar = (None if session.is_group or session.character not in characters
                  else str(avatar_path(characters[session.character], self.data_dir)))
        return (session, gr.Chatbot(self._messages(session), avatar_images=(None, avatar)),
                title_markdown(session, characters), self._memory(replies or []),
                versions_markdown(session))

    def _messages(self, session: ChatSession, pending: list[tuple[str, str]] | None = None,
                  upto: int | None = None) -> list[dict]:
        return chat_messages(session, self.engine.runtime.characters, pending or [],
                             self.engine.persona, upto)

    def open(self, slugs: list[str]) -> tuple:
        """Values for `self.view` with a new session of `slugs` (greetings shown)."""
        return self.show(self.engine.open_session(slugs))

    # ---- events --------------------------------------------------------------------------

    def _pick(self, index: int, slugs: list[str]) -> tuple:
        return self.open([slugs[index]])

    def _start_scene(self, cast: list[str] | None) -> tuple:
        if not cast or len(cast) < 2:
            gr.Warning("A group scene needs at least two characters.")
            return (gr.skip(),) * len(self.view)
        return self.open(list(cast))

    def _resume(self, session_id: str | None) -> tuple:
        if not session_id:
            gr.Warning("Choose a saved session first.")
            return (gr.skip(),) * len(self.view)
        try:
            return self.show(self.engine.load_session(session_id))
        except SessionError as err:
            gr.Warning(str(err))
            return (gr.skip(),) * len(self.view)

    def _export(self, slug: str | None) -> list[str] | None:
        if not slug or slug not in self.engine.runtime.characters:
            gr.Warning("Choose a character to export.")
            return None
        character = self.engine.runtime.characters[slug]
        image = avatar_path(character, self.data_dir).read_bytes()
        out = Path(tempfile.mkdtemp(prefix="neeko-card-"))
        try:
            return [str(p) for p in export_card(character, image, out)]
        except CharacterError as err:
            gr.Warning(str(err))
            return None

    def _decoding(self, sentences: int | None) -> DecodingSettings:
        """The engine's decoding, ended after the number of sentences the user chose."""
        if sentences is None:
            return self.engine.decoding
        return replace(self.engine.decoding, max_sentences=int(sentences))

    def _send(self, message: str, session: ChatSession | None,
              sentences: int | None = None) -> Iterator[tuple]:
        decoding = self._decoding(sentences)
        yield from self._replies(session, lambda s: self.engine.send(s, message,
                                                                     decoding=decoding))

    def _regenerate(self, session: ChatSession | None,
                    sentences: int | None = None) -> Iterator[tuple]:
        decoding = self._decoding(sentences)
        yield from self._replies(session, lambda s: self.engine.regenerate(s, decoding))

    def _continue(self, session: ChatSession | None,
                  sentences: int | None = None) -> Iterator[tuple]:
        decoding = self._decoding(sentences)
        yield from self._replies(session, lambda s: [self.engine.continue_reply(s, decoding)])

    def _previous(self, session: ChatSession | None) -> tuple:
        return self._change(session, lambda s: self._browse(s, -1))

    def _next(self, session: ChatSession | None,
              sentences: int | None = None) -> Iterator[tuple]:
        """The next version of the last reply; past the newest one, a new version."""
        try:
            picked = _picked(session)
            versions = picked.versions_of(picked.last_reply_index())
        except USER_ERRORS as err:
            gr.Warning(str(err))
            yield (gr.skip(),) * len(self.stream_outputs)
            return
        if versions.shown + 1 == len(versions.texts):
            yield from self._regenerate(session, sentences)
        else:
            yield ("", *self._change(session, lambda s: self._browse(s, 1)), gr.skip())

    def _browse(self, session: ChatSession, step: int) -> None:
        index = session.last_reply_index()
        number = session.versions_of(index).shown + step
        if number < 0:
            raise SessionError("this is the first version of the reply")
        self.engine.show_version(session, index, number)

    def _stop(self, session: ChatSession | None) -> None:
        """Stop the replies being generated for `session`; what they said so far stays."""
        replies = self._running.get(session.id, []) if session is not None else []
        if not replies:
            gr.Info("Nothing is being generated.")
        for reply in replies:
            reply.stop()

    def _edit(self, session: ChatSession | None, edit: gr.EditData) -> tuple:
        """Rewrite the edited message in the session (and memory); the view shows the
        session as it is after the edit (as before it when the edit was refused)."""
        try:
            session = _picked(session)
            index, text = edited_turn(session, self.engine.runtime.characters,
                                      int(edit.index), str(edit.value))
            self.engine.rewrite(session, index, text)
        except USER_ERRORS as err:
            gr.Warning(str(err))
        return self.show(session) if session is not None else (gr.skip(),) * len(self.view)

    def _replies(self, session: ChatSession | None,
                 start: Callable[[ChatSession], list[Reply]]) -> Iterator[tuple]:
        """Start replies with `start(session)` and stream them (a warning if that fails)."""
        try:
            session = _picked(session)
            replies = start(session)
        except USER_ERRORS as err:
            gr.Warning(str(err))
            yield (gr.skip(),) * len(self.stream_outputs)
            return
        yield from self._stream(session, replies)

    def _stream(self, session: ChatSession, replies: list[Reply]) -> Iterator[tuple]:
        """Show the replies as they are generated, one speaker after the other (a continued
        reply in place of the message it continues); ■ Stop ends them."""
        memory = self._memory(replies)
        upto = len(session.turns) - 1 if any(r.lead for r in replies) else None
        done: list[tuple[str, str]] = []
        self._running[session.id] = replies
        try:
            for reply in replies:
                for _ in reply:
                    pending = [*done, (reply.character, reply.lead + reply.text)]
                    yield ("", session, self._messages(session, pending, upto), gr.skip(),
                           memory, gr.skip(), gr.skip())
                done.append((reply.character, reply.lead + reply.text))
        except Exception as err:  # shown to the user; the message stays, regenerate retries
            log.exception("reply generation failed")
            gr.Warning(f"The reply failed ({type(err).__name__}); try ↻ Regenerate.")
        finally:
            self._running.pop(session.id, None)
        yield ("", session, self._messages(session), gr.skip(), memory,
               versions_markdown(session), self.saved_sessions())

    def _undo(self, session: ChatSession | None) -> tuple:
        return self._change(session, self.engine.undo)

    def _clear(self, session: ChatSession | None) -> tuple:
        return self._change(session, self.engine.reset)

    def _new(self, session: ChatSession | None) -> tuple:
        return self._change(session, lambda s: self.engine.open_session(s.characters))

    def _change(self, session: ChatSession | None,
                operation: Callable[[ChatSession], ChatSession | None]) -> tuple:
        """Apply `operation`; show the session it returns (else the same one)."""
        try:
            return self.show(operation(_picked(session)) or session)
        except USER_ERRORS as err:
            gr.Warning(str(err))
            return (gr.skip(),) * len(self.view)


def _length_choices(default: int) -> list[tuple[str, int]]:
    """The reply lengths offered, the engine's default among them."""
    if default in dict(REPLY_LENGTHS).values():
        return REPLY_LENGTHS
    return [*REPLY_LENGTHS, (f"{default} sentences", default)]


def _picked(session: ChatSession | None) -> ChatSession:
    """`session`, or SessionError when no character was picked yet."""
    if session is None:
        raise SessionError("Pick a character first.")
    return session

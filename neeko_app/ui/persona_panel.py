"""The chat tab's "Your persona" panel: the name and short description characters know you
by, saved in the user's data folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.persona import (
    MAX_DESCRIPTION_CHARS,
    Persona,
    PersonaError,
    load_persona,
    save_persona,
)
from neeko_app.chat.session import ChatSession

if TYPE_CHECKING:
    from neeko_app.ui.chat_tab import ChatTab


class PersonaPanel:
    """Builds the panel (inside the chat tab's column); `wire` connects it to the chat."""

    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine
        self.data_dir = engine.runtime.settings.data_dir
        engine.persona = load_persona(self.data_dir)
        with gr.Accordion("Your persona", open=False):
            self.name = gr.Textbox(engine.persona.name, label="Your name", max_lines=1,
                                   elem_id="persona-name",
                                   info="Characters call you this; it fills {{user}} in cards.")
            self.description = gr.Textbox(
                engine.persona.description, label="About you", lines=2,
                max_length=MAX_DESCRIPTION_CHARS, elem_id="persona-description",
                info="A sentence or two the characters know about you (optional).")
            self.save = gr.Button("Save persona", elem_id="persona-save")

    def wire(self, chat: ChatTab) -> None:
        """Saving shows the open chat again, its greetings addressed to the new name."""
        self.save.click(lambda name, about, session: self._save(chat, name, about, session),
                        [self.name, self.description, chat.session], chat.chatbot)

    def values(self) -> tuple[str, str]:
        """The persona's fields as saved (for a page that was just opened)."""
        return self.engine.persona.name, self.engine.persona.description

    def _save(self, chat: ChatTab, name: str, about: str, session: ChatSession | None):
        try:
            persona = Persona(name, about)
            save_persona(self.data_dir, persona)
        except (PersonaError, OSError) as err:
            gr.Warning(f"The persona was not saved: {err}")
            return gr.skip()
        self.engine.persona = persona
        gr.Info(f"Saved: the characters now know you as {persona.name}.")
        return gr.skip() if session is None else chat.show(session)[1]

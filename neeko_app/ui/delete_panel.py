"""The chat tab's "Delete a character" panel: a character the user added moves to the trash
folder after a confirmation; shipped characters are read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from neeko_app.characters.card import CharacterError
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.session import ChatSession
from neeko_app.user_data import trash_character, user_added

if TYPE_CHECKING:
    from neeko_app.ui.chat_tab import ChatTab



def _hidden() -> gr.Group:
    return gr.Group(visible=False)


class DeletePanel:
    """Builds the panel (inside the chat tab's column); `wire` connects it to the chat."""

    def __init__(self, engine: ChatEngine, choices: list[tuple[str, str]]) -> None:
        self.engine = engine
        with gr.Accordion("Delete a character", open=False):
            self.pick = gr.Dropdown(choices, value=None, label="Character",
                                    elem_id="delete-pick")
            self.ask = gr.Button("Delete…", elem_id="delete")
            with gr.Group(visible=False) as self.confirm:
                self.question = gr.Markdown(elem_id="delete-question")
                with gr.Row():
                    self.yes = gr.Button("Yes, move it to the trash", variant="stop",
                                         elem_id="delete-yes")
                    self.no = gr.Button("Cancel", elem_id="delete-no")

    def wire(self, chat: ChatTab) -> None:
        """Deleting refreshes the character lists, and shows an open chat with the deleted
        character again, read-only."""
        self.ask.click(self._ask, self.pick, [self.confirm, self.question])
        self.pick.change(_hidden, None, self.confirm)
        self.no.click(_hidden, None, self.confirm)
        self.yes.click(lambda slug, session: self._delete(chat, slug, session),
                       [self.pick, chat.session],
                       [self.confirm, *chat.picker, chat.saved, *chat.view])

    def _ask(self, slug: str | None) -> tuple:
        """The confirmation for a character the user added; a warning for any other."""
        character = self.engine.runtime.characters.get(slug or "")
        if character is None:
            gr.Warning("Choose a character to delete.")
            return _hidden(), gr.skip()
        if not user_added(character, self.engine.runtime.settings):
            gr.Warning(f"{character.name} comes with the app and cannot be deleted; only "
                       "characters you added can be.")
            return _hidden(), gr.skip()
        return gr.Group(visible=True), (
            f"Delete **{character.name}**? Its folder moves to the trash folder of your data "
            "folder (nothing is erased); chats with it stay readable, read-only.")

    def _delete(self, chat: ChatTab, slug: str | None, session: ChatSession | None) -> tuple:
        unchanged = (gr.skip(),) * (len(chat.picker) + 1 + len(chat.view))
        character = self.engine.runtime.characters.get(slug or "")
        if character is None:
            gr.Warning("Choose a character to delete.")
            return _hidden(), *unchanged
        try:
            place = trash_character(character, self.engine.runtime.settings)
        except CharacterError as err:
            gr.Warning(str(err))
            return _hidden(), *unchanged
        self.engine.remove_character(character.slug)
        gr.Info(f"{character.name} was moved to the trash: {place}")
        shown = session is not None and character.slug in session.characters
        view = chat.show(session) if shown else (gr.skip(),) * len(chat.view)
        return _hidden(), *chat.picker_values(), chat.saved_sessions(), *view

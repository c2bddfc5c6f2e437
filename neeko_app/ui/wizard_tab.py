"""The Add-character tab: upload, check and edit, add by fusion or expansion, then chat."""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
from pathlib import Path

import gradio as gr
from PIL import Image

from neeko_app.characters.card import CharacterError
from neeko_app.chat.engine import ChatEngine
from neeko_app.config import Settings
from neeko_app.training.data import DialogueError
from neeko_app.training.trainer import (
    EXPANSION_TRAINING,
    Progress,
    TrainingCancelled,
)
from neeko_app.training.workflows import TrainingJob
from neeko_app.ui.cards import (
    CARD_SUFFIXES,
    DIALOGUE_SUFFIXES,
    EDITABLE_FIELDS,
    PROFILE_SUFFIXES,
    CharacterDraft,
    describe_progress,
    draft_from_file,
    draft_summary,
    install_draft,
    with_dialogues,
)
from neeko_app.ui.chat_tab import ChatTab

log = logging.getLogger(__name__)

LABELS = {
    "name": "Name",
    "slug": "Id (folder name: lowercase letters, digits, '-')",
    "description": "Description (one line, shown in the picker)",
    "personality": "Personality",
    "speaking_style": "Speaking style",
    "scenario": "Scenario",
    "greeting": "Greeting (the first line of every chat)",
    "example_lines": "Example lines (one per line)",
}
FIELD_ROWS = (("name", "slug"), ("description",), ("personality", "speaking_style"),
              ("scenario", "greeting"), ("example_lines",))
FIELD_LINES = {"personality": 3, "speaking_style": 3, "scenario": 3, "greeting": 3,
               "example_lines": 4}
MODES = [("Fusion: instant, mixes the blocks of the most similar characters", "fusion"),
         ("Expansion: trains its own block on the example dialogues", "expansion")]
TRAINING = EXPANSION_TRAINING
UPLOAD_HEIGHT = 150
PORTRAIT_HEIGHT = 200


class WizardTab:
    """Builds the tab's components (inside a `gr.Blocks`) and wires its events."""

    def __init__(self, engine: ChatEngine, settings: Settings, data_dir: Path, chat: ChatTab,
                 tabs: gr.Tabs) -> None:
        self.engine = engine
        self.settings = settings
        self.staging = data_dir / "staging"
        self.chat = chat
        self._cancel: dict[str, threading.Event] = {}
        self.draft = gr.State(None)
        self.added = gr.State(None)

        gr.Markdown("### 1 · Upload")
        with gr.Row():
            card_file = gr.File(label="Tavern card (.png, .json) or profile (.txt, .md)",
                                file_types=list(CARD_SUFFIXES + PROFILE_SUFFIXES),
                                height=UPLOAD_HEIGHT, elem_id="card-file")
            dialogues_file = gr.File(label="Example dialogues, optional (.jsonl, or a .txt "
                                     "transcript of 'Name: line' lines)",
                                     file_types=list(DIALOGUE_SUFFIXES), height=UPLOAD_HEIGHT,
                                     elem_id="dialogues-file")
        read = gr.Button("Read files", variant="primary", elem_id="read")
        self.notes = gr.Markdown(elem_id="read-notes")

        gr.Markdown("### 2 · Check and edit")
        self.boxes: dict[str, gr.Textbox] = {}
        for row in FIELD_ROWS:
            with gr.Row():
                for key in row:
                    self.boxes[key] = gr.Textbox(label=LABELS[key], lines=FIELD_LINES.get(key, 1),
                                                 elem_id=f"field-{key}")
        with gr.Row():
            self.profile = gr.Textbox(label="Profile (Markdown; used for the role embedding and "
                                      "the character's memory)", lines=5, elem_id="profile")
            self.portrait = gr.Image(label="Portrait (the card's picture)", type="pil",
                                     format="png", interactive=False, height=PORTRAIT_HEIGHT,
                                     elem_id="portrait")
            self.lore = gr.Markdown()

        gr.Markdown("### 3 · Add")
        self.mode = gr.Radio(MODES, value="fusion", label="How", elem_id="mode")
        with gr.Row():
            self.epochs = gr.Slider(1, 10, value=TRAINING.epochs, step=1,
                                    label="Epochs (expansion)", elem_id="epochs")
            self.batch_size = gr.Slider(1, 32, value=TRAINING.batch_size, step=1,
                                        label="Batch size (expansion)", elem_id="batch-size")
        with gr.Row():
            add = gr.Button("Add character", variant="primary", elem_id="add")
            cancel = gr.Button("Cancel training", variant="stop", elem_id="cancel")
        self.status = gr.Markdown(elem_id="add-status")
        chat_now = gr.Button("Chat now", visible=False, elem_id="chat-now")

        read.click(self._read, [card_file, dialogues_file],
                   [self.draft, *self.boxes.values(), self.profile, self.portrait, self.lore,
                    self.mode, self.notes])
        add.click(self._add, {self.draft, *self.boxes.values(), self.profile, self.mode,
                              self.epochs, self.batch_size},
                  [self.status, self.added, chat_now, *chat.picker],
                  concurrency_limit=1, concurrency_id="add-character")
        cancel.click(self._cancel_training)
        chat_now.click(lambda slug: (*chat.open([slug]), gr.Tabs(selected="chat")),
                       self.added, [*chat.view, tabs])

    def _read(self, card_path: str | None, dialogues_path: str | None) -> tuple:
        """Parse the uploads into a draft and fill the step-2 boxes (cleared on error)."""
        try:
            if not card_path:
                raise CharacterError("Upload a Tavern card or a profile first.")
            draft = draft_from_file(Path(card_path))
            conversations = 0
            if dialogues_path:
                draft, conversations = with_dialogues(draft, Path(dialogues_path))
        except (CharacterError, DialogueError) as err:
            gr.Warning(str(err))
            empty = ("",) * (len(self.boxes) + 1)
            return (None, *empty, None, "", gr.skip(), f"**Could not read the files.** {err}")
        values = [draft.fields.get(key) or "" for key in EDITABLE_FIELDS]
        values = ["\n".join(v) if isinstance(v, list) else str(v) for v in values]
        lore = "\n".join(f"- **{entry.name or ', '.join(entry.keys) or 'entry'}**: "
                         f"{entry.content[:200]}" for entry in draft.lorebook)
        notes = draft_summary(draft, Path(card_path).name, conversations)
        portrait = Image.open(io.BytesIO(draft.portrait)) if draft.portrait else None
        return (draft, *values, draft.profile, portrait,
                f"**Lorebook**\n\n{lore}" if lore else "",
                "expansion" if conversations else "fusion", notes)

    def _add(self, values: dict, request: gr.Request,
             progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 (Gradio's idiom)
        """Install the edited draft; the status tells how it went."""
        picker = (gr.skip(),) * len(self.chat.picker)
        draft: CharacterDraft | None = values[self.draft]
        if draft is None:
            return ("**Nothing to add yet:** upload and read a card or profile (step 1).",
                    gr.skip(), gr.skip(), *picker)
        draft = dataclasses.replace(draft, profile=values[self.profile].strip())
        edits = {key: values[box] for key, box in self.boxes.items()}
        mode = values[self.mode]
        stop = self._cancel[request.session_hash] = threading.Event()
        last: list[Progress] = []

        def report(step: Progress) -> None:
            last.append(step)
            progress((step.step, step.total), desc=describe_progress(step))

        job = TrainingJob(dataclasses.replace(TRAINING, epochs=int(values[self.epochs]),
                                              batch_size=int(values[self.batch_size])),
                          on_progress=report, should_stop=stop.is_set)
        progress(0, desc="preparing")
        try:
            character = install_draft(self.engine, self.settings, draft, edits, mode, job,
                                      self.staging)
        except TrainingCancelled:
            return ("**Training cancelled.** Nothing was added.", gr.skip(), gr.skip(), *picker)
        except (CharacterError, DialogueError, ValueError, OSError) as err:
            return (f"**Could not add the character.** {err}", gr.skip(), gr.skip(), *picker)
        finally:
            self._cancel.pop(request.session_hash, None)
        how = ("it mixes the blocks of the most similar characters (fusion)" if mode == "fusion"
               else f"its own block was trained in {last[-1].step} steps, final loss "
                    f"{last[-1].loss:.3f}" if last else "its own block was trained")
        return (f"**{character.name} was added:** {how}. Pick them in the Chat tab.",
                character.slug, gr.Button(f"Chat with {character.name}", visible=True),
                *self.chat.picker_values())

    def _cancel_training(self, request: gr.Request) -> None:
        """Ask this session's training to stop after its current step.

        The answer is a toast, never the status box: the training's own last word ("Training
        cancelled") may reach the page first, and must not be overwritten by this one."""
        stop = self._cancel.get(request.session_hash)
        if stop is None:
            gr.Info("No training is running.")
            return
        stop.set()
        gr.Info("Cancelling after the current step…")

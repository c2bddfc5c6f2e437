"""What `neeko drill-facts` does: teach characters their own facts, one block at a time.

Each block trains alone from its current weights (every other block stays bit-identical,
as in an expansion) on every knowledge exchange (`knowledge.jsonl` and `paraphrases.jsonl`),
its reply cut after the sentence that gives the answer, under the short header, plus the
recall exchanges: first fast (the block learns the facts), then slowly (it settles on
them), the recipe of report `blocks-alone-2026-12-06` (where a phase with the retrieved
notes in the header did no better than the slow phase without them).

Each phase checkpoints under the cache, keyed by the block the drill started from, so the
same command resumes an interrupted run. The blocks are written to the characters' folders
only when every character named has finished.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from neeko_app.characters.card import Character, CharacterError
from neeko_app.config import Settings
from neeko_app.moelora.persistence import save_block
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.training.data import Conversation, DialogueError, Example
from neeko_app.training.knowledge_data import (
    knowledge_conversations,
    plain_examples,
    recall_examples,
)
from neeko_app.training.trainer import (
    DrillConfig,
    Progress,
    discard_checkpoint,
    run_fingerprint,
    run_training,
)
from neeko_app.training.workflows import known_characters

DrillProgress = Callable[[str, str, Progress], None]  # (character, phase, progress)


def cut_reply(text: str, words: int) -> str:
    """`text` up to the end of the first sentence that brings it to `words` words."""
    kept = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        kept = f"{kept} {sentence}".strip()
        if len(kept.split()) >= words:
            break
    return kept


def answer_first(conversation: Conversation, words: int) -> Conversation:
    """`conversation` with every character turn cut by `cut_reply`."""
    turns = tuple(replace(turn, text=cut_reply(turn.text, words))
                  if turn.role == "character" else turn for turn in conversation.turns)
    return replace(conversation, turns=turns)


def drill_examples(character: Character, tokenizer, max_tokens: int,
                   answer_words: int) -> list[Example]:
    """The character's knowledge exchanges, replies cut after `answer_words` words, under
    its short header, then its recall exchanges; CharacterError for a character without
    knowledge exchanges or with a broken file."""
    try:
        conversations = [answer_first(c, answer_words)
                         for c in knowledge_conversations(character, paraphrases=True)]
        if not conversations:
            raise CharacterError(f"{character.slug} has no knowledge exchanges to drill "
                                 "(knowledge.jsonl)")
        return (plain_examples(character, conversations, tokenizer, max_tokens)
                + recall_examples(character, tokenizer, max_tokens))
    except DialogueError as err:
        raise CharacterError(f"{character.slug}: {err}") from None


def drill_checkpoints(settings: Settings, character: Character) -> Path:
    """Where the drill of `character` keeps its checkpoints: keyed by the block it starts
    from, so a block changed since (a new pre-training, a finished drill) starts afresh."""
    digest = hashlib.sha256(character.block_path.read_bytes()).hexdigest()[:16]
    return settings.cache_dir / "checkpoints" / "drill-facts" / f"{character.slug}-{digest}"


def drill_character(runtime: Runtime, character: Character, config: DrillConfig,
                    checkpoints: Path, on_progress: DrillProgress | None = None,
                    should_stop: Callable[[], bool] | None = None) -> None:
    """Every phase for `character`'s block in `runtime.model`, resumed from `checkpoints`:
    each phase's folder is named after the phases before it, so a phase only resumes on
    top of the very run it followed."""
    model, tokenizer, slug = runtime.model, runtime.base.tokenizer, character.slug
    phases = config.phases()
    examples = drill_examples(character, tokenizer, phases["facts"].max_tokens,
                              config.answer_words)
    folder = checkpoints
    for phase, phase_config in phases.items():
        folder = folder / f"{phase}-{run_fingerprint(model, examples, [slug], phase_config)[:12]}"
        report = partial(on_progress, slug, phase) if on_progress else None
        run_training(model, examples, [slug], phase_config, tokenizer.pad_token_id, folder,
                     report, should_stop)


def drill_facts(settings: Settings, slugs: Sequence[str], config: DrillConfig | None = None,
                on_progress: DrillProgress | None = None,
                should_stop: Callable[[], bool] | None = None) -> list[Character]:
    """Drill the characters `slugs` in turn (`config` default: `DrillConfig()`), then
    write all their blocks; returns them."""
    config = config or DrillConfig()
    characters = known_characters(settings, slugs)
    without = [c.slug for c in characters if not c.block_path.is_file()]
    if without:
        raise CharacterError(f"no block of its own to drill: {', '.join(without)} (a fusion "
                             "character, or one never trained)")
    runtime = load_runtime(settings, serving=False)
    checkpoints = {c.slug: drill_checkpoints(settings, c) for c in characters}
    for character in characters:
        drill_character(runtime, character, config, checkpoints[character.slug],
                        on_progress, should_stop)
    for character in characters:
        save_block(runtime.model, character.slug, character.block_path,
                   runtime.base.model_id)
    for folder in checkpoints.values():
        discard_checkpoint(folder)
    return characters

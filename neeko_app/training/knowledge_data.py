"""Knowledge-augmented training data: fact exchanges and recall of what the user said.

Besides `dialogues.jsonl`, a character folder may hold

- `knowledge.jsonl`: short exchanges, each teaching one or two facts of the fact sheet in
  yet another wording (knowledge augmentation: a small model answers a fact on demand only
  after seeing it phrased many ways). Every other exchange carries, in its header, the notes
  the chat app's memory retrieves for its last question, so the block learns both to know
  the fact and to use a note that states it;
- `recall.jsonl`: exchanges whose answer is something the user said much earlier, given in
  the header as the memory recalls it ("Earlier in this conversation: ..."), so the block
  learns to take a name or a place from a recalled exchange:

      {"id": "...", "earlier": [{"user": "...", "character": "..."}], "turns": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neeko_app.characters.card import Character
from neeko_app.characters.facts import KNOWLEDGE_FILE
from neeko_app.chat.context import RetrievedContext, memory_header
from neeko_app.chat.engine import ContextLimits
from neeko_app.chat.prompt import character_header
from neeko_app.jsonl import jsonl_records
from neeko_app.memory import Exchange
from neeko_app.training.data import (
    Conversation,
    DialogueError,
    Example,
    load_dialogues,
    parse_conversation,
    tokenize_conversation,
)
from neeko_app.training.grounding import retrieved_knowledge

RECALL_FILE = "recall.jsonl"
NOTES_EVERY = 2  # one knowledge exchange in this many is trained with its retrieved notes


@dataclass(frozen=True)
class RecallConversation:
    """A conversation and the earlier exchanges (user text, reply) memory recalls for it."""

    conversation: Conversation
    earlier: tuple[tuple[str, str], ...]


def parse_recall(raw: object, where: str) -> RecallConversation:
    """One recall.jsonl record; DialogueError says what is wrong and where."""
    conversation = parse_conversation(raw, where)
    earlier = raw.get("earlier")
    if not isinstance(earlier, list) or not earlier:
        raise DialogueError(f"{where}: 'earlier' must be a non-empty list of exchanges")
    pairs = []
    for i, exchange in enumerate(earlier, start=1):
        texts = [exchange.get(key) if isinstance(exchange, dict) else None
                 for key in ("user", "character")]
        if not all(isinstance(text, str) and text.strip() for text in texts):
            raise DialogueError(f"{where}: earlier exchange {i} needs 'user' and "
                                "'character' texts")
        pairs.append((texts[0].strip(), texts[1].strip()))
    return RecallConversation(conversation, tuple(pairs))


def load_recall(path: str | Path) -> list[RecallConversation]:
    """Read a recall.jsonl file."""
    return [parse_recall(raw, where) for where, raw in jsonl_records(path, DialogueError)]


def recalled_context(character: Character, earlier: tuple[tuple[str, str], ...]
                     ) -> RetrievedContext:
    """`earlier` as the exchanges the chat app's memory hands to the prompt."""
    return RetrievedContext(recalled=tuple(
        Exchange("training", character.slug, turn, user, reply, 0.0)
        for turn, (user, reply) in enumerate(earlier, start=1)))


def knowledge_examples(character: Character, tokenizer, max_tokens: int,
                       notes_every: int = NOTES_EVERY) -> list[Example]:
    """The character's knowledge and recall exchanges for its own block ([] for a folder
    that has neither file); one knowledge exchange in `notes_every` has its notes."""
    header = character_header(character)
    examples = []
    path = character.folder / KNOWLEDGE_FILE
    if path.is_file():
        conversations = load_dialogues(path)
        noted = conversations[::notes_every]
        notes = retrieved_knowledge(character, [last_question(c) for c in noted],
                                    ContextLimits.knowledge_k)
        for conversation, chunks in zip(noted, notes, strict=True):
            context = RetrievedContext(knowledge=tuple(chunks))
            examples.append(tokenize_conversation(
                conversation, memory_header(header, character.name, context), tokenizer,
                character.slug, max_tokens))
        examples += [tokenize_conversation(c, header, tokenizer, character.slug, max_tokens)
                     for i, c in enumerate(conversations) if i % notes_every]
    return examples + recall_examples(character, tokenizer, max_tokens)


def recall_examples(character: Character, tokenizer, max_tokens: int) -> list[Example]:
    """The character's recall exchanges, each with its earlier exchanges in the header as
    memory recalls them ([] for a folder without a recall file)."""
    path, header = character.folder / RECALL_FILE, character_header(character)
    if not path.is_file():
        return []
    return [tokenize_conversation(
        recall.conversation,
        memory_header(header, character.name, recalled_context(character, recall.earlier)),
        tokenizer, character.slug, max_tokens) for recall in load_recall(path)]


def last_question(conversation: Conversation) -> str:
    """The text of the conversation's last user turn."""
    return next(t.text for t in reversed(conversation.turns) if t.role == "user")

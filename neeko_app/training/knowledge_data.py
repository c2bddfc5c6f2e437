"""Knowledge-augmented training data: fact exchanges and recall of what the user said.

Besides `dialogues.jsonl`, a character folder may hold

- `knowledge.jsonl`: short exchanges, each teaching one or two facts of the fact sheet in
  yet another wording (knowledge augmentation: a small model answers a fact on demand only
  after seeing it phrased many ways). Every other exchange carries, in its header, the notes
  the chat app's memory retrieves for its last question, so the block learns both to know
  the fact and to use a note that states it;
- `paraphrases.jsonl` (optional): more exchanges in the knowledge file's format, the same
  facts asked in twelve styles (curt, hostile, mistaken, fill in the blank...), trained on
  only by `neeko drill-facts` (`fact_drill`) and not indexed as the notes' questions;
- `recall.jsonl`: exchanges whose answer is something the user said much earlier, given in
  the header as the memory recalls it ("Earlier in this conversation: ..."), so the block
  learns to take a name or a place from a recalled exchange:

      {"id": "...", "earlier": [{"user": "...", "character": "..."}], "turns": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neeko_app.characters.card import Character
from neeko_app.characters.facts import KNOWLEDGE_FILE, PARAPHRASES_FILE
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


def knowledge_conversations(character: Character, paraphrases: bool = False
                            ) -> list[Conversation]:
    """The exchanges of the character's knowledge file, then with `paraphrases` of its
    paraphrases file ([] for a folder with neither)."""
    names = (KNOWLEDGE_FILE, PARAPHRASES_FILE) if paraphrases else (KNOWLEDGE_FILE,)
    paths = (character.folder / name for name in names)
    return [conversation for path in paths if path.is_file()
            for conversation in load_dialogues(path)]


def knowledge_examples(character: Character, tokenizer, max_tokens: int,
                       notes_every: int = NOTES_EVERY) -> list[Example]:
    """The character's knowledge and recall exchanges for its own block ([] for a folder
    that has neither file); one knowledge exchange in `notes_every` has its notes."""
    conversations = knowledge_conversations(character)
    noted = [c for i, c in enumerate(conversations) if i % notes_every == 0]
    plain = [c for i, c in enumerate(conversations) if i % notes_every]
    return (noted_examples(character, noted, tokenizer, max_tokens)
            + plain_examples(character, plain, tokenizer, max_tokens)
            + recall_examples(character, tokenizer, max_tokens))


def noted_examples(character: Character, conversations: list[Conversation], tokenizer,
                   max_tokens: int) -> list[Example]:
    """`conversations` with the notes the chat app's memory retrieves for each one's last
    question in the header."""
    header = character_header(character)
    notes = retrieved_knowledge(character, [last_question(c) for c in conversations],
                                ContextLimits.knowledge_k) if conversations else []
    return [tokenize_conversation(conversation,
                                  memory_header(header, character.name,
                                                RetrievedContext(knowledge=tuple(chunks))),
                                  tokenizer, character.slug, max_tokens)
            for conversation, chunks in zip(conversations, notes, strict=True)]


def plain_examples(character: Character, conversations: list[Conversation], tokenizer,
                   max_tokens: int) -> list[Example]:
    """`conversations` under the character's short header alone."""
    header = character_header(character)
    return [tokenize_conversation(c, header, tokenizer, character.slug, max_tokens)
            for c in conversations]


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

"""Training examples grounded in retrieved knowledge, as the chat app prompts a character.

In chat, what the retrieval memory finds for a message ("What you know: ...") comes just
before it; for an opening message that is right after the header. A block trained on the
short header alone never saw those notes and does not learn to use them. Here every
training conversation gets the notes the app would retrieve for its opening question: the
same chunks (`character_chunks`), the same MiniLM search through Chroma, the same layout
(`memory_header`).
"""

from __future__ import annotations

from collections.abc import Sequence

from neeko_app.characters.card import Character
from neeko_app.chat.context import RetrievedContext, memory_header
from neeko_app.chat.prompt import character_header
from neeko_app.memory import KnowledgeChunk
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.training.data import Conversation, DialogueError, Example, tokenize_conversation


def retrieved_knowledge(character: Character, questions: Sequence[str],
                        k: int) -> list[list[KnowledgeChunk]]:
    """For each question, the `k` knowledge chunks of `character` the chat app's memory
    returns for it, best first (from a scratch store: no user memory is touched)."""
    with scratch_knowledge([character]) as store:
        return [store.search_knowledge(character.slug, question, k) for question in questions]


def grounded_examples(character: Character, conversations: Sequence[Conversation], tokenizer,
                      max_tokens: int, k: int) -> list[Example]:
    """Every conversation of `character` for its own block, its header followed by the
    knowledge retrieved for its opening question. Where the notes leave no room for the
    first reply within `max_tokens`, the lowest-ranked ones are dropped, as the app drops
    memory that does not fit its prompt."""
    header = character_header(character)
    knowledge = retrieved_knowledge(character, [c.turns[0].text for c in conversations], k)
    return [_fitted_example(conversation, header, character.name, chunks, tokenizer,
                            character.slug, max_tokens)
            for conversation, chunks in zip(conversations, knowledge, strict=True)]


def _fitted_example(conversation: Conversation, header: str, name: str,
                    chunks: list[KnowledgeChunk], tokenizer, block: str,
                    max_tokens: int) -> Example:
    """The example with as many of the best `chunks` as leave room for a reply."""
    for keep in range(len(chunks), 0, -1):
        grounded = memory_header(header, name, RetrievedContext(tuple(chunks[:keep])))
        try:
            return tokenize_conversation(conversation, grounded, tokenizer, block, max_tokens)
        except DialogueError:
            continue
    return tokenize_conversation(conversation, header, tokenizer, block, max_tokens)

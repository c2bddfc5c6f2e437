"""The systems evaluations compare: what each puts in the prompt and which gate it uses.

- `blocks`: the character's own block (or its fusion gate) with the short training header;
- `blocks+memory`: the same, with the knowledge retrieval memory finds for the question in
  the header, as the chat app does;
- `profile-prompt`: the bare base model with the character's card written into the prompt
  (the in-context baseline).
"""

from __future__ import annotations

from neeko_app.characters.card import Character
from neeko_app.chat.context import RetrievedContext, memory_header
from neeko_app.chat.engine import ContextLimits
from neeko_app.chat.prompt import character_header
from neeko_app.memory import MemoryStore
from neeko_app.moelora import Gate
from neeko_app.runtime import Runtime


def profile_prompt_header(character: Character) -> str:
    """The in-context baseline's header: the character's card written out in the prompt."""
    parts = [character_header(character), f"Personality: {character.personality}"]
    if character.speaking_style:
        parts.append(f"Speaking style: {character.speaking_style}")
    parts.append(f"Scenario: {character.scenario}")
    if character.example_lines:
        parts.append("Example lines:\n" + "\n".join(f"- {x}" for x in character.example_lines))
    parts.append("Stay in character and answer as this person would.")
    return "\n".join(parts)


def system_header(system: str, character: Character, question: str,
                  memory: MemoryStore | None) -> str:
    """The header `system` puts before `question` (see the module docstring)."""
    if system == "profile-prompt":
        return profile_prompt_header(character)
    header = character_header(character)
    if system == "blocks+memory":
        if memory is None:
            raise ValueError("the blocks+memory system needs a memory store")
        found = memory.search_knowledge(character.slug, question, ContextLimits.knowledge_k)
        header = memory_header(header, character.name, RetrievedContext(tuple(found)))
    return header


def system_gate(system: str, runtime: Runtime, character: Character) -> Gate | None:
    """The gate `system` generates `character`'s replies with (None: the bare base model)."""
    return None if system == "profile-prompt" else runtime.gate_for(character)

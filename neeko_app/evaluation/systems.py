"""The systems evaluations compare: what each puts in the prompt and which gate it uses.

- `blocks`: the character's own block (or its fusion gate) with the short training header;
- `blocks+memory`: the same, with the knowledge retrieval memory finds for the question in
  the header, as the chat app does;
- `blocks+other-notes` (the fact quiz only): blocks+memory with the note of the fact asked
  about withheld, the next note found in its place: what a user meets when retrieval
  misses, the header still full of notes (`neeko quiz` knows which fact a question asks);
- `profile-prompt`: the bare base model with the character's card written into the prompt
  (the in-context baseline);
- `blocks+card`: the character's own block with that card in the prompt (both at once);
- `fusion`: the character as if it had been added by fusion: the other characters' blocks
  mixed by role similarity, even when it has a block of its own (fusion vs. expansion);
- `lora-mix`: one block trained on every character's data mixed (the paper's LoRA-mix
  baseline; `neeko train --mix` makes it), with the short training header.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch

from neeko_app.characters.card import Character
from neeko_app.chat.about_user import character_knowledge
from neeko_app.chat.context import RetrievedContext, memory_header, quotable_ids
from neeko_app.chat.engine import ContextLimits
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn, character_header, render_prompt
from neeko_app.chat.scheduler import GenerationRequest, gate_row
from neeko_app.evaluation import OTHER_NOTES
from neeko_app.memory import MemoryStore
from neeko_app.memory.scratch import scratch_knowledge
from neeko_app.moelora import Gate
from neeko_app.moelora.gate import fusion_gate
from neeko_app.runtime import Runtime, character_role


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


NOTE_SYSTEMS = ("blocks+memory", OTHER_NOTES)  # the systems that read memory


def system_context(system: str, character: Character, question: str,
                   memory: MemoryStore | None, withheld: str = "") -> RetrievedContext:
    """What memory gives `system` for `question`: the knowledge the chat app retrieves for
    blocks+memory, the same without the note `withheld` for blocks+other-notes (the other
    systems ignore `withheld`), nothing for the others."""
    if system not in NOTE_SYSTEMS:
        return RetrievedContext()
    if memory is None:
        raise ValueError(f"the {system} system needs a memory store")
    k = ContextLimits.knowledge_k
    if system != OTHER_NOTES:
        return RetrievedContext(tuple(character_knowledge(memory, character.slug, question, k)))
    if not withheld:
        raise ValueError(f"the {system} system needs the note to withhold")
    found = character_knowledge(memory, character.slug, question, k + 1)
    return RetrievedContext(tuple([chunk for chunk in found if chunk.text != withheld][:k]))


def system_header(system: str, character: Character, question: str,
                  memory: MemoryStore | None) -> str:
    """The header `system` puts before `question` (see the module docstring)."""
    return _header(system, character, system_context(system, character, question, memory))


def _header(system: str, character: Character, context: RetrievedContext) -> str:
    if system in ("profile-prompt", "blocks+card"):
        return profile_prompt_header(character)
    return memory_header(character_header(character), character.name, context)


MIX_BLOCK = "lora-mix"  # the name of the LoRA-mix baseline's block in the model


def system_gate(system: str, runtime: Runtime, character: Character) -> Gate | None:
    """The gate `system` generates `character`'s replies with (None: the bare base model)."""
    if system == "profile-prompt":
        return None
    if system == "fusion":
        return fusion_without_own_block(runtime, character)
    if system == MIX_BLOCK:
        if MIX_BLOCK not in runtime.model.block_names:
            raise ValueError("the lora-mix system needs the baseline block: train it with "
                             "`neeko train --mix` first")
        return runtime.model.gate_for([MIX_BLOCK])
    return runtime.gate_for(character)


def fusion_without_own_block(runtime: Runtime, character: Character, temperature: float = 0.1,
                             top_k: int = 2) -> Gate | None:
    """The fusion gate of `character` over the other characters' blocks (the LoRA-mix
    baseline's block left out too); None when there are no such blocks."""
    others = [i for i, name in enumerate(runtime.model.block_names)
              if name not in (character.slug, MIX_BLOCK)]
    if not others:
        return None
    gate = fusion_gate(character_role(character)[None], runtime.model.keys[others],
                       temperature, top_k)
    return Gate(torch.tensor(others)[gate.indices], gate.weights)


def system_request(system: str, runtime: Runtime, character: Character,
                   history: Sequence[Turn], question: str, memory: MemoryStore | None,
                   decoding: DecodingSettings, withheld: str = ""
                   ) -> tuple[str, GenerationRequest]:
    """`system`'s header for `question` after `history`, and the request that answers it
    (`withheld`: the asked fact's note, which blocks+other-notes leaves out)."""
    tokenizer = runtime.base.tokenizer
    context = system_context(system, character, question, memory, withheld)
    header = _header(system, character, context)
    turns = [*history, Turn("user", question)]

    def tokens(header: str) -> tuple[int, ...]:
        return tuple(tokenizer(render_prompt(header, turns), add_special_tokens=False).input_ids)

    return header, GenerationRequest(
        tokens(header), gate_row(system_gate(system, runtime, character)), decoding,
        quotable=quotable_ids(tokenizer, character.name, context),
        contrast_ids=tokens(_header(system, character, RetrievedContext())) if context else ())


@contextmanager
def evaluation_memory(systems: Sequence[str], characters: Iterable[Character]
                      ) -> Iterator[MemoryStore | None]:
    """For the systems that read memory, a scratch store holding the characters' knowledge
    (the user's own memory and Chroma server stay untouched), dropped afterwards; None
    for the others."""
    if not set(systems) & set(NOTE_SYSTEMS):
        yield None
        return
    with scratch_knowledge(characters) as memory:
        yield memory

"""`ChatEngine`: a character's reply from prompt assembly to memory, through the scheduler.

Flow of one reply: the character's header + what memory retrieves + the recent history
that fits the context budget make the prompt (`context.assemble_prompt`); the scheduler
generates it in a batch with whatever other requests are waiting, under the character's
gate row; the finished exchange is stored back in memory. Session operations (send,
regenerate with earlier versions kept, continue, undo, edit, rewrite, reset, group scenes)
keep the saved transcript and memory in step; a session whose character was deleted is
read-only.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from neeko_app.chat.about_user import character_knowledge
from neeko_app.chat.context import (
    AssembledPrompt,
    RetrievedContext,
    assemble_prompt,
    quotable_ids,
    user_turns,
)
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.group import next_speakers, perspective
from neeko_app.chat.persona import Persona
from neeko_app.chat.prompt import Turn, character_header
from neeko_app.chat.remembered import sync_memory
from neeko_app.chat.reply import Reply
from neeko_app.chat.scheduler import (
    BatchScheduler,
    GateRow,
    GenerationRequest,
    TokenStream,
    gate_row,
)
from neeko_app.chat.session import ChatSession, SessionError, SessionStore, Versions
from neeko_app.chat.token_bounds import max_chars_per_token
from neeko_app.chat.writing_systems import systems_of_tokens
from neeko_app.memory import MemoryStore
from neeko_app.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextLimits:
    """How the model's context is shared out, and how much memory is retrieved."""

    context_tokens: int = 2048  # prompt + reply; capped by the model's own maximum
    memory_tokens: int = 384  # kept free in the prompt for retrieved memory
    knowledge_k: int = 3
    recall_k: int = 3
    recall_within: float = 0.15  # recall only exchanges this close to the best one (cosine)
    max_reply_tokens: int = 512  # the most new tokens one request may ask (<= half the context)


class ChatEngine:
    """Replies of the runtime's characters, batched, with retrieval memory and sessions."""

    def __init__(
        self,
        runtime: Runtime,
        memory: MemoryStore | None = None,
        decoding: DecodingSettings | None = None,
        *,
        sessions: SessionStore | None = None,
        limits: ContextLimits = ContextLimits(),
        scheduler: BatchScheduler | None = None,
    ) -> None:
        self.runtime = runtime
        self.memory = memory
        self.decoding = decoding or DecodingSettings()
        self.sessions = sessions
        self.limits = limits
        self.tokenizer = runtime.base.tokenizer
        # text longer than the context times this cannot fit: refused untokenized
        self.max_chars_per_token = max_chars_per_token(self.tokenizer)
        model_max = getattr(runtime.base.model.config, "max_position_embeddings", None)
        self.context_tokens = min(limits.context_tokens, model_max or limits.context_tokens)
        self.max_reply_tokens = min(limits.max_reply_tokens, self.context_tokens // 2)
        if self.decoding.max_new_tokens > self.max_reply_tokens:
            raise ValueError(f"replies of {self.decoding.max_new_tokens} tokens do not fit: the "
                             f"limit is {self.max_reply_tokens} with a {self.context_tokens}-token "
                             "context")
        self.scheduler = scheduler or BatchScheduler(
            runtime.model, self.tokenizer, compile_decode=runtime.settings.compile_decode)
        if self.decoding.script_guard:  # index the vocabulary now, not at the first reply
            systems_of_tokens(self.tokenizer)
        self._gate_rows: dict[tuple[str, int], GateRow] = {}
        self.persona = Persona()  # who the user is in sessions (the API's replies ignore it)

    def close(self) -> None:
        """Stop the scheduler's worker."""
        self.scheduler.close()

    def count_tokens(self, text: str) -> int:
        return len(self._token_ids(text))

    def _token_ids(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    # ---- stateless replies (the API's path) --------------------------------------------

    def reply(self, character: str, turns: Sequence[Turn], session_id: str | None = None,
              decoding: DecodingSettings | None = None, instructions: str = "",
              lead: str = "") -> Reply:
        """Start `character`'s reply to `turns` (ending with the user's message); with
        `lead`, the reply goes on from that text (see `Reply`).

        With `session_id`, memory recalls earlier exchanges of that session and stores this
        one (the lead and the new text) when it is complete. `instructions` are appended to
        the character's header. ValueError when the message does not fit the context.
        """
        return self.replies([(character, turns)], session_id, decoding, instructions,
                            lead=lead)[0]

    def replies(self, drafts: Sequence[tuple[str, Sequence[Turn]]],
                session_id: str | None = None, decoding: DecodingSettings | None = None,
                instructions: str = "", persona: Persona | None = None,
                lead: str = "") -> list[Reply]:
        """Start several replies at once (same batch): one per (character, turns)."""
        decoding = decoding or self.decoding
        replies = self._start([(slug, self.prepare(slug, turns, session_id,
                                                   decoding.max_new_tokens, instructions,
                                                   persona, lead))
                               for slug, turns in drafts], decoding, lead)
        if session_id is not None and self.memory is not None:
            for (_, turns), reply in zip(drafts, replies, strict=True):
                reply.on_done.append(self._remembering(session_id, list(turns)))
        return replies

    def _start(self, prepared: Sequence[tuple[str, AssembledPrompt]],
               decoding: DecodingSettings, lead: str = "") -> list[Reply]:
        """Submit prepared prompts to the scheduler together (`lead`: see `Reply`)."""
        streams = self.scheduler.submit_many([
            GenerationRequest(self._token_ids(prompt.text), self._gate_row(slug), decoding,
                              self.adapter_name(slug),
                              quotable=quotable_ids(self.tokenizer, self.runtime.character(
                                  slug).name, prompt.context),
                              contrast_ids=self._token_ids(prompt.without_notes))
            for slug, prompt in prepared])
        return [Reply(slug, prompt, len(stream.request.prompt_ids), stream, lead)
                for (slug, prompt), stream in zip(prepared, streams, strict=True)]

    def complete(self, character: str, prompt_ids: Sequence[int],
                 decoding: DecodingSettings | None = None,
                 stop_ids: Sequence[int] | None = None) -> TokenStream:
        """Continue a raw prompt (token ids) with `character`'s block: no header, no memory.
        ValueError when the prompt and the reply do not fit the context."""
        decoding = decoding or self.decoding
        self._check_reply_tokens(decoding.max_new_tokens)
        if len(prompt_ids) + decoding.max_new_tokens > self.context_tokens:
            raise ValueError(f"the prompt ({len(prompt_ids)} tokens) and the reply "
                             f"({decoding.max_new_tokens}) exceed the {self.context_tokens}-"
                             "token context")
        return self.scheduler.submit(GenerationRequest(
            tuple(prompt_ids), self._gate_row(character), decoding, self.adapter_name(character),
            None if stop_ids is None else tuple(stop_ids)))

    def _check_reply_tokens(self, tokens: int) -> None:
        if tokens > self.max_reply_tokens:
            raise ValueError(f"a reply may have at most {self.max_reply_tokens} tokens, "
                             f"{tokens} were asked for")

    def adapter_name(self, character: str) -> str:
        """The block a remote model server serves for `character`: its own, or for a fusion
        character the block its gate weighs most ("" when there are no blocks)."""
        names = self.runtime.model.block_names
        if character in names:
            return character
        indices, weights = self._gate_row(character)
        if not indices:
            return ""
        return names[max(zip(weights, indices, strict=True))[1]]

    def prepare(self, character: str, turns: Sequence[Turn], session_id: str | None = None,
                max_new_tokens: int | None = None, instructions: str = "",
                persona: Persona | None = None, lead: str = "") -> AssembledPrompt:
        """The prompt for `character`'s next reply, with room left for `max_new_tokens`;
        with `lead`, the reply starts with that text (a reply being continued)."""
        who = self.runtime.character(character)
        reply_tokens = max_new_tokens or self.decoding.max_new_tokens
        self._check_reply_tokens(reply_tokens)
        budget = self.context_tokens - reply_tokens - (self.count_tokens(lead) if lead else 0)
        header = character_header(who, persona)
        if instructions.strip():
            header = f"{header}\n\n{instructions.strip()}"
        query = turns[-1].text if turns else ""
        prompt = assemble_prompt(header, who.name, turns,
                                 self._retriever(character, session_id, query),
                                 self.count_tokens, budget,
                                 min(self.limits.memory_tokens, max(budget, 0) // 2),
                                 self.max_chars_per_token)
        if not lead:
            return prompt
        return dataclasses.replace(prompt, text=prompt.text + lead, without_notes=(
            prompt.without_notes and prompt.without_notes + lead))

    # ---- sessions -----------------------------------------------------------------------

    def open_session(self, characters: Sequence[str]) -> ChatSession:
        """A new session with these characters (two or more make a group scene)."""
        for slug in characters:
            self.runtime.character(slug)
        session = ChatSession.new(list(characters))
        self._save(session)
        return session

    def load_session(self, session_id: str) -> ChatSession:
        if self.sessions is None:
            raise SessionError("this engine keeps no saved sessions")
        return self.sessions.load(session_id)

    def send(self, session: ChatSession, message: str, speakers: Sequence[str] | None = None,
             decoding: DecodingSettings | None = None) -> list[Reply]:
        """Add the user's message and start the replies: `speakers`, else those it names,
        else the next character in turn (always the only one in a one-to-one chat)."""
        self.check_writable(session)
        session.add_user(message)
        try:
            return self._draft(session, speakers, decoding)
        except Exception:
            session.turns.pop()
            raise

    def regenerate(self, session: ChatSession,
                   decoding: DecodingSettings | None = None) -> list[Reply]:
        """Draft the replies to the last message again (same speakers). The replies they
        replace stay as earlier versions of them (`show_version` brings one back). A new
        version is sampled at the temperature throughout: with the cooler first sentence,
        a one-sentence reply came back unchanged a third of the time."""
        self.check_writable(session)
        decoding = dataclasses.replace(decoding or self.decoding, opening_temperature=0.0)
        earlier = session.last_replies()
        speakers = session.drop_replies()
        self._forget_after(session)
        return self._draft(session, speakers or None, decoding, earlier)

    def continue_reply(self, session: ChatSession,
                       decoding: DecodingSettings | None = None) -> Reply:
        """Go on with the last reply where it ended (cut off by the length cap, or stopped):
        the new text is appended to the same message. A trailing "…" that marked the cut
        is dropped first."""
        self.check_writable(session)
        index = session.last_reply_index()
        turn = session.turns[index]
        speaker = turn.speaker or session.character
        lead = turn.text.removesuffix("…")
        decoding = decoding or self.decoding
        heard = perspective(session.turns[:index], speaker, self._names(session))
        prompt = self.prepare(speaker, heard, session.id, decoding.max_new_tokens,
                              persona=self.persona, lead=lead)
        [reply] = self._start([(speaker, prompt)], decoding, lead)
        reply.on_done.append(lambda done: self._extend(session, index, lead, done))
        return reply

    def rewrite(self, session: ChatSession, index: int, text: str) -> None:
        """Replace the text of message `index` (the user's or a character's) in place; the
        rest of the chat stays, and memory's entry for that exchange is replaced."""
        self.check_writable(session)
        session.rewrite(index, text)
        self._save_and_sync(session)

    def show_version(self, session: ChatSession, index: int, number: int) -> None:
        """Make version `number` of reply `index` the one kept, in the session and memory."""
        self.check_writable(session)
        session.show_version(index, number)
        self._save_and_sync(session)

    def check_writable(self, session: ChatSession) -> None:
        """SessionError when a character of `session` was deleted: it can be read, not
        continued."""
        gone = [slug for slug in session.characters if slug not in self.runtime.characters]
        if gone:
            raise SessionError(f"{', '.join(gone)} was deleted: this chat can be read but no "
                               "longer changed")

    def remove_character(self, slug: str) -> None:
        """Stop offering `slug` (its folder was moved away): its sessions become read-only
        and its knowledge leaves memory. A block of its own stays loaded until restart."""
        self.runtime.characters.pop(slug, None)
        if self.memory is not None:
            self.memory.index_character(slug, [])

    def edit(self, session: ChatSession, index: int, text: str,
             decoding: DecodingSettings | None = None) -> list[Reply]:
        """Rewrite user turn `index`, drop what followed it, and draft new replies."""
        self.check_writable(session)
        session.edit(index, text)
        self._forget_after(session)
        return self._draft(session, None, decoding)

    def undo(self, session: ChatSession) -> None:
        """Remove the last exchange (message and replies) from the session and memory."""
        self.check_writable(session)
        session.undo()
        self._forget_after(session)
        self._save(session)

    def reset(self, session: ChatSession) -> None:
        """Start the session over: empty transcript, its memories forgotten."""
        self.check_writable(session)
        session.reset()
        if self.memory is not None:
            self.memory.forget_session(session.id)
        self._save(session)

    # ---- internals ----------------------------------------------------------------------

    def _draft(self, session: ChatSession, speakers: Sequence[str] | None,
               decoding: DecodingSettings | None,
               earlier: Sequence[Versions] = ()) -> list[Reply]:
        """Start the replies to the session's last message, all in one batch; `earlier` are
        the versions of the replies they replace, by position."""
        names = self._names(session)
        last_message = session.turns[session.last_user_index()].text
        speakers = list(speakers or next_speakers(session.turns, last_message, names))
        unknown = [s for s in speakers if s not in names]
        if unknown:
            raise SessionError(f"{unknown} are not in this session ({session.characters})")
        replies = self.replies([(s, perspective(session.turns, s, names)) for s in speakers],
                               session.id, decoding, persona=self.persona)
        round_ = _Round(len(replies), lambda done: self._commit(session, done, earlier))
        for position, reply in enumerate(replies):
            reply.on_done.append(lambda r, position=position: round_.done(position, r))
        return replies

    def _commit(self, session: ChatSession, replies: list[Reply],
                earlier: Sequence[Versions]) -> None:
        """Add the finished replies; one that gave nothing (abandoned, or stopped before its
        first word) leaves the reply it was to replace as it was."""
        restored = False
        for position, reply in enumerate(replies):
            old = earlier[position] if position < len(earlier) else None
            if not reply.cancelled and reply.finished_text.strip():
                session.add_reply(reply.character, reply.finished_text,
                                  old.texts if old else None)
            elif old is not None:
                session.put_back(reply.character, old)
                restored = True
        if restored:
            self._save_and_sync(session)
        else:
            self._save(session)

    def _extend(self, session: ChatSession, index: int, lead: str, reply: Reply) -> None:
        """Append a continuation to reply `index` (unless it was abandoned or is empty)."""
        if reply.cancelled or not reply.finished_text.strip() or index >= len(session.turns):
            return
        session.rewrite(index, lead + reply.finished_text)
        self._save_and_sync(session)

    def _save_and_sync(self, session: ChatSession) -> None:
        """Save the session and store again the exchanges memory holds differently."""
        self._save(session)
        if self.memory is None:
            return
        try:
            sync_memory(self.memory, session.id, session.turns, self._names(session))
        except Exception as err:  # the saved chat counts; memory catches up at the next edit
            log.warning("memory not brought in line with session %s: %s", session.id, err)

    def _forget_after(self, session: ChatSession) -> None:
        """Drop from memory every exchange that is no longer in the transcript."""
        if self.memory is None:
            return
        names = self._names(session)
        for slug in session.characters:
            seen = perspective(session.turns, slug, names)
            answered = not seen or seen[-1].role == "character"
            self.memory.forget_turns(session.id, slug, user_turns(seen) + answered)

    def _save(self, session: ChatSession) -> None:
        if self.sessions is not None:
            self.sessions.save(session)

    def _names(self, session: ChatSession) -> dict[str, str]:
        return {slug: self.runtime.character(slug).name for slug in session.characters}

    def _gate_row(self, slug: str) -> GateRow:
        """The character's gate row, recomputed when blocks were added (expansion)."""
        key = (slug, self.runtime.model.num_blocks)
        if key not in self._gate_rows:
            self._gate_rows[key] = gate_row(self.runtime.gate_for(self.runtime.character(slug)))
        return self._gate_rows[key]

    def _retriever(self, character: str, session_id: str | None,
                   query: str) -> Callable[[int], RetrievedContext]:
        """`retrieve(before_turn)` for `assemble_prompt`: knowledge + earlier exchanges."""
        def retrieve(before_turn: int) -> RetrievedContext:
            if self.memory is None or not query.strip():
                return RetrievedContext()
            try:
                knowledge = character_knowledge(self.memory, character, query,
                                                self.limits.knowledge_k)
                recalled = (self.memory.recall(session_id, character, query,
                                               self.limits.recall_k, before_turn,
                                               self.limits.recall_within)
                            if session_id is not None and before_turn > 1 else [])
            except Exception as err:  # memory is a help: a reply without it beats none
                log.warning("memory retrieval failed, replying without it: %s", err)
                return RetrievedContext()
            return RetrievedContext(tuple(knowledge), tuple(recalled))
        return retrieve

    def _remembering(self, session_id: str, turns: list[Turn]) -> Callable[[Reply], None]:
        def remember(reply: Reply) -> None:
            if reply.cancelled or not reply.text.strip() or self.memory is None:
                return
            self.memory.remember_exchange(session_id, reply.character, turns[-1].text,
                                          reply.lead + reply.finished_text, user_turns(turns))
        return remember


class _Round:
    """The replies drafted for one message: committed together, in speaker order, once
    every one of them has been read (or abandoned)."""

    def __init__(self, count: int, commit: Callable[[list[Reply]], None]) -> None:
        self._slots: list[Reply | None] = [None] * count
        self._commit = commit
        self._lock = threading.Lock()

    def done(self, position: int, reply: Reply) -> None:
        with self._lock:
            self._slots[position] = reply
            if any(slot is None for slot in self._slots):
                return
        self._commit([slot for slot in self._slots if slot is not None])


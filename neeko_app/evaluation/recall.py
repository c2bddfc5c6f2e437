"""`neeko eval-recall`: does a character remember what the user told it long ago?

Each probe opens a session with a personal fact ("my dog is called Tobermory"), fills the
conversation with small talk until the history alone is longer than the model's context
(so the fact's turn cannot be in the prompt), then asks for the fact. The earlier exchanges
are in the session's memory, as the chat app and the API leave them; the reply is built
exactly as in chat (recent history, knowledge, recalled exchanges) and counts when it holds
the fact. The probes' names are not in any training file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn
from neeko_app.evaluation.quiz import GREEDY
from neeko_app.memory import MemoryStore

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Probe:
    told: str  # what the user says at turn 1
    acknowledged: str  # the character's reply then (kept neutral: any character may say it)
    question: str  # asked after the history overflowed
    answer: str  # regular expression the reply must hold


PROBES = (
    Probe("My dog is called Tobermory, and he steals bread.", "A dog with a thief's heart.",
          "Remind me, what is my dog's name?", r"tobermory"),
    Probe("I live in Pontevedra, near the coast.", "A harbour town, then.",
          "Where did I tell you I live?", r"pontevedra"),
    Probe("My name is Radomir, by the way.", "Well met.",
          "Do you still remember my name?", r"radomir"),
    Probe("I work as a bookbinder.", "Patient work, and delicate.",
          "What do I do for a living, as I told you?", r"bookbind"),
    Probe("My sister Sidonie is getting married in spring.", "Give her my good wishes.",
          "Who did I say is getting married?", r"sidonie"),
    Probe("My favourite food is pickled walnuts.", "Sour and rich at once.",
          "What food did I say I love most?", r"walnut"),
    Probe("You promised to teach me a song about a kingfisher.", "I did, and I will.",
          "What did you promise to teach me?", r"kingfisher"),
    Probe("My horse is a grey mare called Juniper.", "A grey mare is a fine thing.",
          "What is my horse called?", r"juniper"),
    Probe("I was born in Daugavpils, far in the east.", "Far east indeed.",
          "Where was I born, did I say?", r"daugavpils"),
    Probe("My son Teodor is seven years old.", "A good age for questions.",
          "What is my son's name?", r"teodor"),
)

SMALL_TALK = (
    ("Is it cold where you are?", "Cold enough to keep a cloak on."),
    ("Did you sleep well?", "Well enough. Sleep is a short guest."),
    ("What did you eat today?", "Bread, some olives, a little wine."),
    ("Do you like music?", "Music that is well made, yes."),
    ("Are you busy today?", "Always. But ask your questions."),
    ("What is the weather like?", "Grey skies and a sharp wind."),
    ("Do you read much?", "Whenever the day allows it."),
    ("What colour do you like?", "Deep blue, like evening water."),
    ("Do you walk often?", "Every morning, if my legs allow."),
    ("Have you had visitors today?", "A few, and all of them talkative."),
    ("Do you keep a garden?", "A small one, with herbs."),
    ("Are you tired?", "A little. Go on, though."),
)


@dataclass
class RecallAnswer:
    character: str
    probe: int
    question: str
    reply: str
    correct: bool
    recalled_turns: list[int]  # the earlier turns memory put in the prompt
    first_kept_turn: int  # the oldest turn still in the history (> 1: it overflowed)


@dataclass
class RecallReport:
    characters: list[str]
    answers: list[RecallAnswer] = field(default_factory=list)
    seconds: float = 0.0

    def accuracy(self, character: str | None = None) -> float:
        picked = [a.correct for a in self.answers if character in (None, a.character)]
        return sum(picked) / len(picked) if picked else 0.0

    def retrieved_rate(self) -> float:
        """Share of probes whose turn 1 memory put back in the prompt."""
        return sum(1 in a.recalled_turns for a in self.answers) / max(1, len(self.answers))

    def to_dict(self) -> dict:
        return {"characters": self.characters, "accuracy": self.accuracy(),
                "by_character": {c: self.accuracy(c) for c in self.characters},
                "turn_1_recalled": self.retrieved_rate(), "seconds": self.seconds,
                "answers": [asdict(a) for a in self.answers]}


def probe_history(probe: Probe, count_tokens: Callable[[str], int],
                  context_tokens: int) -> list[Turn]:
    """The conversation up to the question: the fact, then small talk until the history
    alone is longer than `context_tokens` (so the fact's turn cannot be in the prompt)."""
    turns = [Turn("user", probe.told), Turn("character", probe.acknowledged)]
    tokens = sum(count_tokens(turn.text) for turn in turns)
    k = 0
    while tokens <= context_tokens:
        user, reply = SMALL_TALK[k % len(SMALL_TALK)]
        turns += [Turn("user", user), Turn("character", reply)]
        tokens += count_tokens(user) + count_tokens(reply)
        k += 1
    return [*turns, Turn("user", probe.question)]


def run_recall(engine: ChatEngine, memory: MemoryStore, slugs: Sequence[str],
               probes: Sequence[Probe] = PROBES,
               decoding: DecodingSettings = GREEDY,
               progress: ProgressCallback = lambda stage, done, total: None) -> RecallReport:
    """Every probe put to every character of `slugs`, each in its own session (`memory` is
    the engine's; the sessions are named `eval-recall-*`)."""
    started = time.perf_counter()
    report = RecallReport(list(slugs))
    jobs = [(slug, k, probe) for slug in slugs for k, probe in enumerate(probes)]
    replies = []
    for slug, k, probe in jobs:
        session = f"eval-recall-{slug}-{k}"
        turns = probe_history(probe, engine.count_tokens, engine.context_tokens)
        memory.remember_exchanges(session, slug, [
            (user.text, reply.text)
            for user, reply in zip(turns[:-1:2], turns[1:-1:2], strict=True)])
        replies.append(engine.reply(slug, turns, session, decoding))  # batched by the scheduler
    for done, ((slug, k, probe), reply) in enumerate(zip(jobs, replies, strict=True), start=1):
        reply.result()
        text = reply.finished_text
        report.answers.append(RecallAnswer(
            slug, k, probe.question, text, re.search(probe.answer, text, re.I) is not None,
            sorted(e.turn for e in reply.context.recalled), reply.prompt.first_turn))
        progress("recall", done, len(jobs))
    report.seconds = time.perf_counter() - started
    return report

"""Benchmark 4, end to end on the embedded model: what a user of the app waits for.

- choosing a token: top-p sampling by sorting the vocabulary vs by topk (what the
  scheduler does, the largest per-token cost the profile of the chat path showed);
- a chat reply through the engine (prompt assembly, retrieval memory, the scheduler):
  time to first token and tokens per second;
- batched throughput with 1, 4 and 8 sessions asking at once (replies share batches);
- adding a character by expansion (200 training exchanges), measured through the same
  `add_character` the wizard calls, in a scratch copy of the characters folder;
- Chroma retrieval latency (p50/p95 of `MemoryStore.recall`) with 1k, 10k, 100k exchanges.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers.generation.logits_process import TopPLogitsWarper

from neeko_app.bench.results import BenchResult, machine
from neeko_app.bench.timing import interleaved, per_call, percentile
from neeko_app.characters.card import DIALOGUES_FILE
from neeko_app.chat.decoding import nucleus
from neeko_app.chat.engine import ChatEngine
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.prompt import Turn
from neeko_app.chat.startup import build_engine
from neeko_app.config import Settings
from neeko_app.memory import MemoryStore
from neeko_app.memory.client import open_client
from neeko_app.memory.store import CONVERSATION_COLLECTION
from neeko_app.runtime import Runtime
from neeko_app.training.cli_progress import ProgressBar
from neeko_app.training.knowledge_data import KNOWLEDGE_FILE, RECALL_FILE
from neeko_app.training.trainer import (
    EXPANSION_TRAINING,
    Progress,
    TrainingCancelled,
    TrainingConfig,
)
from neeko_app.training.workflows import TrainingJob, add_character

QUESTIONS = ["Tell me about the hardest year of your life.",
             "What do you think of people who flatter the powerful?",
             "How do you spend a morning?",
             "Who taught you the most, and what did they teach?"]
EXPANSION_SOURCE = "caesar"


@dataclass(frozen=True)
class EndToEndOptions:
    base_model: str = "embedded"
    device: str = "cpu"
    characters_dir: Path | None = None  # default: the shipped characters
    reply_tokens: int = 64
    replies: int = 3  # single-session replies timed
    sessions: tuple[int, ...] = (1, 4, 8)
    expansion_exchanges: int = 200
    expansion_steps: int | None = None  # stop after this many steps and project the rest
    training: TrainingConfig = EXPANSION_TRAINING  # what the wizard trains with
    memory_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    queries: int = 50


def run(options: EndToEndOptions = EndToEndOptions(),
        report: Callable[[str], None] = lambda _: None) -> BenchResult:
    """Run the stages in order; `report` hears which one starts (they take minutes)."""
    with tempfile.TemporaryDirectory(prefix="neeko-bench-") as scratch:
        scratch = Path(scratch)
        characters = scratch / "characters"
        shutil.copytree(options.characters_dir or Settings().characters_dir, characters,
                        ignore=shutil.ignore_patterns(".*"))
        settings = Settings(base_model=options.base_model, device=options.device,
                            characters_dir=characters, cache_dir=Settings.from_env().cache_dir,
                            data_dir=scratch / "data",  # the added character goes there
                            memory_dir=scratch / "memory", sessions_dir=scratch / "sessions")
        # replies of the full length asked for, whatever the app's sentence limit
        decoding = DecodingSettings(max_new_tokens=options.reply_tokens, seed=0, max_sentences=0)
        own_threads, started = torch.get_num_threads(), time.perf_counter()
        engine = build_engine(settings, decoding, report=lambda _: None)  # as the app starts
        load_s = time.perf_counter() - started
        runtime = engine.runtime
        result = BenchResult("end_to_end", "End to end on the embedded model",
                             _settings(options), machine(runtime.base.device))
        result.add(what="start-up: model, blocks, memory indexed (cached model)", value=load_s,
                   unit="s")
        try:
            report("sampling one token, sorting vs topk")
            _sampling(runtime, decoding, result)
            report(f"{options.replies} chat replies, one at a time")
            _chat_reply(engine, options, result)
            report(f"throughput with {', '.join(map(str, options.sessions))} sessions at once")
            _throughput(engine, options, result)
        finally:
            engine.close()
            torch.set_num_threads(own_threads)  # build_engine kept this thread to one core
        report(f"adding a character by expansion ({options.expansion_exchanges} exchanges)")
        _expansion(settings, runtime, scratch, options, result)
        report(f"memory recall with {', '.join(f'{n:,}' for n in options.memory_sizes)} "
               "stored exchanges")
        _retrieval(scratch / "retrieval", options, result)
    return result


def _sampling(runtime: Runtime, decoding: DecodingSettings, result: BenchResult) -> None:
    """Choosing one token from real next-token logits: transformers' top-p warper (sorts the
    whole vocabulary) against the nucleus taken with topk, as the scheduler now does."""
    tokenizer, model = runtime.base.tokenizer, runtime.model
    ids = tokenizer(QUESTIONS[0], return_tensors="pt").input_ids.to(model.keys.device)
    with torch.no_grad():
        logits = model(ids, logits_to_keep=1).logits[0, -1].float().cpu()
    scores = logits / decoding.temperature
    warper = TopPLogitsWarper(decoding.top_p)

    def with_sort() -> None:
        kept = warper(None, scores[None].clone())
        torch.multinomial(torch.softmax(kept, dim=-1)[0], 1)

    def with_topk() -> None:
        _, probs = nucleus(torch.softmax(scores, dim=-1), decoding.top_p)
        torch.multinomial(probs, 1)

    cpu = torch.device("cpu")
    timings = interleaved({"sort": per_call(with_sort, 20, cpu),
                           "topk": per_call(with_topk, 20, cpu)}, rounds=5)
    result.add(what=f"sample one token, top-p {decoding.top_p}, {scores.numel():,} vocab: "
                    "transformers' sorting warper", value=timings["sort"] * 1000, unit="ms")
    result.add(what="same, nucleus by topk (the scheduler's way)",
               value=timings["topk"] * 1000, unit="ms",
               x_faster=timings["sort"] / timings["topk"])


def _chat_reply(engine: ChatEngine, options: EndToEndOptions, result: BenchResult) -> None:
    """Time to first token and decode speed of one session's replies, one at a time, after
    an untimed reply (the first one sets up the kernels for the model's shapes)."""
    slug = sorted(engine.runtime.characters)[0]
    engine.reply(slug, [Turn("user", QUESTIONS[-1])]).result()
    first_token, rates = zip(*(timed_reply(engine, slug, QUESTIONS[i % len(QUESTIONS)],
                                           "bench-single")
                               for i in range(options.replies)), strict=True)
    result.add(what="chat reply: time to first token (median)",
               value=statistics.median(first_token), unit="s")
    result.add(what="chat reply: decode speed (median)", value=statistics.median(rates),
               unit="tokens/s")


def timed_reply(engine: ChatEngine, slug: str, question: str,
                session_id: str) -> tuple[float, float]:
    """One reply of `slug` to `question`: seconds to its first piece of text, and tokens per
    second after it."""
    started = time.perf_counter()
    reply = engine.reply(slug, [Turn("user", question)], session_id=session_id)
    pieces = iter(reply)
    next(pieces, None)
    first = time.perf_counter()
    for _ in pieces:
        pass
    done = time.perf_counter()
    return first - started, max(reply.completion_tokens - 1, 1) / max(done - first, 1e-9)


def whole_reply_seconds(engine: ChatEngine, slug: str, question: str,
                        decoding: DecodingSettings | None = None) -> float:
    """Seconds until `slug`'s whole reply to `question` (no session) has come."""
    started = time.perf_counter()
    engine.reply(slug, [Turn("user", question)], decoding=decoding).result()
    return time.perf_counter() - started


def sessions_at_once(engine: ChatEngine, count: int) -> float:
    """Tokens per second of `count` sessions asking at once, each its own character (the
    characters in turn): all their tokens over the wall time."""
    slugs = sorted(engine.runtime.characters)
    drafts = [(slugs[i % len(slugs)], [Turn("user", QUESTIONS[i % len(QUESTIONS)])])
              for i in range(count)]
    started = time.perf_counter()
    replies = engine.replies(drafts)
    for reply in replies:
        reply.result()
    return sum(r.completion_tokens for r in replies) / (time.perf_counter() - started)


def _throughput(engine: ChatEngine, options: EndToEndOptions, result: BenchResult) -> None:
    """Sessions asking at once: all tokens over the wall time, per count of sessions, after
    an untimed round of the most sessions (a batch's first shape sets up its kernels)."""
    sessions_at_once(engine, max(options.sessions))
    single = None
    for count in options.sessions:
        rate = sessions_at_once(engine, count)
        single = single or rate
        result.add(what=f"throughput, {count} sessions at once", value=rate, unit="tokens/s",
                   x_one_session=rate / single if single else None)


def _expansion(settings: Settings, runtime: Runtime, scratch: Path, options: EndToEndOptions,
               result: BenchResult) -> None:
    """Add a copy of a shipped character, cut to N exchanges, by expansion."""
    source = scratch / "bench-expansion"
    shutil.copytree(settings.characters_dir / EXPANSION_SOURCE, source)
    for artefact in ("block.safetensors", "role.safetensors", KNOWLEDGE_FILE, RECALL_FILE):
        (source / artefact).unlink(missing_ok=True)  # N exchanges of dialogue, nothing more
    card = json.loads((source / "character.json").read_text())
    card |= {"slug": "bench-expansion", "name": f"{card['name']} (benchmark copy)"}
    (source / "character.json").write_text(json.dumps(card))
    lines = (source / DIALOGUES_FILE).read_text().splitlines()[:options.expansion_exchanges]
    (source / DIALOGUES_FILE).write_text("\n".join(lines) + "\n")
    seen: list[Progress] = []
    limit = options.expansion_steps
    bar = ProgressBar("expansion")

    def progress(step: Progress) -> None:
        seen.append(step)
        bar(step)

    job = TrainingJob(options.training, on_progress=progress,
                      should_stop=lambda: limit is not None and len(seen) >= limit)
    # checkpoints of its own (nothing resumes from an earlier run), the converted model shared
    bench_settings = replace(settings, cache_dir=scratch / "cache")
    if (settings.cache_dir / "models").is_dir():
        bench_settings.cache_dir.mkdir()
        (bench_settings.cache_dir / "models").symlink_to(settings.cache_dir / "models")
    started = time.perf_counter()
    try:
        add_character(bench_settings, source, "expansion", job, runtime)
        measured = "measured"
    except TrainingCancelled:
        measured = f"projected from {len(seen)} steps"
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    last = seen[-1]
    total = elapsed if last.step == last.total else elapsed + last.eta_seconds
    result.add(what=f"add a character by expansion ({len(lines)} exchanges, {last.total} "
                    f"steps, {measured})", value=total / 60, unit="min",
               seconds_per_step=last.seconds / last.step)


def _retrieval(directory: Path, options: EndToEndOptions, result: BenchResult) -> None:
    """Recall latency with growing conversation memory (100 sessions x 7 characters)."""
    client = open_client(directory)
    store = MemoryStore(client)  # creates the collections the app uses
    collection = client.get_collection(CONVERSATION_COLLECTION)
    batch = min(5_000, client.get_max_batch_size())
    generator = torch.Generator().manual_seed(0)
    stored = 0
    for size in sorted(options.memory_sizes):
        while stored < size:
            count = min(batch, size - stored)
            vectors = torch.nn.functional.normalize(
                torch.randn(count, 384, generator=generator), dim=-1)
            ids = range(stored, stored + count)
            collection.add(
                ids=[f"s{i % 100}:char{i % 7}:{i}" for i in ids],
                embeddings=vectors.tolist(),
                documents=[f"question {i}\nreply {i}" for i in ids],
                metadatas=[{"session_id": f"s{i % 100}", "character": f"char{i % 7}", "turn": i,
                            "time": 0.0, "user_chars": len(f"question {i}")} for i in ids])
            stored += count
        latencies = []
        for q in range(options.queries):
            started = time.perf_counter()
            store.recall(f"s{q % 100}", f"char{q % 7}", QUESTIONS[q % len(QUESTIONS)], k=3)
            latencies.append(time.perf_counter() - started)
        result.add(what=f"memory recall with {size:,} exchanges stored: p50",
                   value=percentile(latencies, 0.5) * 1000, unit="ms",
                   p95_ms=percentile(latencies, 0.95) * 1000)


def _settings(options: EndToEndOptions) -> dict:
    return {"base_model": options.base_model, "reply_tokens": options.reply_tokens,
            "sessions": list(options.sessions), "expansion_steps": options.expansion_steps
            or "all", "memory_sizes": list(options.memory_sizes), "queries": options.queries}

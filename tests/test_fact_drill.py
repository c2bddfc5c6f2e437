"""`neeko drill-facts`: its data, one block trained at a time, resume across its phases,
and the blocks written only at the end (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neeko_app.characters.card import CharacterError, load_character
from neeko_app.chat.prompt import Turn
from neeko_app.cli import main
from neeko_app.config import Settings
from neeko_app.model.tiny import tiny_tokenizer
from neeko_app.storage import load_tensors
from neeko_app.training.data import Conversation
from neeko_app.training.fact_drill import answer_first, cut_reply, drill_examples, drill_facts
from neeko_app.training.knowledge_data import knowledge_conversations
from neeko_app.training.trainer import DrillConfig, TrainingCancelled, TrainingConfig
from neeko_app.training.workflows import TrainingJob, pretrain
from tests.conftest import write_card
from tests.test_quiz import FACTS, write_character

QUICK = DrillConfig(facts_epochs=2, settle_epochs=1, batch_size=2, bf16=False)
PARAPHRASES = [{"id": f"p{i}", "facts": ["miller-f001"], "topic": "places", "style": style,
                "turns": [{"role": "user", "text": question},
                          {"role": "character", "text": "The Wend. It turns my wheel all year "
                                                        "and floods in spring."}]}
               for i, (style, question) in enumerate([("curt", "River?"),
                                                      ("playful", "Guess my riddle: your water?")])]


@pytest.fixture
def library(tmp_path) -> Settings:
    root = tmp_path / "characters"
    root.mkdir()
    for slug in FACTS:
        write_character(root, slug)
    (root / "miller" / "paraphrases.jsonl").write_text(
        "".join(json.dumps(p) + "\n" for p in PARAPHRASES))
    settings = Settings(base_model="tiny", device="cpu", characters_dir=root,
                        cache_dir=tmp_path / "cache")
    pretrain(settings, list(FACTS), TrainingJob(TrainingConfig(epochs=1, batch_size=4)))
    return settings


def files(settings: Settings) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in settings.characters_dir.rglob("*") if p.is_file()}


def test_a_reply_is_cut_after_the_sentence_that_reaches_the_answer_length():
    assert cut_reply("Rome. A city of hills. Old and proud.", 4) == "Rome. A city of hills."
    assert cut_reply("Rome, by the Tiber.", 10) == "Rome, by the Tiber."
    chat = Conversation("c", (Turn("user", "Where? Say it. Now."),
                              Turn("character", "Rome. Big city here. Yes.")))
    cut = answer_first(chat, 2)
    assert cut.turns == (chat.turns[0], Turn("character", "Rome. Big city here."))


def test_the_drill_teaches_every_wording_with_the_reply_cut_after_its_answer(library):
    miller = load_character(library.characters_dir / "miller")
    assert len(knowledge_conversations(miller)) == 4  # what `neeko train` reads
    assert len(knowledge_conversations(miller, paraphrases=True)) == 4 + 2
    examples = drill_examples(miller, tiny_tokenizer(), 512, answer_words=2)
    texts = [tiny_tokenizer().decode(e.input_ids) for e in examples]
    assert len(examples) == 4 + 2 + 1  # knowledge, paraphrases, recall
    assert sum("Guess my riddle" in t for t in texts) == 1
    assert not any("floods in spring" in t for t in texts)
    assert sum("Earlier in this conversation:" in t for t in texts) == 1  # the recall one
    assert not any("What you know:" in t for t in texts)


def test_a_drill_changes_only_its_block_and_writes_it_only_when_done(library):
    miller = library.characters_dir / "miller" / "block.safetensors"
    before, old_weights = files(library), load_tensors(miller)
    calls = iter(range(1000))
    with pytest.raises(TrainingCancelled):  # stopped on the settle phase's third step
        drill_facts(library, ["miller"], QUICK, should_stop=lambda: next(calls) == 10)
    assert files(library) == before

    phases: list[tuple[str, int]] = []
    drill_facts(library, ["miller"], QUICK,
                on_progress=lambda slug, phase, p: phases.append((phase, p.step)))
    assert phases[0] == ("settle", 1), "the finished facts phase was trained again"
    after, new_weights = files(library), load_tensors(miller)
    assert {p: b for p, b in after.items() if p != miller} == {
        p: b for p, b in before.items() if p != miller}
    assert torch.equal(old_weights["role_keys"], new_weights["role_keys"])
    assert any(not torch.equal(t, new_weights[n]) for n, t in old_weights.items())
    assert not any((library.cache_dir / "checkpoints" / "drill-facts").iterdir())


def test_drill_command_refuses_a_character_without_its_own_block(library, capsys):
    write_card(library.characters_dir, "guest", "Guest")
    flags = ["--base-model", "tiny", "--device", "cpu", "--fp32",
             "--characters-dir", str(library.characters_dir),
             "--cache-dir", str(library.cache_dir)]
    assert main(["drill-facts", "guest", *flags]) == 2
    assert "no block of its own to drill: guest" in capsys.readouterr().err
    with pytest.raises(CharacterError, match="no knowledge exchanges"):
        drill_examples(load_character(library.characters_dir / "guest"), tiny_tokenizer(),
                       512, 10)
    assert main(["drill-facts", "--facts-epochs", "1", "--settle-epochs", "0", *flags]) == 0
    assert "drilled miller, sailor" in capsys.readouterr().out

"""The script guard: a reply keeps to the writing systems of its conversation."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from neeko_app.chat.decoding import RowDecoder
from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.writing_systems import ForeignScriptBan, writing_systems

WORDS = ["<?>", "Rome", "мента", "ライ", "!", "Ἀθῆναι", "🙂", "é", "Cæsar", "東京", "Москва"]
CYRILLIC, KATAKANA, GREEK, CJK = 2, 3, 5, 9


@pytest.fixture
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level vocabulary with one token per script, one emoji and one punctuation."""
    words = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<?>"))
    words.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<?>")


def test_writing_systems_name_the_scripts_of_letters_only():
    assert writing_systems("Rome, мента! ライ 🙂 é 42") == {"LATIN", "CYRILLIC", "KATAKANA"}
    assert writing_systems("e\u0301") == {"LATIN"}  # a combining accent belongs to any script
    assert writing_systems("🙂\ufe0f ... 1977") == frozenset()


def banned(tokenizer, prompt: str) -> set[int]:
    scores = torch.zeros(1, len(WORDS))
    ban = ForeignScriptBan(tokenizer, tokenizer.encode(prompt))
    return set((ban(None, scores)[0] == -float("inf")).nonzero().flatten().tolist())


def test_an_english_conversation_bans_every_other_script(tokenizer):
    assert banned(tokenizer, "Rome !") == {CYRILLIC, KATAKANA, GREEK, CJK, 10}


def test_a_script_the_user_writes_in_stays_allowed(tokenizer):
    assert banned(tokenizer, "Rome Москва") == {KATAKANA, GREEK, CJK}
    assert banned(tokenizer, "Ἀθῆναι 東京") == {CYRILLIC, KATAKANA, 10, 1, 7, 8}


def test_a_head_wider_than_the_vocabulary_leaves_the_padding_alone(tokenizer):
    scores = torch.zeros(1, len(WORDS) + 6)
    kept = ForeignScriptBan(tokenizer, tokenizer.encode("Rome"))(None, scores)
    assert kept.shape == scores.shape and bool((kept[0, len(WORDS):] == 0).all())


def test_the_decoder_takes_the_best_token_in_the_conversation_s_scripts(tokenizer):
    logits = torch.zeros(len(WORDS))
    logits[CYRILLIC], logits[KATAKANA], logits[8] = 3.0, 2.0, 1.0  # "Cæsar" third
    prompt = tokenizer.encode("Rome !")
    greedy = DecodingSettings(temperature=0.0)
    assert RowDecoder(tokenizer, prompt, greedy, []).choose(logits) == 8
    unguarded = DecodingSettings(temperature=0.0, script_guard=False)
    assert RowDecoder(tokenizer, prompt, unguarded, []).choose(logits) == CYRILLIC

"""The length bound that refuses text which cannot fit the context without tokenizing it: it
holds for tokenizers that keep every character, and is switched off for those that do not."""

from __future__ import annotations

import random

import pytest
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from neeko_app.chat.prompt import Turn, fit_history
from neeko_app.chat.token_bounds import max_chars_per_token, too_long
from neeko_app.model.tiny import tiny_tokenizer

VOCAB = {"<unk>": 0, "a": 1, "b": 2, "▁": 3, "ab": 4, "▁ab": 5}
BYTES = {f"<0x{b:02X}>": len(VOCAB) + b for b in range(256)}


def bpe(normalizer=None, pre_tokenizer=None, added: AddedToken | None = None,
        vocab: dict[str, int] = VOCAB, **options: bool) -> PreTrainedTokenizerFast:
    """A small BPE tokenizer ("ab" and "▁ab" merge) with the given parts."""
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("▁", "ab")],
                                   unk_token="<unk>", **options))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    if added is not None:
        tokenizer.add_tokens([added])
    return tokenizer


def byte_level(bytes_kept: int = 256) -> PreTrainedTokenizerFast:
    """A byte-level BPE without an unknown token (as GPT-2's), knowing `bytes_kept` bytes."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())[:bytes_kept]
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def texts(alphabet: str, count: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [alphabet * 3, *("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300)))
                            for _ in range(count))]


KEEPING = {
    "byte-level (tiny)": tiny_tokenizer(),
    "byte-level, no unknown token": byte_level(),
    "plain BPE": bpe(),
    "spaces as ▁, bytes (Gemma)": bpe(normalizers.Replace(" ", "▁"),
                                      pre_tokenizers.Split(" ", "merged_with_previous"),
                                      vocab=VOCAB | BYTES, fuse_unk=True, byte_fallback=True),
    "lowercased, decomposed": bpe(normalizers.Sequence([normalizers.NFD(),
                                                        normalizers.Lowercase()])),
}


@pytest.mark.parametrize("tokenizer", KEEPING.values(), ids=KEEPING.keys())
def test_no_text_takes_fewer_tokens_than_its_length_allows(tokenizer):
    longest = max_chars_per_token(tokenizer)
    assert longest is not None
    for text in texts("ab AB\n\tc😀é<>" + "<start_of_turn>"):
        tokens = token_count(tokenizer, text)
        assert not too_long(text, tokens, longest), (text, tokens)


def test_the_bound_is_tight_for_the_longest_token():
    tokenizer = tiny_tokenizer()
    longest = max_chars_per_token(tokenizer)
    text = "<start_of_turn>" * 20  # 20 tokens, each as long as a token gets
    assert longest == len("<start_of_turn>") and token_count(tokenizer, text) == 20
    assert not too_long(text, 20, longest) and too_long(text, 19, longest)


DROPPING = {  # tokenizers that can make a long text into few tokens
    "composes (NFC)": bpe(normalizers.NFC()),
    "squeezes spaces": bpe(normalizers.Replace("  ", " ")),
    "splits on whitespace": bpe(pre_tokenizer=pre_tokenizers.WhitespaceSplit()),
    "removes what it splits on": bpe(pre_tokenizer=pre_tokenizers.Split(" ", "removed")),
    "fuses unknown characters": bpe(fuse_unk=True),
    "byte fallback without bytes": bpe(fuse_unk=True, byte_fallback=True),
    "byte-level, bytes missing": byte_level(bytes_kept=200),
    "added token eats spaces": bpe(added=AddedToken("<x>", lstrip=True)),
    "word pieces": PreTrainedTokenizerFast(tokenizer_object=Tokenizer(
        models.WordPiece(vocab=VOCAB, unk_token="<unk>"))),
}


@pytest.mark.parametrize("tokenizer", DROPPING.values(), ids=DROPPING.keys())
def test_the_bound_is_off_for_tokenizers_that_drop_or_merge_characters(tokenizer):
    assert max_chars_per_token(tokenizer) is None
    assert not too_long("x" * 10**6, 1, None)


def test_a_fused_unknown_run_is_one_token_whatever_its_length():
    assert token_count(DROPPING["fuses unknown characters"], "c" * 10_000) == 1


def test_a_history_that_cannot_fit_is_refused_before_counting():
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text)

    with pytest.raises(ValueError, match="too long"):
        fit_history([Turn("user", "x" * 10_000)], count, 100, "H", chars_per_token=4)
    assert counted == []
    kept = fit_history([Turn("user", "x" * 5000), Turn("character", "y"), Turn("user", "z")],
                       count, 100, "H", chars_per_token=4)
    assert kept == [Turn("user", "z")] and all(len(text) <= 400 for text in counted)

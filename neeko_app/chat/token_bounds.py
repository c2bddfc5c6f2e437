"""Whether a text can fit a number of tokens, told from its length alone: text that cannot fit
the context is refused without tokenizing it (tokenizing 30 MB costs seconds and hundreds of
MB).

The bound. A tokenizer that keeps every character of its input (see `_keeps_every_character`)
cuts the text into tokens each standing for a piece of it: a vocabulary entry spells its piece
(`▁the` for " the"; a byte-level `Ġthe` spells one character per byte, so no fewer characters
than it stands for), a byte token stands for less than one character, a special token for its
own spelling. So no token stands for more characters than the longest vocabulary entry has,
`longest`, and a text of n characters takes at least n / longest tokens: with more than
`tokens * longest` characters it cannot fit in `tokens`, whatever it says. Text at or under
that length is tokenized and counted as before, so the bound never refuses text that fits.

It does not hold for a tokenizer that drops or merges characters before cutting (NFC
composition, stripping, splitting on whitespace), that drops characters it has no token for,
or folds a run of them (or of spaces, around an added token) into one token: for those
`max_chars_per_token` is None and nothing is refused by length.
"""

from __future__ import annotations

import json

from tokenizers import pre_tokenizers

# Normalizers and pre-tokenizers that never make a text shorter (they keep, replace one for
# one, add, or decompose characters). "Replace" and "Split" are checked further below.
_NORMALIZERS = frozenset({"Prepend", "NFD", "NFKD", "Lowercase", "ByteLevel", "Sequence",
                          "Replace"})
_PRE_TOKENIZERS = frozenset({"ByteLevel", "Metaspace", "Digits", "UnicodeScripts", "Sequence",
                             "Split", "Punctuation"})


def max_chars_per_token(tokenizer) -> int | None:
    """The most characters one token of `tokenizer` can stand for, when its tokenization keeps
    every character; None when the bound cannot be trusted."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    vocab = tokenizer.get_vocab()
    if not _keeps_every_character(tokenizer, backend, vocab):
        return None
    return max(len(token) for token in vocab)


def too_long(text: str, tokens: int, chars_per_token: int | None) -> bool:
    """True when `text` certainly takes more than `tokens` tokens (from its length alone)."""
    return chars_per_token is not None and len(text) > tokens * chars_per_token


def _keeps_every_character(tokenizer, backend, vocab: dict[str, int]) -> bool:
    """Whether the tokenizer's normalizer, pre-tokenizer, model and added tokens leave every
    character of the input to some token."""
    model = backend.model
    if type(model).__name__ != "BPE":
        return False
    # A character BPE has no token for is spelled in byte tokens (if it has them all), else
    # stands as an unknown token (one per character unless fused), else is dropped; a
    # byte-level pre-tokenizer leaves only bytes to spell (if all are in the vocabulary).
    covered = ((model.byte_fallback and all(f"<0x{b:02X}>" in vocab for b in range(256)))
               or (model.unk_token is not None and not model.fuse_unk)
               or (_is_byte_level(backend.pre_tokenizer)
                   and all(char in vocab for char in pre_tokenizers.ByteLevel.alphabet())))
    # an added token that strips the spaces around it takes any number of them in
    stripping = any(t.lstrip or t.rstrip for t in tokenizer.added_tokens_decoder.values())
    return (covered and not stripping
            and _component_keeps(backend.normalizer, _NORMALIZERS, "normalizers")
            and _component_keeps(backend.pre_tokenizer, _PRE_TOKENIZERS, "pretokenizers"))


def _is_byte_level(pre_tokenizer) -> bool:
    return (pre_tokenizer is not None
            and json.loads(pre_tokenizer.__getstate__()).get("type") == "ByteLevel")


def _component_keeps(component, kinds: frozenset[str], children: str) -> bool:
    return component is None or _keeps(json.loads(component.__getstate__()), kinds, children)


def _keeps(spec: dict, kinds: frozenset[str], children: str) -> bool:
    """Whether the serialised component `spec` (a normalizer or pre-tokenizer) keeps every
    character: a Replace must not shorten, a Split must not remove what it splits on."""
    kind = spec.get("type")
    if kind not in kinds:
        return False
    if kind == "Sequence":
        return all(_keeps(child, kinds, children) for child in spec.get(children, []))
    if kind == "Replace":
        pattern = spec.get("pattern", {}).get("String")
        return bool(pattern) and len(spec.get("content", "")) >= len(pattern)
    return spec.get("behavior") != "Removed"

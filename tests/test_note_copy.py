"""The note-copy bias: which note tokens count as names and numbers, and what it favours."""

from __future__ import annotations

import torch

from neeko_app.chat.generation import DecodingSettings
from neeko_app.chat.note_copy import NoteCopyBias, name_runs

NOTES = ("What you know:\n- I crossed the Rubicon in 49 BC.\n"
         "- Joseph Wölfl faced me at Baron Wetzlar's house (1799).")


def runs_of(tokenizer, text: str) -> list[str]:
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False).input_ids)
    return [tokenizer.convert_tokens_to_string([pieces[k] for k in run]).strip()
            for run in name_runs(pieces)]


def test_names_and_numbers_of_the_notes_are_found_but_not_sentence_openers(embedded_base):
    runs = runs_of(embedded_base.tokenizer, NOTES)
    assert "Rubicon" in runs and "Wölfl" in runs and "Baron Wetzlar" in runs
    assert any(run.startswith("49") and run.endswith("BC") for run in runs)
    assert "1799" in runs
    # "What", "I" and "Joseph" open a line or a sentence: capitalised, but not a name signal
    assert not {"What", "I", "Joseph"} & set(runs)


def test_the_bias_favours_starting_and_then_finishing_a_note_name(embedded_base):
    tokenizer = embedded_base.tokenizer
    notes = tokenizer(NOTES, add_special_tokens=False).input_ids
    prompt = notes + tokenizer("\n\nWho faced you?", add_special_tokens=False).input_ids
    bias = NoteCopyBias(tokenizer, notes, prompt, 2.0)
    w, rest = tokenizer(" Wölfl", add_special_tokens=False).input_ids[:2]
    scores = torch.zeros(1, len(tokenizer))
    at_start = bias(torch.tensor([prompt]), scores)[0]
    assert at_start[w] == 2.0 and at_start[rest] == 0.0  # a name may begin, not its middle
    assert at_start[tokenizer.convert_tokens_to_ids("\u2581the")] == 0.0
    after_w = bias(torch.tensor([prompt + [w]]), scores)[0]
    assert after_w[rest] == 2.0  # once begun, the note's continuation is favoured
    assert bias(torch.tensor([prompt]), scores)[0].sum() > 0 and scores.sum() == 0  # no in-place


def test_names_the_prompt_already_holds_outside_the_notes_are_not_favoured(embedded_base):
    tokenizer = embedded_base.tokenizer
    notes = tokenizer(NOTES, add_special_tokens=False).input_ids
    question = "\n\nWho faced you at Baron Wetzlar's, the year after the Rubicon story?"
    prompt = notes + tokenizer(question, add_special_tokens=False).input_ids
    scores = bias_at_start(NoteCopyBias(tokenizer, notes, prompt, 2.0), prompt, tokenizer)
    first = {word: tokenizer(f" {word}", add_special_tokens=False).input_ids[0]
             for word in ("Baron", "Rubicon", "Wölfl")}
    assert scores[first["Baron"]] == 0.0 and scores[first["Rubicon"]] == 0.0  # asked already
    assert scores[first["Wölfl"]] == 2.0  # what the notes add
    alone = tokenizer("\n\nWho faced you?", add_special_tokens=False).input_ids
    scores = bias_at_start(NoteCopyBias(tokenizer, notes, notes + alone, 2.0), prompt, tokenizer)
    assert scores[first["Baron"]] == 2.0 and scores[first["Rubicon"]] == 2.0


def bias_at_start(bias: NoteCopyBias, prompt: list[int], tokenizer) -> torch.Tensor:
    return bias(torch.tensor([prompt]), torch.zeros(1, len(tokenizer)))[0]


def test_the_bias_is_on_by_default_only_where_there_are_notes(embedded_base):
    tokenizer = embedded_base.tokenizer
    prompt = tokenizer("Who faced you?", add_special_tokens=False).input_ids
    notes = tokenizer(NOTES, add_special_tokens=False).input_ids
    settings = DecodingSettings()
    assert settings.copy_bias > 0
    assert any(isinstance(p, NoteCopyBias)
               for p in settings.logits_processors(prompt, tokenizer, notes))
    assert not any(isinstance(p, NoteCopyBias)
                   for p in settings.logits_processors(prompt, tokenizer, ()))
    off = DecodingSettings(copy_bias=0.0)
    assert not any(isinstance(p, NoteCopyBias)
                   for p in off.logits_processors(prompt, tokenizer, notes))

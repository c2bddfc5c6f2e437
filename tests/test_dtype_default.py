"""The "auto" dtype: bfloat16 for chat on a CPU that multiplies it natively, float32 for
training and export there (and everywhere without the instructions), and a start-up line
saying so."""

from __future__ import annotations

import pytest
import torch

from neeko_app.chat.startup import dtype_note
from neeko_app.config import Settings
from neeko_app.model import loader
from neeko_app.model.loader import load_base_model, resolve_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("native", "serving", "expected"), [
    (True, True, torch.bfloat16),
    (True, False, torch.float32),  # training and export keep the blocks' precision
    (False, True, torch.float32),  # bfloat16 is slower without the instructions
    (False, False, torch.float32),
])
def test_auto_picks_bfloat16_only_for_serving_on_a_native_cpu(monkeypatch, native, serving,
                                                              expected):
    monkeypatch.setattr(loader, "cpu_multiplies_bfloat16", lambda: native)
    assert resolve_dtype("auto", CPU, serving) == expected
    assert resolve_dtype("auto", CUDA, serving) == torch.bfloat16
    assert resolve_dtype("float32", CPU, serving) == torch.float32  # a named dtype is kept
    assert resolve_dtype("bfloat16", CPU, serving) == torch.bfloat16


def test_the_tiny_test_model_computes_in_float32_on_every_cpu(monkeypatch):
    monkeypatch.setattr(loader, "cpu_multiplies_bfloat16", lambda: True)
    assert load_base_model("tiny", device="cpu", serving=True).dtype == torch.float32


@pytest.mark.parametrize(("dtype_setting", "model_dtype", "device", "noted"), [
    ("auto", torch.bfloat16, CPU, True),
    ("auto", torch.float32, CPU, False),  # no native bfloat16: nothing changed
    ("bfloat16", torch.bfloat16, CPU, False),  # the user chose it
    ("auto", torch.bfloat16, CUDA, False),  # the GPU default all along
])
def test_startup_says_when_auto_chose_bfloat16(tmp_path, dtype_setting, model_dtype, device,
                                               noted):
    note = dtype_note(Settings(dtype=dtype_setting, data_dir=tmp_path), model_dtype, device)
    assert (note is not None) == noted
    if noted:
        assert "bfloat16" in note and "--dtype float32" in note

"""The start-up hint to try bfloat16: only for the default dtype, a float32 model, and a CPU
that multiplies bfloat16 natively."""

from __future__ import annotations

import pytest
import torch

from neeko_app.chat.startup import dtype_tip
from neeko_app.config import Settings


@pytest.mark.parametrize(("dtype_setting", "model_dtype", "native", "tipped"), [
    ("auto", torch.float32, True, True),
    ("auto", torch.float32, False, False),  # bfloat16 is slower without the instructions
    ("float32", torch.float32, True, False),  # the user chose float32
    ("auto", torch.bfloat16, True, False),  # already bfloat16 (a GPU, or asked for)
])
def test_bfloat16_is_suggested_only_where_it_pays(tmp_path, dtype_setting, model_dtype, native,
                                                  tipped):
    settings = Settings(dtype=dtype_setting, data_dir=tmp_path)
    tip = dtype_tip(settings, model_dtype, native)
    assert (tip is not None) == tipped
    if tipped:
        assert "--dtype bfloat16" in tip and "NEEKO_DTYPE=bfloat16" in tip

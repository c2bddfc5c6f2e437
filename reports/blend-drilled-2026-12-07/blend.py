"""Does a blend of the shipped and the drilled block keep both what each is good at?

    python reports/blend-drilled-2026-12-07/blend.py newton /tmp/drill/newton-drilled.safetensors \
        --weights 0 0.3 0.5 0.7 1 --out reports/blend-drilled-2026-12-07/blend-newton.json

For each weight w, the character's block becomes the rank-r block nearest (in the
Frobenius norm, through an SVD) to `w * drilled + (1 - w) * shipped`, each layer's update
B A blended exactly before the cut back to rank r; its role key stays. With --exact, the
drilled block is loaded beside the shipped one and the character's gate weighs the two
(1 - w, w), as a fusion gate mixes blocks: the same blend with no rank cut, at the price of
a second block. Then the greedy quiz: blocks alone, blocks + memory (the app's decoding) and
blocks + other notes (memory with the asked fact's note withheld). The block files are not
changed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from neeko_app.config import Settings
from neeko_app.evaluation import OTHER_NOTES
from neeko_app.evaluation.cli_heldout import heldout_decoding
from neeko_app.evaluation.cli_quiz import quiz_with_bars
from neeko_app.moelora.gate import Gate
from neeko_app.moelora.persistence import load_block
from neeko_app.runtime import load_runtime
from neeko_app.storage import atomic_write_json, load_tensors


def blended_factors(a_one: torch.Tensor, bt_one: torch.Tensor, a_two: torch.Tensor,
                    bt_two: torch.Tensor, weight: float
                    ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A, B^T) of rank r nearest to `weight * B2 A2 + (1 - weight) * B1 A1`, and the share
    of that blend's squared norm the rank-r cut keeps."""
    rank = a_one.shape[0]
    left = torch.cat([(1 - weight) ** 0.5 * bt_one, weight ** 0.5 * bt_two]).double().T
    right = torch.cat([(1 - weight) ** 0.5 * a_one, weight ** 0.5 * a_two]).double().T
    q_left, r_left = torch.linalg.qr(left)
    q_right, r_right = torch.linalg.qr(right)
    u, s, vh = torch.linalg.svd(r_left @ r_right.T)
    kept = float((s[:rank] ** 2).sum() / (s ** 2).sum().clamp_min(1e-30))
    root = s[:rank].sqrt()
    bt = (q_left @ u[:, :rank] * root).T
    a = root[:, None] * (vh[:rank] @ q_right.T)
    return a.float(), bt.float(), kept


def set_blend(runtime, slug: str, shipped: dict, drilled: dict, weight: float) -> float:
    """Put the blend into the runtime's block `slug`; the smallest share kept by a layer."""
    block = runtime.model.block_index(slug)
    kept = []
    with torch.no_grad():
        for name, layer in runtime.model.lora_layers():
            a, bt, share = blended_factors(
                shipped[f"{name}.lora_A"][0], shipped[f"{name}.lora_BT"][0],
                drilled[f"{name}.lora_A"][0], drilled[f"{name}.lora_BT"][0], weight)
            lora_a, lora_bt = layer.lora_A.clone(), layer.lora_BT.clone()
            lora_a[block], lora_bt[block] = a.to(lora_a), bt.to(lora_bt)
            layer.set_blocks(lora_a, lora_bt)
            kept.append(share)
    return min(kept)


def gate_both(runtime, slug: str, drilled: Path) -> Callable[[float], float]:
    """Load `drilled` as a second block and give `slug` a gate over both; the setter of
    the drilled block's weight."""
    shipped_index = runtime.model.block_index(slug)
    drilled_index = load_block(runtime.model, drilled, name=f"{slug}~drilled")
    chosen = {"weight": 0.0}
    gate_for = runtime.gate_for

    def blended_gate(character, *args, **kwargs):
        if character.slug != slug:
            return gate_for(character, *args, **kwargs)
        return Gate.from_rows([([shipped_index, drilled_index],
                                [1 - chosen["weight"], chosen["weight"]])])

    runtime.gate_for = blended_gate

    def set_weight(weight: float) -> float:
        chosen["weight"] = weight
        return 1.0

    return set_weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("character")
    parser.add_argument("drilled", type=Path, help="the drilled block file")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.3, 0.5, 0.7, 1])
    parser.add_argument("--exact", action="store_true",
                        help="gate over both blocks instead of one rank-r blend")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runtime = load_runtime(Settings.from_env(), serving=False)
    slug = args.character
    shipped = load_tensors(runtime.character(slug).folder / "block.safetensors")
    drilled = load_tensors(args.drilled)
    decoding = heldout_decoding(False, None, 0)
    set_weight = (gate_both(runtime, slug, args.drilled) if args.exact else
                  lambda weight: set_blend(runtime, slug, shipped, drilled, weight))
    results = []
    for weight in args.weights:
        kept = set_weight(weight)
        report = quiz_with_bars(runtime, [slug], ["blocks", "blocks+memory", OTHER_NOTES], decoding,
                                label=f"w{weight:g}")
        row = {"weight": weight, "rank_cut_keeps_at_least": kept,
               **{system: report.accuracy(system) for system in report.systems}}
        print(json.dumps(row), flush=True)
        results.append({**row, "answers": report.to_dict()["answers"]})
        atomic_write_json(args.out, {"character": slug, "drilled": str(args.drilled),
                                     "exact": args.exact,
                                     "decoding": report.decoding, "rows": results})


if __name__ == "__main__":
    main()

"""Experiment (not in the app): decode each character's reply against the other characters.

Each request runs in two batch rows: its own block, and an even mix of every other
character's block (what a role-play block says anyway). The next token is chosen from

    log p_own + g * (log p_own - log p_others)

among the tokens with p_own >= alpha * max p_own (the plausibility cut of contrastive
decoding, Li et al. 2023), then the app's repetition rules and greedy choice as usual.

    python reports/contrastive-2026-12-03/contrastive_decoding.py G ALPHA \\
        eval-heldout --systems blocks --limit 20 --batch-size 8 --no-perplexity --out F.json
"""

from __future__ import annotations

import math
import sys

import torch

import neeko_app.evaluation.heldout as heldout
from neeko_app.chat.decoding import RowDecoder
from neeko_app.chat.scheduler import BatchScheduler, GateRow
from neeko_app.cli import main
from neeko_app.model.kv_cache import returned_cache, with_cache
from neeko_app.moelora import Gate


class ContrastScheduler(BatchScheduler):
    """`BatchScheduler` whose every request also runs under the other characters' mix."""

    weight = 1.0  # g
    alpha = 0.1  # the plausibility cut

    def _others(self, own: GateRow) -> GateRow:
        others = [k for k, name in enumerate(self.model.block_names)
                  if k not in own[0] and name != "lora-mix"]
        return tuple(others), tuple(1.0 / len(others) for _ in others)

    def contrasted(self, own: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        own, others = own.float().log_softmax(-1), others.float().log_softmax(-1)
        scores = own + self.weight * (own - others)
        return scores.masked_fill(own < own.max() + math.log(self.alpha), -math.inf)

    @torch.no_grad()
    def _generate(self, batch) -> None:
        rows = [RowDecoder(self.tokenizer, s.request.prompt_ids, s.request.settings,
                           self._stop_ids) for s in batch]
        width = max(len(s.request.prompt_ids) for s in batch)
        pad = self.tokenizer.pad_token_id
        prompts = [[pad] * (width - len(s.request.prompt_ids)) + list(s.request.prompt_ids)
                   for s in batch]
        input_ids = torch.tensor(prompts * 2)
        starts = torch.tensor([width - len(s.request.prompt_ids) for s in batch] * 2)
        mask = (torch.arange(width) >= starts[:, None]).long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        gates = [s.request.gate for s in batch]
        gates += [self._others(g) for g in gates]
        active, cache = list(range(len(batch))), None
        while True:
            output = self.model(input_ids, gate=Gate.from_rows(gates), attention_mask=mask,
                                position_ids=positions, use_cache=True, logits_to_keep=1,
                                **with_cache(cache))
            cache, logits, n = returned_cache(output), output.logits[:, -1, :], len(active)
            tokens = []
            for slot, i in enumerate(active):
                tokens.append(rows[i].choose(self.contrasted(logits[slot], logits[n + slot])))
                batch[i]._put(rows[i].new_text())
                if rows[i].finish_reason is not None:
                    batch[i]._finish(rows[i].finish_reason, len(rows[i].generated))
            keep = [slot for slot, i in enumerate(active) if rows[i].finish_reason is None]
            if not keep:
                return
            index = torch.tensor(keep + [n + slot for slot in keep])
            cache.batch_select_indices(index)
            mask, positions = mask[index], positions[index]
            gates = [gates[k] for k in index.tolist()]
            active = [active[slot] for slot in keep]
            input_ids = torch.tensor([tokens[slot] for slot in keep] * 2)[:, None]
            mask = torch.cat([mask, mask.new_ones(len(index), 1)], dim=1)
            positions = positions[:, -1:] + 1


if __name__ == "__main__":
    ContrastScheduler.weight, ContrastScheduler.alpha = float(sys.argv[1]), float(sys.argv[2])
    heldout.BatchScheduler = ContrastScheduler
    sys.exit(main(sys.argv[3:]))

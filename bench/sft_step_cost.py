"""What a fine-tuning step costs next to a pretraining step, on the speedrun's model, in the same run.

The speedrun's assistant stage is sized in steps; this measures the seconds of an SFT step (packed
conversation rows, masked targets) against a pretraining step (token-shard windows) of the same
shape, alternating the two so that both see the same machine load, and reports the median of each
and their ratio. With the pretraining step time of a quiet speedrun (docs/speedrun.md) this gives
the stage's training time without rerunning the whole speedrun.

    python bench/sft_step_cost.py [--run runs/speedrun] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lmstack.io.conversations import read_conversations
from lmstack.io.packing import ConversationBatches
from lmstack.io.shards import Batches
from lmstack.load import load_model
from lmstack.tools.sft_tools import default_sft_mix
from lmstack.train.optim import make_optimizer


def step_time(model, opt, x, y) -> float:
    t0 = time.perf_counter()
    _, loss = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/speedrun")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json")
    a = ap.parse_args()
    model, tok, info = load_model(a.run)
    model.train()
    seq = model.config.max_seq_len
    pre = Batches(Path(info["data_dir"]), seq, a.batch_size)
    train, val = default_sft_mix()
    t0 = time.perf_counter()
    sft = ConversationBatches(tok, read_conversations(train), read_conversations(val), seq, a.batch_size)
    prep = time.perf_counter() - t0
    opt = make_optimizer(model, 1e-4, 0.0, (0.9, 0.95))
    times = {"pretrain": [], "sft": []}
    for s in range(a.steps + 2):
        for name, data in (("pretrain", pre), ("sft", sft)):
            dt = step_time(model, opt, *data.get(s))
            if s >= 2:  # the first steps warm up allocators and kernels
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"threads": torch.get_num_threads(), "batch": [a.batch_size, seq], "median_step_s": med,
           "sft_over_pretrain": med["sft"] / med["pretrain"], "sft_data_prep_s": prep}
    print(f"median step: pretraining {med['pretrain'] * 1000:.0f} ms, fine-tuning {med['sft'] * 1000:.0f} ms "
          f"(ratio {out['sft_over_pretrain']:.2f}); tokenizing and packing the conversations took {prep:.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""What `--precision bf16` buys a fine-tune on this CPU: a LoRA step of a real model in fp32 and under
bf16 autocast, alternated in the same process so both see the same machine, medians and their ratio.

On CPUs with AMX (Intel Sapphire Rapids and later) bf16 matrix products run on tile units, several
times fp32's rate; elsewhere bf16 is emulated and slower, which is why `auto` stays fp32 on a CPU.
Also prints the matmul rate of each type and the two losses of the same batch (autocast's rounding).

    python bench/train_precision.py [--base smollm2-135m-instruct] [--seq-len 1024] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lmstack.sft import extend_context, open_base
from lmstack.train.flops import measure_matmul_peak
from lmstack.train.loop import autocast_for, cpu_has_amx
from lmstack.train.lora import ALL_TARGETS, LoRAConfig, apply_lora


def step_seconds(model, x, y, precision: str) -> tuple[float, float]:
    t = time.perf_counter()
    with autocast_for("cpu", precision):
        _, loss = model(x, y)
    loss.backward()
    return time.perf_counter() - t, float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed steps of each precision (after one warm-up)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    model, tok, _, _ = open_base(a.base)
    if a.seq_len > model.config.max_seq_len:
        model = extend_context(model, a.seq_len)
    torch.manual_seed(0)
    apply_lora(model, LoRAConfig(a.rank, 2.0 * a.rank, 0.0, ALL_TARGETS))
    model.train()
    x = torch.randint(0, model.config.vocab_size, (1, a.seq_len))
    y = torch.randint(0, model.config.vocab_size, (1, a.seq_len))
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    losses = {}
    for i in range(a.steps + 1):
        for p in ("fp32", "bf16"):
            s, losses[p] = step_seconds(model, x, y, p)
            model.zero_grad(set_to_none=True)
            if i:  # the first of each is a warm-up
                times[p].append(s)
    med = {p: statistics.median(v) for p, v in times.items()}
    peak = {p: measure_matmul_peak("cpu", 1024, seconds=0.5, dtype=d) / 1e9
            for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    r = {"base": a.base, "seq_len": a.seq_len, "rank": a.rank, "threads": torch.get_num_threads(),
         "amx": cpu_has_amx(), "step_s": med, "speedup": med["fp32"] / med["bf16"], "matmul_gflops": peak,
         "loss": losses, "steps": a.steps}
    print(f"{a.base}, LoRA r{a.rank} on every projection, one row of {a.seq_len} tokens, {r['threads']} threads, "
          f"AMX {'yes' if r['amx'] else 'no'}")
    print(f"step: fp32 {med['fp32']:.2f} s, bf16 autocast {med['bf16']:.2f} s (median of {a.steps}): "
          f"bf16 is {r['speedup']:.2f}x")
    print(f"matmul 1024^3: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; "
          f"loss of the same batch: fp32 {losses['fp32']:.4f}, bf16 {losses['bf16']:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()

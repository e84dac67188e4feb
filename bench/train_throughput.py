"""Training throughput and model FLOPs utilisation (MFU) against this machine's measured matmul peak.

The baseline is measured in the same run: the best FLOP/s of large square fp32 matmuls. MFU is the
model's useful training FLOPs per second (6 x matmul weights + attention, see
Transformer.flops_per_token) divided by that peak. Median over timed steps.

    python bench/train_throughput.py                 # ~5M-parameter model, sequence length 256
    python bench/train_throughput.py --compile --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lmstack.model import Transformer, preset
from lmstack.train.flops import measure_matmul_peak
from lmstack.train.optim import make_optimizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()

    peak = max(measure_matmul_peak("cpu", n, seconds=1.0) for n in (1024, 2048))
    torch.manual_seed(0)
    model = Transformer(preset(a.preset, vocab_size=a.vocab_size, max_seq_len=a.seq_len))
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    fwd = torch.compile(model) if a.compile else model
    x = torch.randint(0, a.vocab_size, (a.batch_size, a.seq_len))
    y = torch.randint(0, a.vocab_size, (a.batch_size, a.seq_len))
    times = []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        _, loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    tps = a.batch_size * a.seq_len / step
    flops = tps * model.flops_per_token(a.seq_len)
    peak_after = max(measure_matmul_peak("cpu", n, seconds=1.0) for n in (1024, 2048))
    peak = max(peak, peak_after)  # the higher reading: MFU is never flattered by a slow peak sample
    r = {
        "params": model.num_params(), "params_non_embedding": model.num_params(True),
        "seq_len": a.seq_len, "batch_size": a.batch_size, "compile": a.compile, "threads": torch.get_num_threads(),
        "median_step_s": step, "tokens_per_s": tps, "model_tflops": flops / 1e12,
        "peak_matmul_tflops": peak / 1e12, "mfu": flops / peak,
    }
    print(f"model            {r['params'] / 1e6:.2f}M params ({r['params_non_embedding'] / 1e6:.2f}M non-embedding), "
          f"seq {a.seq_len}, batch {a.batch_size}, compile={a.compile}, {r['threads']} threads")
    print(f"matmul peak      {peak / 1e9:7.1f} GFLOP/s  (baseline, measured in this run)")
    print(f"training         {flops / 1e9:7.1f} GFLOP/s  = {tps:,.0f} tokens/s (median of {a.steps} steps)")
    print(f"MFU              {r['mfu']:.1%} of the matmul peak  (target >= 40%)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()

"""Time one decode-step matrix product (one row of activations by one weight matrix) in each of
PyTorch's CPU kernels the engine could use, at the shapes of a real model's decode step.

    python bench/matmul_kernels.py                      # SmolLM2-135M and Qwen2.5-0.5B shapes, 2 threads
    python bench/matmul_kernels.py --threads 1 --cpu-time     # on a loaded machine: CPU time, one thread
    python bench/matmul_kernels.py --json docs/results/inference/matmul_kernels.json

Kernels: int4 weights with bfloat16 activations (`_weight_int4pack_mm_for_cpu`, groups of 32, what
the engine's int4 mode runs), int8 weights with per-row scales (`_weight_int8pack_mm`, bfloat16 or
float32 activations), int8 weights with int8 activations (`torch._int_mm`, then the two scales),
plain float32 / bfloat16 / float16 products (`F.linear`), and lmstack's own int4 and int8 kernels
(engine/kernels.cpp: int8-rounded activations in integer dot products, written for AVX2). Which
wins depends on what the CPU offers (`torch.backends.cpu.get_cpu_capability()`: AVX2, AVX512, AVX512_BF16, ...), so the
engine's choice is made from measurements like these. Kernels are timed in interleaved rounds (each
round runs every kernel once on every shape) so a busy spell on the machine hits all of them; the
figures are medians over rounds, in microseconds per product.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lmstack.engine import kernels as lmstack_kernels

SHAPES = {  # (name, n_in, n_out) of every matrix in a decode step
    "smollm2-135m": [("qkv", 576, 960), ("wo", 576, 576), ("gate_up", 576, 3072), ("down", 1536, 576),
                     ("vocab", 576, 49152)],
    "qwen2.5-0.5b": [("qkv", 896, 1152), ("wo", 896, 896), ("gate_up", 896, 9728), ("down", 4864, 896),
                     ("vocab", 896, 151936)],
}
LAYERS = {"smollm2-135m": 30, "qwen2.5-0.5b": 24}


def kernels(n_in: int, n_out: int, rows: int = 1) -> dict:
    """name -> a function of the activations x (rows, n_in) fp32 that gives fp32 (rows, n_out)."""
    w = torch.randn(n_out, n_in) * 0.02
    scale = w.abs().amax(1) / 127
    q8 = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    s16 = scale.to(torch.bfloat16)
    g = w.reshape(n_out, n_in // 32, 32)
    lo, hi = g.amin(-1), g.amax(-1)
    s4 = ((hi - lo) / 15).clamp(min=1e-12)
    q4 = ((g - lo[..., None]) / s4[..., None]).round().clamp(0, 15).to(torch.int32).reshape(n_out, n_in)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q4, 1)
    sz = torch.stack([s4.t(), (lo + 8 * s4).t()], -1).contiguous().to(torch.bfloat16)
    q8t = q8.t().contiguous()  # _int_mm wants (n_in, n_out)
    wb, wh = w.to(torch.bfloat16), w.to(torch.float16)

    def int_mm(x):
        xs = x.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
        xq = (x / xs).round().clamp(-127, 127).to(torch.int8)
        xq = torch.cat([xq, xq.new_zeros(max(0, 17 - len(x)), n_in)])  # _int_mm wants more than 16 rows
        return torch._int_mm(xq, q8t)[:len(x)].float() * xs * scale

    out = {
        "int4 bf16 (int4pack)": lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.to(torch.bfloat16), packed, 32, sz).float(),
        "int8 bf16 (int8pack)": lambda x: torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), q8, s16).float(),
        "int8 fp32 (int8pack)": lambda x: torch.ops.aten._weight_int8pack_mm(x, q8, scale),
        "int8 x int8 (_int_mm)": int_mm,
        "fp32 (linear)": lambda x: F.linear(x, w),
        "bf16 (linear)": lambda x: F.linear(x.to(torch.bfloat16), wb).float(),
        "fp16 (linear)": lambda x: F.linear(x.to(torch.float16), wh).float(),
    }
    if lmstack_kernels.build() and lmstack_kernels.fits(n_out, n_in):  # lmstack's own (engine/kernels.cpp)
        p4, p8 = lmstack_kernels.pack_q4(q4, s4, lo), lmstack_kernels.pack_q8(q8)
        out["lmstack int4 (AVX2)"] = lambda x: lmstack_kernels.q4_mm(x, p4)
        out["lmstack int8 (AVX2)"] = lambda x: lmstack_kernels.q8_mm(x, p8, scale)
    x = torch.randn(rows, n_in)
    ref = F.linear(x, w)
    usable = {}
    for name, fn in out.items():
        try:
            err = float((fn(x) - ref).abs().max() / ref.abs().max())
        except RuntimeError as e:  # a kernel this build or CPU lacks
            print(f"  {name}: not available ({str(e).splitlines()[0][:80]})")
            continue
        usable[name] = (fn, err)
    return usable


def time_us(fn, x: torch.Tensor, reps: int, cpu: bool) -> float:
    """Microseconds per product: wall time, or with `cpu` this thread's CPU time."""
    clock = time.thread_time if cpu else time.perf_counter
    t = clock()
    fn(x)
    reps = max(1, min(reps, int(0.05 / max(clock() - t, 1e-9))))  # a slow kernel is timed over ~50 ms
    t = clock()
    for _ in range(reps):
        fn(x)
    return (clock() - t) / reps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20, help="products per timing")
    ap.add_argument("--models", default=",".join(SHAPES))
    ap.add_argument("--rows", type=int, default=1, help="rows of activations: 1 for a decode step, more for "
                    "a batch of them or a prefill")
    ap.add_argument("--cpu-time", action="store_true", help="time by this thread's CPU time, not the wall "
                    "clock (with --threads 1, where the kernels run on this thread): on a machine others are "
                    "loading, waiting for a core then does not count")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if a.cpu_time and a.threads != 1:
        raise SystemExit("--cpu-time needs --threads 1 (other threads' time would not be counted)")
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{a.threads} threads")
    results = {}
    with torch.inference_mode():
        for model in a.models.split(","):
            shapes = {s: kernels(n_in, n_out, a.rows) for s, n_in, n_out in SHAPES[model]}
            xs = {s: torch.randn(a.rows, n_in) for s, n_in, _ in SHAPES[model]}
            times = {(s, k): [] for s, ks in shapes.items() for k in ks}
            for _ in range(a.rounds):
                for (s, k) in times:
                    times[(s, k)].append(time_us(shapes[s][k][0], xs[s], a.reps, a.cpu_time))
            med = {key: statistics.median(v) for key, v in times.items()}
            names = list(next(iter(shapes.values())))
            clock = "CPU time" if a.cpu_time else "wall time"
            print(f"\n{model}: microseconds per product of {a.rows} row(s) ({clock}), median of {a.rounds} rounds")
            print(f"{'kernel':<24}" + "".join(f"{s:>10}" for s in shapes) + f"{'step ms':>10}{'max rel err':>13}")
            for k in names:
                layers = sum(med[(s, k)] for s in shapes if s != "vocab") * LAYERS[model]
                step = (layers + med[("vocab", k)]) / 1e3
                err = max(shapes[s][k][1] for s in shapes)
                print(f"{k:<24}" + "".join(f"{med[(s, k)]:>10.0f}" for s in shapes) + f"{step:>10.2f}{err:>13.4f}")
            results[model] = {f"{s}/{k}": {"us": med[(s, k)], "rel_err": shapes[s][k][1]} for s, k in med}
    load = os.getloadavg()[0]
    print(f"\nload average at the end {load:.1f} ('step ms': every layer's products plus the vocabulary's)")
    if a.json:
        Path(a.json).write_text(json.dumps({"torch": torch.__version__, "threads": a.threads, "rows": a.rows,
                                            "cpu_time": a.cpu_time,
                                            "capability": torch.backends.cpu.get_cpu_capability(),
                                            "load_average": load, "results": results}, indent=1))


if __name__ == "__main__":
    main()

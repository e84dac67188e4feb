"""Decode speed of the numpy run file on a GGUF file, against the PyTorch model on the same file.

The baseline is the torch model's simple sampler (no KV cache) measured in the same run, so the ratio
shows what the run file's KV cache buys; both decode greedily from the same prompt. Median of repeats.

    python bench/runfile_decode.py runs/speedrun/model.gguf
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from threadpoolctl import threadpool_limits

from lmstack import run as runfile
from lmstack.load import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?", default="runs/speedrun/model.gguf")
    ap.add_argument("--prompt", default="ROMEO:\n")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()

    rm = runfile.load(a.gguf)
    prompt = rm.tokenizer.encode(a.prompt)
    n = min(a.new_tokens, rm.config.max_seq_len - len(prompt))
    rf = []
    with threadpool_limits(1, "blas"):  # as `python lmstack/run.py` runs: one BLAS thread for batch-1 decode
        for _ in range(a.repeats):
            t = time.perf_counter()
            ids = list(runfile.generate(rm, prompt, n, temperature=0.0, stop_ids=[]))
            rf.append(len(ids) / (time.perf_counter() - t))

    model, _, _ = load_model(a.gguf)
    tt = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        out = model.generate(torch.tensor([prompt]), n, temperature=0.0)
        tt.append((out.shape[1] - len(prompt)) / (time.perf_counter() - t))
    r, b = statistics.median(rf), statistics.median(tt)
    print(f"model        {a.gguf}  ({rm.config.n_layers} layers, dim {rm.config.dim}, vocab {rm.config.vocab_size})")
    print(f"run file     {r:8.0f} tokens/s  (numpy, KV cache, batch 1, {n} new tokens, median of {a.repeats})")
    print(f"torch        {b:8.0f} tokens/s  (baseline: lmstack model.generate, no KV cache)")
    print(f"ratio        {r / b:8.2f}x")


if __name__ == "__main__":
    main()

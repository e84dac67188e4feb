"""What a vision training step costs with full rows against rows trimmed to the batch's last target.

Rows are padded to the run's seq_len (room for the longest caption; for a real base, its system
prompt too), and `rows.trim_padding` drops the padding columns a batch shares. This times a
stage-2 step (forward, backward, optimizer) of the same batches both ways, alternating so that both
see the same machine load, and prints the medians and their ratio; it also checks that the two give
the same loss.

    python bench/vision_step.py [--base smollm2-135m-instruct] [--steps 20] [--batch-size 32] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from sft_step_cost import step_time  # bench/ is on the path when a bench script runs

from lmstack.train.lora import LoRAConfig, apply_lora
from lmstack.train.optim import make_optimizer
from lmstack.vision.data import build_data
from lmstack.vision.rows import ImageRows, trim_padding
from lmstack.vision.train import VisionTrainConfig, build_model
from lmstack.vision.vlm import pixel_words


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="a real language model (LoRA rank 8 on it, as lmstack vision train --base)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--compile", action="store_true", help="eager against torch.compile, full rows")
    ap.add_argument("--group", action="store_true", help="batches grouped by image against a plain shuffle")
    ap.add_argument("--json")
    a = ap.parse_args()
    cfg = VisionTrainConfig(base=a.base, n_train=200)
    data = build_data(cfg.vision.image_size, 0, cfg.n_train, 50, mix=cfg.mix)
    vlm, tok, template = build_model(cfg, data)
    if template:
        tok.chat_template = template
    if a.base:
        for p in vlm.lm.parameters():
            p.requires_grad_(False)
        apply_lora(vlm.lm, LoRAConfig(rank=8, alpha=16.0))
    vlm.train()
    rows = ImageRows(tok, cfg.vision, data.train, data.val, cfg.seq_len, a.batch_size, seed=1, group_images=a.group)
    opt = make_optimizer(vlm, 1e-5, 0.0, (0.9, 0.95))
    if a.compile:
        return compare_compiled(vlm, opt, rows, a)
    if a.group:
        shuffled = ImageRows(tok, cfg.vision, data.train, data.val, cfg.seq_len, a.batch_size, seed=1)
        return compare_grouped(vlm, opt, rows, shuffled, a)
    times, widths, gaps = {"full": [], "trimmed": []}, [], []
    gen = torch.Generator().manual_seed(0)
    for s in range(a.steps + 2):
        idx = torch.randperm(len(rows), generator=gen)[: a.batch_size]
        full = (rows.x[idx], rows.y[idx])
        trimmed = trim_padding(*full, cfg.seq_len)
        with torch.no_grad():  # without LoRA's dropout, so that the two see the same model
            lf, lt = float(vlm.eval()(*full)[1]), float(vlm(*trimmed)[1])
        gaps.append(abs(lf - lt) / lf)
        vlm.train()
        tf, tt = step_time(vlm, opt, *full), step_time(vlm, opt, *trimmed)
        widths.append(trimmed[1].shape[1])
        if s >= 2:  # the first steps warm up allocators and kernels
            times["full"].append(tf)
            times["trimmed"].append(tt)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"base": a.base, "threads": torch.get_num_threads(), "batch": a.batch_size, "seq_len": cfg.seq_len,
           "median_trimmed_width": statistics.median(widths), "median_step_s": med,
           "speedup": med["full"] / med["trimmed"], "max_relative_loss_gap": max(gaps)}
    print(f"{a.base or 'default'}: rows of {cfg.seq_len} tokens, trimmed to a median "
          f"{out['median_trimmed_width']:.0f}; "
          f"median step {med['full'] * 1000:.0f} ms full, {med['trimmed'] * 1000:.0f} ms trimmed "
          f"({out['speedup']:.2f}x); largest relative loss gap {out['max_relative_loss_gap']:.1e}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


def compare_compiled(vlm, opt, rows: ImageRows, a) -> None:
    compiled = torch.compile(vlm)
    gen = torch.Generator().manual_seed(0)
    times, first = {"eager": [], "compiled": []}, 0.0
    for s in range(a.steps + 2):
        idx = torch.randperm(len(rows), generator=gen)[: a.batch_size]
        x, y = rows.x[idx], rows.y[idx]
        te, tc = step_time(vlm, opt, x, y), step_time(compiled, opt, x, y)
        first = first or tc  # the compile itself
        if s >= 2:
            times["eager"].append(te)
            times["compiled"].append(tc)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"base": a.base, "threads": torch.get_num_threads(), "batch": a.batch_size, "width": rows.seq_len,
           "median_step_s": med, "speedup": med["eager"] / med["compiled"], "first_compiled_step_s": first}
    print(f"{a.base or 'default'}: full rows of {rows.seq_len} tokens; median step {med['eager'] * 1000:.1f} ms "
          f"eager, {med['compiled'] * 1000:.1f} ms compiled ({out['speedup']:.2f}x); the first compiled step "
          f"(the compile) {first:.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


def compare_grouped(vlm, opt, grouped: ImageRows, shuffled: ImageRows, a) -> None:
    times, images = {"grouped": [], "shuffled": []}, {"grouped": [], "shuffled": []}
    for s in range(a.steps + 2):
        for name, rows in (("grouped", grouped), ("shuffled", shuffled)):
            x, y = rows.get(s)
            dt = step_time(vlm, opt, x, y)
            if s >= 2:
                times[name].append(dt)
                images[name].append(len(torch.unique(x[:, -pixel_words(vlm.config.vision):], dim=0)))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"base": a.base, "threads": torch.get_num_threads(), "batch": a.batch_size, "median_step_s": med,
           "median_images_per_batch": {k: statistics.median(v) for k, v in images.items()},
           "speedup": med["shuffled"] / med["grouped"]}
    n = out["median_images_per_batch"]
    print(f"{a.base or 'default'}: batches of {a.batch_size} rows hold a median {n['grouped']:.0f} images grouped, "
          f"{n['shuffled']:.0f} shuffled; median step "
          f"{med['grouped'] * 1000:.1f} ms grouped, {med['shuffled'] * 1000:.1f} ms shuffled ({out['speedup']:.2f}x)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""`lmstack speedrun`: the whole pipeline on the embedded default, start to finish.

Fetch Shakespeare, train a tokenizer, pretrain a small Llama, evaluate it against gzip/bzip2/xz,
export the GGUF parameters file and sample from it with the numpy run file. The default is sized to
finish in under ten minutes on two CPU cores; --quick is a one-minute smoke run for tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lmstack.evaluate import evaluate_model, format_report
from lmstack.io.gguf_file import export_gguf
from lmstack.load import load_model
from lmstack.pretrain import DataConfig, PretrainConfig, pretrain
from lmstack.train.loop import TrainConfig

SAMPLE_PROMPTS = ["ROMEO:\n", "First Citizen:\n"]


def speedrun_config(out_dir: str, quick: bool = False, device: str = "auto") -> PretrainConfig:
    if quick:
        return PretrainConfig(
            out_dir=out_dir, data=DataConfig("shakespeare", vocab_size=512), preset="nano",
            model_overrides=dict(max_seq_len=128),
            train=TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=10, eval_every=30,
                              eval_batches=4, ckpt_every=30, device=device),
        )
    # Sized by measurement: at this compute (~4e13 FLOPs) a 1M-parameter model that sees ~5M tokens
    # (3 epochs) beats a 3M one that sees 2M at the same wall time (see docs/speedrun.md).
    return PretrainConfig(
        out_dir=out_dir, data=DataConfig("shakespeare", vocab_size=2048), preset="micro",
        model_overrides=dict(max_seq_len=256),
        train=TrainConfig(steps=1200, batch_size=16, lr=3e-3, warmup_steps=60, eval_every=200,
                          eval_batches=8, ckpt_every=200, sample_every=400, device=device),
    )


def run_samples(gguf_path: Path, prompts: list[str], n: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """Continue each prompt with the standalone numpy run file: the two files, working together."""
    from lmstack import run as runfile

    m = runfile.load(str(gguf_path))
    out = []
    for p in prompts:
        t = time.perf_counter()
        ids = list(runfile.generate(m, m.tokenizer.encode(p), n, temperature=0.8, top_k=50, top_p=0.95, seed=seed))
        out.append((p, m.tokenizer.decode(ids), len(ids) / max(time.perf_counter() - t, 1e-9)))
    return out


def speedrun(out_dir: str = "runs/speedrun", quick: bool = False, device: str = "auto") -> dict:
    t0 = time.perf_counter()
    cfg = speedrun_config(out_dir, quick, device)
    res = pretrain(cfg, overwrite=True)
    run_dir = Path(out_dir)
    model, tok, info = load_model(run_dir)
    gguf_path = export_gguf(model, tok, run_dir / "model.gguf", "f32", name=f"lmstack-{run_dir.name}")
    print("evaluating on the whole held-out split ...")
    ev = evaluate_model(model, tok, info["data_dir"], device=device)
    (run_dir / "eval.json").write_text(json.dumps(ev, indent=1))
    print(format_report(ev))
    samples = run_samples(gguf_path, SAMPLE_PROMPTS, 40 if quick else 120)
    for prompt, text, _ in samples:
        print(f"\n--- sample (numpy run file) ---\n{prompt}{text}")
    summary = {
        "params": info["params"], "params_non_embedding": info["params_non_embedding"],
        "tokens_seen": res.tokens_seen, "steps": res.step, "train_seconds": res.wall_time,
        "train_tokens_per_s": res.tokens_per_s, "mfu": res.mfu,
        "val_bpb": ev["val_bpb"], "xz_bpb": ev["compressors"]["xz -9e"],
        "runfile_tokens_per_s": sum(s[2] for s in samples) / len(samples),
        "wall_seconds": time.perf_counter() - t0,
        "files": {"run": str(run_dir), "gguf": str(gguf_path), "metrics": str(run_dir / "metrics.jsonl"),
                  "loss_plot": str(run_dir / "loss.png")},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n=== speedrun summary ===")
    n, ne = summary["params"] / 1e6, summary["params_non_embedding"] / 1e6
    print(f"parameters      {n:.2f}M ({ne:.2f}M non-embedding)")
    print(f"tokens seen     {summary['tokens_seen']:,} in {res.step} steps "
          f"({summary['train_tokens_per_s']:,.0f} tok/s, MFU {summary['mfu']:.0%})")
    print(f"val bits/byte   {summary['val_bpb']:.3f}   (xz -9e: {summary['xz_bpb']:.3f})")
    print(f"run file        {summary['runfile_tokens_per_s']:.0f} tokens/s decode (numpy)")
    print(f"wall time       {summary['wall_seconds']:.0f} s")
    print(f"files           {run_dir}/  (model.gguf, ckpt.pt, metrics.jsonl, loss.png, eval.json)")
    print(f"next            python lmstack/run.py {gguf_path} \"ROMEO:\"")
    return summary

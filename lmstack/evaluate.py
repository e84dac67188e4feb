"""Evaluation in bits per byte, beside what general-purpose compressors achieve on the same text.

A language model is a compressor: with arithmetic coding, its cross-entropy in bits is the size of
the compressed text. Bits per byte is independent of the tokenizer, so models with different
vocabularies compare fairly with each other and with gzip, bzip2 and xz.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import time
from pathlib import Path

import torch

from lmstack.io.shards import Batches
from lmstack.train.loop import evaluate_loss, resolve_device


def compressor_bpb(data: bytes) -> dict[str, float]:
    """Bits per byte of gzip -9, bzip2 -9 and xz -9e (the same settings as the command-line tools)."""
    n = max(len(data), 1)
    return {
        "gzip -9": len(gzip.compress(data, compresslevel=9)) * 8 / n,
        "bzip2 -9": len(bz2.compress(data, compresslevel=9)) * 8 / n,
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) * 8 / n,
    }


def evaluate_model(model, tok, data_dir: str | Path, batch_size: int = 16, device: str = "auto") -> dict:
    """Score every token of the held-out split once and compare with the compressors on its text."""
    device = resolve_device(device)
    model.to(device)
    seq = model.config.max_seq_len
    data = Batches(Path(data_dir), seq, batch_size)
    t0 = time.perf_counter()
    with torch.no_grad():
        res = evaluate_loss(model, data.val_sequential(batch_size), tok.token_byte_lengths(), device)
    text = (Path(data_dir) / "val.txt").read_bytes()
    return {
        "val_loss": res["val_loss"],
        "val_bpb": res["val_bpb"],
        "val_tokens": res["val_tokens"],
        "val_bytes": len(text),
        "context": seq,
        "seconds": time.perf_counter() - t0,
        "compressors": compressor_bpb(text),
    }


def format_report(r: dict) -> str:
    rows = [("lmstack model", r["val_bpb"])] + sorted(r["compressors"].items(), key=lambda kv: kv[1])
    best = min(v for _, v in rows)
    lines = [f"held-out text: {r['val_bytes']:,} bytes, {r['val_tokens']:,} tokens "
             f"(windows of {r['context']} tokens)",
             f"{'compressor':<16}{'bits/byte':>10}{'ratio':>8}"]
    for name, v in rows:
        lines.append(f"{name:<16}{v:>10.3f}{8 / v:>7.2f}x" + ("  <- best" if v == best else ""))
    return "\n".join(lines)

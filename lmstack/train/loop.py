"""The one training loop: pretraining and fine-tuning both run through `train`.

It asks its data source for the batch of each (step, micro-step), so where the data comes from
(token shards, masked conversations) does not matter here, and a resumed run replays exactly the
batches an uninterrupted one would see. Targets of -1 are ignored, which is how SFT masks prompts.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from lmstack.errors import LmstackError
from lmstack.train.checkpoint import config_mismatch, load_checkpoint, save_checkpoint
from lmstack.train.flops import measure_matmul_peak
from lmstack.train.metrics import MetricsLog
from lmstack.train.optim import lr_at, make_optimizer


class BatchSource(Protocol):
    def get(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]: ...

    def val_batches(self, n_batches: int): ...


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    warmup_steps: int = 50
    schedule: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 8
    sample_every: int = 0
    ckpt_every: int = 250
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    extra: dict = field(default_factory=dict)


def resolve_device(name: str) -> str:
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LmstackError("--device cuda requested but no CUDA device is available")
    return name


def autocast_for(device: str):
    """bf16 autocast on CUDA; full fp32 elsewhere (CPU bf16 matmuls are slower than fp32 here)."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches, token_bytes: np.ndarray, device: str) -> dict:
    """Mean loss per target token and bits per byte (total nats / ln 2 / total bytes of the targets)."""
    was_training = model.training
    model.eval()
    tb = torch.from_numpy(np.asarray(token_bytes, dtype=np.int64))
    nats, tokens, nbytes = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast_for(device):
            _, loss = model(x, y, reduction="sum")
        mask = y.cpu() >= 0
        nats += float(loss)
        tokens += int(mask.sum())
        nbytes += int(tb[y.cpu()[mask]].sum())
    model.train(was_training)
    return {"val_loss": nats / max(tokens, 1), "val_bpb": nats / math.log(2) / max(nbytes, 1),
            "val_tokens": tokens, "val_bytes": nbytes}


class _StopFlag:
    """First Ctrl-C asks the loop to checkpoint and stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.stop = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, *_):
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        tqdm.write("interrupt: finishing this step, writing a checkpoint, then stopping (Ctrl-C again to abort)")

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@dataclass
class TrainResult:
    step: int
    tokens_seen: int
    wall_time: float
    final_train_loss: float
    last_eval: dict
    interrupted: bool
    tokens_per_s: float
    mfu: float


def train(
    model: nn.Module,
    data: BatchSource,
    cfg: TrainConfig,
    out_dir: str | Path,
    token_bytes: np.ndarray,
    resume: bool = False,
    sample_fn=None,
    extra_state: dict | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` for cfg.steps optimizer steps, checkpointing to out_dir/ckpt.pt."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "ckpt.pt"
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), fused=device.startswith("cuda"))
    log = MetricsLog(out_dir / "metrics.jsonl")
    model_cfg = model.config.to_dict()

    step, tokens_seen, elapsed = 0, 0, 0.0
    if resume:
        state = load_checkpoint(ckpt_path)
        diff = config_mismatch(state["model_config"], model_cfg)
        if diff:
            raise LmstackError(f"checkpoint {ckpt_path} is for a different model config ({diff})")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, tokens_seen, elapsed = state["step"], state["tokens_seen"], state["elapsed"]
        log.truncate_after(step)
        if step >= cfg.steps:
            tqdm.write(f"checkpoint is already at step {step} of {cfg.steps}: nothing to do")
    elif log.path.exists():
        log.path.unlink()

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "model_config": model_cfg,
            "train_config": asdict(cfg), "step": step, "tokens_seen": tokens_seen, "elapsed": elapsed,
            **(extra_state or {}),
        })

    fwd = torch.compile(model) if cfg.compile else model
    peak = measure_matmul_peak(device, seconds=0.3)
    flops_tok = model.flops_per_token() if hasattr(model, "flops_per_token") else 0.0
    last_eval: dict = {}
    loss_val, tps, mfu = float("nan"), 0.0, 0.0
    t_log, tok_log = 0.0, 0  # compute time and tokens since the last log line
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    model.train()
    with _StopFlag() as flag:
        while step < cfg.steps and not flag.stop:
            t0 = time.perf_counter()
            lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.schedule, cfg.min_lr_frac)
            for g in opt.param_groups:
                g["lr"] = lr
            loss_sum, n_tok = 0.0, 0
            for micro in range(cfg.grad_accum):
                x, y = data.get(step, micro)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast_for(device):
                    _, loss = fwd(x, y)
                (loss / cfg.grad_accum).backward()
                loss_sum += float(loss.detach())
                n_tok += int((y >= 0).sum())
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else 0.0
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += n_tok
            tok_log += x.numel() * cfg.grad_accum
            t_log += time.perf_counter() - t0
            elapsed += time.perf_counter() - t0
            loss_val = loss_sum / cfg.grad_accum
            if not math.isfinite(loss_val):
                raise LmstackError(f"loss became {loss_val} at step {step}: lower the learning rate")
            if step % cfg.log_every == 0 or step == cfg.steps:
                tps = tok_log / max(t_log, 1e-9)
                mfu = tps * flops_tok / peak if peak else 0.0
                log.write({"step": step, "loss": loss_val, "lr": lr, "grad_norm": float(gnorm),
                           "tokens": tokens_seen, "tok_s": tps, "mfu": mfu, "time": elapsed})
                t_log, tok_log = 0.0, 0
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tps:,.0f}", mfu=f"{mfu:.0%}",
                            **({"val_bpb": f"{last_eval['val_bpb']:.3f}"} if last_eval else {}))
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                last_eval = evaluate_loss(model, data.val_batches(cfg.eval_batches), token_bytes, device)
                log.write({"step": step, **last_eval})
            if sample_fn and cfg.sample_every and step % cfg.sample_every == 0:
                tqdm.write(f"--- sample at step {step} ---\n{sample_fn(model)}\n---")
            if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                checkpoint()
                log.plot(out_dir / "loss.png", title=out_dir.name)
        checkpoint()
    bar.close()
    log.plot(out_dir / "loss.png", title=out_dir.name)
    avg_tps = tokens_seen / max(elapsed, 1e-9)
    return TrainResult(step, tokens_seen, elapsed, loss_val, last_eval, flag.stop, avg_tps,
                       avg_tps * flops_tok / peak if peak else 0.0)

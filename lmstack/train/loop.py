"""The one training loop: pretraining and fine-tuning both run through `train`.

It asks its data source for the batch of each (step, micro-step), so where the data comes from
(token shards, masked conversations) does not matter here, and a resumed run replays exactly the
batches an uninterrupted one would see. Targets of -1 are ignored, which is how SFT masks prompts.

The same loop runs on one CPU, one GPU or many processes under `torchrun` (see distributed.py):
on CUDA it trains in bf16 autocast with TF32 matmuls, fused AdamW, pinned-memory asynchronous batch
copies and, with `compile`, torch.compile; the host reads the loss back only when it logs or
checkpoints, so the GPU is never left waiting for Python.
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
from lmstack.io.checkpoint import config_mismatch, load_checkpoint, save_checkpoint
from lmstack.train import distributed
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
    device: str = "auto"  # auto | cpu | cuda | mps
    compile: bool = False
    fsdp: bool = False  # under torchrun: shard parameters, gradients and optimizer state (FSDP2)
    extra: dict = field(default_factory=dict)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str) -> str:
    """auto picks CUDA, then Apple's MPS, then the CPU; asking for a device that is absent is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise LmstackError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise LmstackError("--device cuda requested but no CUDA device is available")
    if kind == "mps" and not _mps_available():
        raise LmstackError("--device mps requested but this machine has no MPS device")
    return name


def matmul_peak(device: str) -> float:
    """The denominator of MFU: bf16 tensor-core matmuls on CUDA (what autocast runs), fp32 elsewhere."""
    if device.startswith("cuda"):
        return max(measure_matmul_peak(device, n, seconds=0.3, dtype=torch.bfloat16) for n in (4096, 8192))
    return measure_matmul_peak(device, seconds=0.3)


def autocast_for(device: str):
    """bf16 autocast on CUDA; full fp32 elsewhere (CPU bf16 matmuls are slower than fp32 here)."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches, token_bytes: np.ndarray, device: str,
                  cluster: distributed.Cluster | None = None) -> dict:
    """Mean loss per target token and bits per byte (total nats / ln 2 / total bytes of the targets).

    Under torchrun each rank scores its share of the batches and the totals are summed over ranks.
    """
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
    if cluster is not None:
        nats, tokens, nbytes = cluster.sum([nats, tokens, nbytes])
        tokens, nbytes = int(tokens), int(nbytes)
    return {"val_loss": nats / max(tokens, 1), "val_bpb": nats / math.log(2) / max(nbytes, 1),
            "val_tokens": tokens, "val_bytes": nbytes}


class _StopFlag:
    """First Ctrl-C asks the loop to checkpoint and stop after the current step; a second one aborts.

    Under torchrun the workers do not see the terminal: the launcher forwards Ctrl-C as SIGINT and
    a `kill` or a scheduler's preemption as SIGTERM, then waits (30 s by default) before killing,
    so distributed runs treat SIGTERM the same way.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT,), announce: bool = True) -> None:
        self.stop = False
        self.signals, self.announce = signals, announce
        self._old: dict = {}

    def __enter__(self):
        for sig in self.signals:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, *_):
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        if self.announce:
            tqdm.write("interrupt: finishing this step, writing a checkpoint, then stopping (Ctrl-C again to abort)")

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


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
    peak_mem_gib: float = 0.0  # CUDA: the most memory the allocator held at once, on this rank
    rank: int = 0
    world_size: int = 1


def _to_device(t: torch.Tensor, device: str) -> torch.Tensor:
    """CUDA: copy from pinned host memory without blocking, so the copy overlaps the previous step."""
    if device.startswith("cuda"):
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


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
    """Train `model` for cfg.steps optimizer steps, checkpointing to out_dir/ckpt.pt.

    Under torchrun every rank calls this with the same arguments. cfg.batch_size is per rank, so a
    step's global batch is batch_size x grad_accum x world size, and a data source with a
    `shard(rank, world_size)` method gives each rank its own rows of it. Rank 0 alone logs, prints,
    samples and writes checkpoints; losses, token counts and MFU are over all ranks.
    """
    cluster = distributed.setup(cfg.device)
    device = distributed.local_device(resolve_device(cfg.device), cluster)
    cuda, main = device.startswith("cuda"), cluster.is_main
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "ckpt.pt"
    say = tqdm.write if main else (lambda _msg: None)
    torch.manual_seed(cfg.seed)
    if cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for whatever autocast leaves in fp32
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    if cluster.enabled:
        if hasattr(data, "shard"):
            data = data.shard(cluster.rank, cluster.world_size)
        else:
            say("warning: this data source cannot be split across ranks: every rank trains on the same batches")
    elif cfg.fsdp:
        say("note: --fsdp shards across the processes torchrun starts; one process trains unsharded")
    model.to(device)
    log = MetricsLog(out_dir / "metrics.jsonl")
    model_cfg = model.config.to_dict()
    global_batch = cfg.batch_size * cluster.world_size

    step, tokens_seen, elapsed, state = 0, 0, 0.0, None
    if resume:
        state = load_checkpoint(ckpt_path)
        diff = config_mismatch(state["model_config"], model_cfg)
        if diff:
            raise LmstackError(f"checkpoint {ckpt_path} is for a different model config ({diff})")
        model.load_state_dict(state["model"])  # before sharding: every rank holds the full tensors
        step, tokens_seen, elapsed = state["step"], state["tokens_seen"], state["elapsed"]
        was = (state.get("global_batch", global_batch), state.get("train_config", {}).get("grad_accum", cfg.grad_accum))
        if was != (global_batch, cfg.grad_accum):
            say(f"note: the checkpoint was trained with {was[0]} sequences x {was[1]} micro-steps per step, this run "
                f"uses {global_batch} x {cfg.grad_accum}: the data order differs from an uninterrupted run")
        if main:
            log.truncate_after(step)
        if step >= cfg.steps:
            say(f"checkpoint is already at step {step} of {cfg.steps}: nothing to do")
    elif main and log.path.exists():
        log.path.unlink()

    wrapped = distributed.wrap(model, cluster, device, cfg.fsdp)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), fused=cuda)
    if state is not None:
        distributed.load_optimizer_state(model, opt, state["optimizer"])
        state = None

    def checkpoint() -> None:
        model_sd, opt_sd = distributed.full_state(model, opt)  # a collective under FSDP: all ranks call it
        if main:
            save_checkpoint(ckpt_path, {
                "model": model_sd, "optimizer": opt_sd, "model_config": model_cfg, "train_config": asdict(cfg),
                "step": step, "tokens_seen": tokens_seen, "elapsed": elapsed,
                "world_size": cluster.world_size, "global_batch": global_batch, **(extra_state or {}),
            })

    fwd = torch.compile(wrapped) if cfg.compile else wrapped
    peak = matmul_peak(device) * cluster.world_size
    flops_tok = model.flops_per_token() if hasattr(model, "flops_per_token") else 0.0
    can_sample = main and not distributed.is_sharded(model)  # a sharded model needs every rank to generate
    last_eval: dict = {}
    loss_val, tps, mfu, mem = float("nan"), 0.0, 0.0, 0.0
    t_log, tok_log = 0.0, 0  # compute time and tokens (all ranks) since the last log line
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and main), unit="step", dynamic_ncols=True)
    wrapped.train()
    signals = (signal.SIGINT, signal.SIGTERM) if cluster.enabled else (signal.SIGINT,)
    stop = False
    with _StopFlag(signals, announce=main) as flag:
        while step < cfg.steps and not stop:
            t0 = time.perf_counter()
            lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.schedule, cfg.min_lr_frac)
            for g in opt.param_groups:
                g["lr"] = lr
            loss_sum, n_tok = torch.zeros((), device=device), 0
            for micro in range(cfg.grad_accum):
                x, y = data.get(step, micro)
                n_tok += int((y >= 0).sum())  # counted on the host copy: no device sync
                x, y = _to_device(x, device), _to_device(y, device)
                with distributed.grad_sync(wrapped, sync=micro == cfg.grad_accum - 1):
                    with autocast_for(device):
                        _, loss = fwd(x, y)
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            stop, n_tok = cluster.stop_and_count(flag.stop, n_tok)
            tokens_seen += n_tok
            tok_log += x.numel() * cfg.grad_accum * cluster.world_size
            log_now = step % cfg.log_every == 0 or step == cfg.steps
            ckpt_now = bool(cfg.ckpt_every) and step % cfg.ckpt_every == 0
            if log_now or ckpt_now or stop:  # the only host reads of the loss: the GPU runs ahead otherwise
                loss_val = cluster.mean(loss_sum) / cfg.grad_accum
                if not math.isfinite(loss_val):
                    raise LmstackError(f"loss became {loss_val} by step {step}: lower the learning rate")
            dt = time.perf_counter() - t0
            t_log += dt
            elapsed += dt
            if log_now:
                tps = tok_log / max(t_log, 1e-9)
                mfu = tps * flops_tok / peak if peak else 0.0
                gn = 0.0 if gnorm is None else float(gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm)
                row = {"step": step, "loss": loss_val, "lr": lr, "grad_norm": gn, "tokens": tokens_seen,
                       "tok_s": tps, "mfu": mfu, "time": elapsed}
                if cuda:
                    mem = torch.cuda.max_memory_allocated(device) / 2**30
                    row["mem_gib"] = mem
                if main:
                    log.write(row)
                t_log, tok_log = 0.0, 0
                bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tps:,.0f}", mfu=f"{mfu:.0%}",
                                **({"mem": f"{mem:.1f}G"} if cuda else {}),
                                **({"val_bpb": f"{last_eval['val_bpb']:.3f}"} if last_eval else {}))
            bar.update(1)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                # every rank scores its share: a sharded model needs all ranks in every forward
                last_eval = evaluate_loss(model, data.val_batches(cfg.eval_batches), token_bytes, device, cluster)
                if main:
                    log.write({"step": step, **last_eval})
            if sample_fn and can_sample and cfg.sample_every and step % cfg.sample_every == 0:
                tqdm.write(f"--- sample at step {step} ---\n{sample_fn(model)}\n---")
            if ckpt_now:
                checkpoint()
                if main:
                    log.plot(out_dir / "loss.png", title=out_dir.name)
        checkpoint()
    bar.close()
    if main:
        log.plot(out_dir / "loss.png", title=out_dir.name)
    cluster.barrier()  # every rank returns once the checkpoint is on disk
    avg_tps = tokens_seen / max(elapsed, 1e-9)
    if cuda:
        mem = torch.cuda.max_memory_allocated(device) / 2**30
    return TrainResult(step, tokens_seen, elapsed, loss_val, last_eval, stop, avg_tps,
                       avg_tps * flops_tok / peak if peak else 0.0, mem, cluster.rank, cluster.world_size)

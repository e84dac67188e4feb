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

from lmstack.checks import ConfigError, check_choice, check_float, check_int
from lmstack.errors import LmstackError
from lmstack.io.checkpoint import config_mismatch, load_checkpoint, save_checkpoint
from lmstack.train import distributed
from lmstack.train.flops import measure_matmul_peak
from lmstack.train.metrics import MetricsLog
from lmstack.train.optim import SCHEDULES, lr_at, make_optimizer


class BatchSource(Protocol):
    def get(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]: ...

    def val_batches(self, n_batches: int): ...


PRECISIONS = ("auto", "fp32", "bf16")


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
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16 (autocast)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, lo in (("steps", 1), ("batch_size", 1), ("grad_accum", 1), ("warmup_steps", 0),
                         ("eval_every", 0), ("eval_batches", 1), ("sample_every", 0), ("ckpt_every", 0),
                         ("log_every", 1)):
            check_int(name, getattr(self, name), lo)
        check_int("seed", self.seed, 0, 2**63 - 1)
        check_float("lr", self.lr, 0, lo_open=True)
        check_float("min_lr_frac", self.min_lr_frac, 0, 1)
        check_float("weight_decay", self.weight_decay, 0)
        check_float("beta1", self.beta1, 0, 1, hi_open=True)
        check_float("beta2", self.beta2, 0, 1, hi_open=True)
        check_float("grad_clip", self.grad_clip, 0)  # 0: no clipping
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        check_device(self.device)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def check_device(name: str) -> None:
    """The device name is well formed (whether it is present is resolve_device's question)."""
    kind, _, index = str(name).partition(":")
    if name != "auto" and (kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit()))):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def resolve_device(name: str) -> str:
    """auto picks CUDA, then Apple's MPS, then the CPU; asking for a device that is absent is an error."""
    check_device(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise LmstackError("--device cuda requested but no CUDA device is available")
    if kind == "mps" and not _mps_available():
        raise LmstackError("--device mps requested but this machine has no MPS device")
    return name


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool, resume_hint: str = "--resume, ") -> None:
    """Before any work: the run directory can be one, and its checkpoint is there exactly when resuming."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise LmstackError(f"--out {run_dir} is a file, not a run directory")
    has_ckpt = (run_dir / "ckpt.pt").exists()
    if resume and not has_ckpt:
        raise LmstackError(f"--resume: no checkpoint in {run_dir}")
    if not resume and has_ckpt and not overwrite:
        raise LmstackError(f"{run_dir} already holds a checkpoint: use {resume_hint}--overwrite or another --out")


def resolve_precision(precision: str, device: str) -> str:
    """What `auto` means on this device. bf16 pays where the matmul units run it natively: tensor cores,
    and CPUs with AMX (7.5x fp32 matmuls, 1.85x a LoRA step of SmolLM2: bench/train_precision.py);
    without AMX a CPU runs bf16 slower than fp32, and fp32 is what every CPU figure was measured at,
    so a CPU gets bf16 only on request."""
    if precision != "auto":
        return precision
    return "bf16" if device.startswith("cuda") else "fp32"


def cpu_has_amx() -> bool:
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def matmul_peak(device: str, precision: str = "auto") -> float:
    """The denominator of MFU: the matmuls autocast runs (bf16 tensor cores or AMX, else fp32)."""
    if resolve_precision(precision, device) == "bf16":
        best = 0.0
        for n in (4096, 8192) if device.startswith("cuda") else (1024, 2048):
            if best and 2 * n**3 / best > 0.3:  # one matmul this size would outlast the measurement: slow bf16
                break
            best = max(best, measure_matmul_peak(device, n, seconds=0.3, dtype=torch.bfloat16))
        return best
    return measure_matmul_peak(device, seconds=0.3)


def autocast_for(device: str, precision: str = "auto"):
    """bf16 autocast when the precision asks for it; plain fp32 otherwise."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches, token_bytes: np.ndarray, device: str,
                  cluster: distributed.Cluster | None = None, precision: str = "auto") -> dict:
    """Mean loss per target token and bits per byte (total nats / ln 2 / total bytes of the targets).

    Under torchrun each rank scores its share of the batches and the totals are summed over ranks.
    """
    was_training = model.training
    model.eval()
    tb = torch.from_numpy(np.asarray(token_bytes, dtype=np.int64))
    nats, tokens, nbytes = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast_for(device, precision):
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


@dataclass
class _Progress:
    """What the loop carries from step to step. step, tokens_seen and elapsed are checkpointed."""

    step: int = 0
    tokens_seen: int = 0  # trained (unmasked) target tokens, all ranks
    elapsed: float = 0.0  # compute seconds, across resumes
    loss: float = float("nan")  # the last loss read back to the host
    last_eval: dict = field(default_factory=dict)
    tok_s: float = 0.0
    mfu: float = 0.0
    mem_gib: float = 0.0
    t_log: float = 0.0  # compute time since the last log line
    tok_log: int = 0  # input tokens (all ranks) since the last log line

    def clock(self, seconds: float) -> None:
        self.t_log += seconds
        self.elapsed += seconds


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
    t = _Trainer(model, data, cfg, Path(out_dir), token_bytes, sample_fn, extra_state)
    p = t.resume() if resume else t.start()
    bar = tqdm(total=cfg.steps, initial=p.step, disable=not (progress and t.main), unit="step", dynamic_ncols=True)
    stop = False
    with _StopFlag(t.signals, announce=t.main) as flag:
        while p.step < cfg.steps and not stop:
            t0 = time.perf_counter()
            lr = t.set_lr(p.step)
            loss_sum, n_tok = t.forward_backward(p)  # every micro-step of the batch
            gnorm = t.clip()
            t.opt.step()
            t.opt.zero_grad(set_to_none=True)
            p.step += 1
            stop, n_tok = t.cluster.stop_and_count(flag.stop, n_tok)
            p.tokens_seen += n_tok
            log_now = p.step % cfg.log_every == 0 or p.step == cfg.steps
            ckpt_now = bool(cfg.ckpt_every) and p.step % cfg.ckpt_every == 0
            if log_now or ckpt_now or stop:  # the only host reads of the loss: the GPU runs ahead otherwise
                t.read_loss(p, loss_sum)
            p.clock(time.perf_counter() - t0)
            if log_now:
                t.log(p, lr, gnorm, bar)
            bar.update(1)
            t.evaluate_and_sample(p)
            if ckpt_now:
                t.checkpoint(p, plot=True)
        t.checkpoint(p)
    bar.close()
    return t.finish(p, stop)


class _Trainer:
    """Everything around the step: setup, resume, logging, evaluation, samples and checkpoints."""

    def __init__(self, model: nn.Module, data: BatchSource, cfg: TrainConfig, out_dir: Path,
                 token_bytes: np.ndarray, sample_fn, extra_state: dict | None) -> None:
        self.cluster = cluster = distributed.setup(cfg.device)
        self.device = device = distributed.local_device(resolve_device(cfg.device), cluster)
        self.cuda, self.main = device.startswith("cuda"), cluster.is_main
        self.model, self.cfg, self.out_dir, self.token_bytes = model, cfg, out_dir, token_bytes
        self.sample_fn, self.extra_state = sample_fn, extra_state or {}
        out_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = out_dir / "ckpt.pt"
        self.say = tqdm.write if self.main else (lambda _msg: None)
        torch.manual_seed(cfg.seed)
        if self.cuda:
            torch.set_float32_matmul_precision("high")  # TF32 for whatever autocast leaves in fp32
            torch.backends.cudnn.allow_tf32 = True
            torch.cuda.reset_peak_memory_stats(device)
        if cluster.enabled:
            if hasattr(data, "shard"):
                data = data.shard(cluster.rank, cluster.world_size)
            else:
                self.say("warning: this data source cannot be split across ranks: every rank trains on the same "
                         "batches")
        elif cfg.fsdp:
            self.say("note: --fsdp shards across the processes torchrun starts; one process trains unsharded")
        big = sum(p.numel() for p in model.parameters()) >= 20_000_000  # small matmuls gain nothing from bf16
        if device == "cpu" and cfg.precision == "auto" and big and cpu_has_amx():
            self.say("note: this CPU has AMX: --precision bf16 trains faster (autocast); fp32 is the default")
        self.data = data
        model.to(device)
        self.log_file = MetricsLog(out_dir / "metrics.jsonl")
        self.model_cfg = model.config.to_dict()
        self.global_batch = cfg.batch_size * cluster.world_size
        self.signals = (signal.SIGINT, signal.SIGTERM) if cluster.enabled else (signal.SIGINT,)

    def _build(self, opt_state: dict | None) -> None:
        """Wrap for data parallelism, then the optimizer (its state from a checkpoint), then compile."""
        cfg, model = self.cfg, self.model
        self.wrapped = distributed.wrap(model, self.cluster, self.device, cfg.fsdp)
        self.opt = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), fused=self.cuda)
        if opt_state is not None:
            distributed.load_optimizer_state(model, self.opt, opt_state)
        self.fwd = torch.compile(self.wrapped) if cfg.compile else self.wrapped
        self.peak = matmul_peak(self.device, cfg.precision) * self.cluster.world_size
        self.flops_tok = 0.0  # set from the first batch: attention's share grows with the rows' length
        self.can_sample = self.main and not distributed.is_sharded(model)  # sharded: every rank must generate
        self.wrapped.train()

    def start(self) -> _Progress:
        if self.main and self.log_file.path.exists():
            self.log_file.path.unlink()
        self._build(None)
        return _Progress()

    def resume(self) -> _Progress:
        """Model, optimizer and counters from the checkpoint; the metrics log cut back to its step."""
        state = load_checkpoint(self.ckpt_path)
        diff = config_mismatch(state["model_config"], self.model_cfg)
        if diff:
            raise LmstackError(f"checkpoint {self.ckpt_path} is for a different model config ({diff})")
        self.model.load_state_dict(state["model"])  # before sharding: every rank holds the full tensors
        p = _Progress(state["step"], state["tokens_seen"], state["elapsed"])
        cfg = self.cfg
        was = (state.get("global_batch", self.global_batch), state.get("train_config", {}).get("grad_accum",
                                                                                                cfg.grad_accum))
        if was != (self.global_batch, cfg.grad_accum):
            self.say(f"note: the checkpoint was trained with {was[0]} sequences x {was[1]} micro-steps per step, "
                     f"this run uses {self.global_batch} x {cfg.grad_accum}: the data order differs from an "
                     "uninterrupted run")
        if self.main:
            if self.log_file.torn():
                self.say(f"note: the last line of {self.log_file.path} was cut off (a crash mid-write): dropped")
            self.log_file.truncate_after(p.step)
        if p.step >= cfg.steps:
            self.say(f"checkpoint is already at step {p.step} of {cfg.steps}: nothing to do")
        self._build(state["optimizer"])
        if "rng" in state:  # after _build, which draws test matrices: dropout (LoRA's) masks as if never stopped
            torch.set_rng_state(state["rng"])
        if self.cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        return p

    def set_lr(self, step: int) -> float:
        cfg = self.cfg
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.schedule, cfg.min_lr_frac)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def forward_backward(self, p: _Progress) -> tuple[torch.Tensor, int]:
        """Gradients of the step's whole batch: (summed micro-step losses on the device, target tokens)."""
        accum, device = self.cfg.grad_accum, self.device
        loss_sum, n_tok = torch.zeros((), device=device), 0
        for micro in range(accum):
            x, y = self.data.get(p.step, micro)
            if not self.flops_tok and hasattr(self.model, "flops_per_token"):
                self.flops_tok = self.model.flops_per_token(x.shape[-1])
            n_tok += int((y >= 0).sum())  # counted on the host copy: no device sync
            p.tok_log += x.numel() * self.cluster.world_size
            x, y = _to_device(x, device), _to_device(y, device)
            with distributed.grad_sync(self.wrapped, sync=micro == accum - 1):
                with autocast_for(device, self.cfg.precision):
                    _, loss = self.fwd(x, y)
                (loss / accum).backward()
            loss_sum += loss.detach()
        return loss_sum, n_tok

    def clip(self) -> torch.Tensor | None:
        clip = self.cfg.grad_clip
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip) if clip > 0 else None

    def read_loss(self, p: _Progress, loss_sum: torch.Tensor) -> None:
        p.loss = self.cluster.mean(loss_sum) / self.cfg.grad_accum
        if not math.isfinite(p.loss):
            raise LmstackError(f"loss became {p.loss} by step {p.step}: lower the learning rate")

    def log(self, p: _Progress, lr: float, gnorm: torch.Tensor | None, bar) -> None:
        """One metrics row and the progress bar's numbers: speed and MFU since the last log line."""
        p.tok_s = p.tok_log / max(p.t_log, 1e-9)
        p.mfu = p.tok_s * self.flops_tok / self.peak if self.peak else 0.0
        gn = 0.0 if gnorm is None else float(gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm)
        row = {"step": p.step, "loss": p.loss, "lr": lr, "grad_norm": gn, "tokens": p.tokens_seen,
               "tok_s": p.tok_s, "mfu": p.mfu, "time": p.elapsed}
        if self.cuda:
            p.mem_gib = row["mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if self.main:
            self.log_file.write(row)
        p.t_log, p.tok_log = 0.0, 0
        bar.set_postfix(loss=f"{p.loss:.3f}", tok_s=f"{p.tok_s:,.0f}", mfu=f"{p.mfu:.0%}",
                        **({"mem": f"{p.mem_gib:.1f}G"} if self.cuda else {}),
                        **({"val_bpb": f"{p.last_eval['val_bpb']:.3f}"} if p.last_eval else {}))

    def evaluate_and_sample(self, p: _Progress) -> None:
        cfg = self.cfg
        if cfg.eval_every and (p.step % cfg.eval_every == 0 or p.step == cfg.steps):
            # every rank scores its share: a sharded model needs all ranks in every forward
            p.last_eval = evaluate_loss(self.model, self.data.val_batches(cfg.eval_batches), self.token_bytes,
                                        self.device, self.cluster, self.cfg.precision)
            if self.main:
                self.log_file.write({"step": p.step, **p.last_eval})
        if self.sample_fn and self.can_sample and cfg.sample_every and p.step % cfg.sample_every == 0:
            tqdm.write(f"--- sample at step {p.step} ---\n{self.sample_fn(self.model)}\n---")

    def checkpoint(self, p: _Progress, plot: bool = False) -> None:
        """Tensors and plain values only: checkpoints are read back with weights_only=True."""
        model_sd, opt_sd = distributed.full_state(self.model, self.opt)  # a collective under FSDP: all ranks call it
        if self.main:
            save_checkpoint(self.ckpt_path, {
                "model": model_sd, "optimizer": opt_sd, "model_config": self.model_cfg,
                "train_config": asdict(self.cfg), "step": p.step, "tokens_seen": p.tokens_seen,
                "elapsed": p.elapsed, "world_size": self.cluster.world_size, "global_batch": self.global_batch,
                "rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.cuda else {}), **self.extra_state,
            })
            if plot:
                self.log_file.plot(self.out_dir / "loss.png", title=self.out_dir.name)

    def finish(self, p: _Progress, stopped: bool) -> TrainResult:
        if self.main:
            self.log_file.plot(self.out_dir / "loss.png", title=self.out_dir.name)
        self.cluster.barrier()  # every rank returns once the checkpoint is on disk
        avg_tps = p.tokens_seen / max(p.elapsed, 1e-9)
        if self.cuda:
            p.mem_gib = torch.cuda.max_memory_allocated(self.device) / 2**30
        return TrainResult(p.step, p.tokens_seen, p.elapsed, p.loss, p.last_eval, stopped, avg_tps,
                           avg_tps * self.flops_tok / self.peak if self.peak else 0.0, p.mem_gib,
                           self.cluster.rank, self.cluster.world_size)

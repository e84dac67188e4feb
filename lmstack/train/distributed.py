"""Data-parallel training across processes and machines, on PyTorch's own engine.

`torchrun` starts one process per GPU and tells each its RANK, LOCAL_RANK and WORLD_SIZE and where
to meet (MASTER_ADDR/PORT or a rendezvous endpoint). `setup` joins them into a process group (NCCL
on GPUs, gloo on CPUs), `wrap` puts the model in DDP (every rank holds the whole model; gradients are
averaged once, after the last micro-step) or FSDP2 (`fully_shard`: parameters, gradients and
optimizer state split across ranks, for models that do not fit one GPU), and the `Cluster` methods
are the few collectives the loop needs. With one process every helper is a no-op, so the
single-device path and the distributed one are the same code.

Checkpoints hold full, unsharded tensors in the single-process layout whatever wrote them, which is
what lets a run resume on a different number of processes, with or without FSDP.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from lmstack.errors import LmstackError


@dataclass
class Cluster:
    """Where this process stands among the data-parallel ones (rank 0 of 1 when run alone)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    control: object = None  # a gloo group for host-side flags; None: the default group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(group=self.control)

    def stop_and_count(self, stop: bool, n: int) -> tuple[bool, int]:
        """(any rank wants to stop, sum of n over ranks): one small host-side all-reduce.

        Every rank must leave the loop after the same step, or the others wait forever in the next
        collective; a signal may reach one rank a step before another, so the ranks agree each step.
        """
        if not self.enabled:
            return stop, n
        t = torch.tensor([int(stop), n], dtype=torch.int64)
        dist.all_reduce(t, group=self.control)
        return bool(t[0]), int(t[1])

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over ranks of a few host-side numbers (float64)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.control)
        return t.tolist()

    def mean(self, t: torch.Tensor) -> float:
        """The mean over ranks of a scalar tensor, read on the host (a device sync: call it rarely)."""
        if not self.enabled:
            return float(t)
        t = t.detach().float().clone()
        dist.all_reduce(t)  # SUM: gloo has no AVG
        return float(t) / self.world_size


_CLUSTER: Cluster | None = None


def _uses_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def setup(device: str = "auto") -> Cluster:
    """Join the process group torchrun describes in the environment; once per process, idempotent."""
    global _CLUSTER
    if _CLUSTER is not None:
        return _CLUSTER
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Cluster()
    if not dist.is_available():
        raise LmstackError("this PyTorch build has no torch.distributed; run a single process")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = _uses_cuda(device)
    if cuda:
        if local >= torch.cuda.device_count():
            raise LmstackError(f"local rank {local} has no GPU: this machine has {torch.cuda.device_count()}; "
                               "start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo",
                                device_id=torch.device("cuda", local) if cuda else None)
        atexit.register(_teardown)
    # NCCL reduces device tensors only; flags and counters live on the host, so they get a gloo group.
    control = dist.new_group(backend="gloo") if dist.get_backend() == "nccl" else None
    _CLUSTER = Cluster(dist.get_rank(), local, dist.get_world_size(), control)
    return _CLUSTER


def _teardown() -> None:
    global _CLUSTER
    if dist.is_initialized():
        dist.destroy_process_group()
    _CLUSTER = None


def local_device(device: str, cluster: Cluster) -> str:
    """One GPU per process: "cuda" becomes this process's own "cuda:LOCAL_RANK"."""
    if device == "cuda" and cluster.enabled:
        return f"cuda:{cluster.local_rank}"
    return device


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def wrap(model: nn.Module, cluster: Cluster, device: str, fsdp: bool = False) -> nn.Module:
    """The module the loop calls: the model itself alone, DDP around it, or the model sharded in place.

    FSDP2 shards each transformer block, then the rest (embeddings, final norm, output), so one
    block's parameters are gathered at a time.
    """
    if not cluster.enabled:
        return model
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        kind = torch.device(device).type
        mesh = init_device_mesh(kind, (cluster.world_size,))
        # On GPUs gather parameters in bf16 (half the traffic) and reduce gradients in fp32.
        bf16 = dict(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if kind == "cuda" else {}
        mp = MixedPrecisionPolicy(**bf16)
        for block in getattr(model, "layers", []):
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        return model
    from torch.nn.parallel import DistributedDataParallel

    # Buffers (RoPE tables) are constants: syncing them every forward would be wasted traffic.
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=[cluster.local_rank] if device.startswith("cuda") else None,
                                   gradient_as_bucket_view=True, **no_buffer_sync)


@contextlib.contextmanager
def grad_sync(wrapped: nn.Module, sync: bool):
    """Reduce gradients across ranks only when `sync` (the last micro-step): no redundant all-reduces."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(wrapped, DistributedDataParallel) and not sync:
        with wrapped.no_sync():
            yield
    else:
        if is_sharded(wrapped):
            wrapped.set_requires_gradient_sync(sync)
        yield


def _param_names(model: nn.Module, opt: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its own order: index i of a plain state dict is names[i]."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in opt.param_groups for p in g["params"]]


def full_state(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Model and optimizer state as one process would hold them; a collective under FSDP.

    Under FSDP only rank 0 receives the tensors (gathered to its CPU); the other ranks get empty
    dicts and must not write them.
    """
    if not is_sharded(model):
        return model.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, opt, options=opts)
    if not osd:
        return msd, osd
    # by parameter name -> by index, the layout of optimizer.state_dict() in a single process
    index = {n: i for i, n in enumerate(_param_names(model, opt))}
    state = {index[n]: v for n, v in osd["state"].items()}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in osd["param_groups"]]
    return msd, {"state": state, "param_groups": groups}


def load_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a single-process optimizer state dict, into a sharded model's optimizer too."""
    if not is_sharded(model):
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = _param_names(model, opt)
    by_name = {"state": {names[i]: v for i, v in state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, opt, by_name, options=StateDictOptions(full_state_dict=True))

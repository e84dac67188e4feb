"""Data-parallel training: 2 CPU processes under torchrun (gloo) against one process on the same data.

A step's global batch is a function of (seed, step, micro-step) alone, so one process with batch
4 sees exactly what 2 ranks with batch 2 see together; the runs must agree on the loss, the updated
weights and the optimizer state, and a checkpoint must resume on a different number of processes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint
from lmstack.io.shards import Batches
from lmstack.model import Transformer
from lmstack.pretrain import DataConfig, PretrainConfig, pretrain
from lmstack.train import distributed
from lmstack.train.loop import TrainConfig, resolve_device
from tests.conftest import tiny_config

SHAPE = ("dim", "n_layers", "n_heads", "n_kv_heads", "max_seq_len")
# per rank: batch 2 x 2 micro-steps; one process takes batch 4 x 2 micro-steps, the same global batch
# grad_clip 0.2 sits below the gradient norm (~0.8), so clipping is exercised too
TRAIN = dict(batch_size=2, grad_accum=2, lr=3e-3, schedule="constant", warmup_steps=0, grad_clip=0.2,
             eval_every=1, eval_batches=1, log_every=1, ckpt_every=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], env: dict) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "lmstack", "train", *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("done: step") == 1, r.stdout  # only rank 0 reports


def _one_process(data: DataConfig, out, steps: int, resume: bool = False) -> None:
    shape = {k: getattr(tiny_config(data.vocab_size), k) for k in SHAPE}
    tc = TrainConfig(steps=steps, device="cpu", **{**TRAIN, "batch_size": 2 * TRAIN["batch_size"]})
    pretrain(PretrainConfig(str(out), data, "nano", shape, tc), resume=resume, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_dir, tokenizer):
    """single: 1 process, 1 step; ddp: 2 ranks, 1 step; single2: single resumed to step 2;
    ddp_then_single: ddp resumed to step 2 in 1 process; single_then_fsdp: single resumed on 2 FSDP ranks."""
    root = tmp_path_factory.mktemp("dist")
    tok_path = root / "tokenizer.json"
    tokenizer.save(tok_path)
    data = DataConfig(str(corpus_dir / "*.txt"), tokenizer.vocab_size, str(tok_path))
    cache = tmp_path_factory.getbasetemp() / "cache"  # the same cache the autouse fixture points at
    env = {**os.environ, "LMSTACK_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    shape = tiny_config(tokenizer.vocab_size)
    flags = ["--data", data.source, "--tokenizer", str(tok_path), "--vocab-size", str(data.vocab_size),
             "--preset", "nano", "--device", "cpu",
             *[x for k in SHAPE for x in ("--" + k.replace("_", "-"), str(getattr(shape, k)))],
             *[x for k, v in TRAIN.items() for x in ("--" + k.replace("_", "-"), str(v))]]
    d = {name: root / name for name in ("single", "ddp", "single2", "ddp_then_single", "single_then_fsdp")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMSTACK_CACHE", str(cache))
        _one_process(data, d["single"], 1)
        _torchrun([*flags, "--steps", "1", "--out", str(d["ddp"])], env)
        shutil.copytree(d["single"], d["single2"])
        _one_process(data, d["single2"], 2, resume=True)
        shutil.copytree(d["ddp"], d["ddp_then_single"])
        _one_process(data, d["ddp_then_single"], 2, resume=True)
        shutil.copytree(d["single"], d["single_then_fsdp"])
        _torchrun([*flags, "--steps", "2", "--fsdp", "--resume", "--out", str(d["single_then_fsdp"])], env)
    return d


def _metrics(run) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["step"], {}).update(row)
    return out


def _assert_same_state(a, b, atol=1e-6) -> None:
    sa, sb = load_checkpoint(a / "ckpt.pt"), load_checkpoint(b / "ckpt.pt")
    assert sa["step"] == sb["step"] and sa["tokens_seen"] == sb["tokens_seen"]
    assert sa["model"].keys() == sb["model"].keys()
    for name, t in sa["model"].items():
        torch.testing.assert_close(sb["model"][name], t, rtol=0, atol=atol, msg=name)
    oa, ob = sa["optimizer"], sb["optimizer"]
    assert [g["params"] for g in oa["param_groups"]] == [g["params"] for g in ob["param_groups"]]
    for i, s in oa["state"].items():
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(ob["state"][i][k], s[k], rtol=1e-4, atol=1e-9, msg=f"{i} {k}")
        assert float(ob["state"][i]["step"]) == float(s["step"])


def _assert_same_losses(a, b) -> None:
    ma, mb = _metrics(a), _metrics(b)
    assert ma.keys() == mb.keys()
    for step, row in ma.items():
        for k in ("loss", "val_loss", "tokens", "grad_norm"):
            assert mb[step][k] == pytest.approx(row[k], rel=1e-5), (step, k)
        assert row["grad_norm"] > TRAIN["grad_clip"]


def test_ranks_split_one_global_batch(dataset):
    whole = Batches(dataset, 16, 6, seed=5)
    parts = [Batches(dataset, 16, 2, seed=5).shard(r, 3) for r in range(3)]
    for step, micro in ((0, 0), (7, 1)):
        x, y = whole.get(step, micro)
        xs, ys = zip(*(p.get(step, micro) for p in parts), strict=True)
        assert torch.equal(torch.cat(xs), x) and torch.equal(torch.cat(ys), y)
    assert not np.array_equal(parts[0].get(0)[0], parts[1].get(0)[0])
    with pytest.raises(LmstackError, match="outside a world of 2"):
        whole.shard(2, 2)


def test_two_ranks_take_the_same_step_as_one_process(runs):
    _assert_same_losses(runs["single"], runs["ddp"])
    _assert_same_state(runs["single"], runs["ddp"])
    ckpt = load_checkpoint(runs["ddp"] / "ckpt.pt")
    assert ckpt["world_size"] == 2 and ckpt["global_batch"] == 4
    assert json.loads((runs["ddp"] / "run.json").read_text())["world_size"] == 2


def test_checkpoint_of_two_ranks_resumes_in_one_process(runs):
    _assert_same_losses(runs["single2"], runs["ddp_then_single"])
    _assert_same_state(runs["single2"], runs["ddp_then_single"], atol=1e-5)


def test_fsdp_resumes_a_one_process_checkpoint_and_steps_alike(runs):
    _assert_same_losses(runs["single2"], runs["single_then_fsdp"])
    _assert_same_state(runs["single2"], runs["single_then_fsdp"], atol=1e-5)
    assert load_checkpoint(runs["single_then_fsdp"] / "ckpt.pt")["train_config"]["fsdp"] is True


def test_gradients_are_reduced_once_per_step_not_per_micro_step(tokenizer):
    """DDP all-reduces each gradient bucket on the last micro-step only (counted with a comm hook)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = Transformer(tiny_config(tokenizer.vocab_size))
        ddp = distributed.wrap(model, distributed.Cluster(world_size=2), "cpu")
        assert isinstance(ddp, nn.parallel.DistributedDataParallel)
        calls = []

        def counting_hook(state, bucket):
            calls.append(bucket.index())
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut

        ddp.register_comm_hook(None, counting_hook)
        x = torch.randint(0, tokenizer.vocab_size, (2, 16))

        def step(sync_every_micro: bool) -> int:
            calls.clear()
            for micro in range(4):
                with distributed.grad_sync(ddp, sync=sync_every_micro or micro == 3):
                    ddp(x, x)[1].backward()
            return len(calls)

        per_micro, per_step = step(True), step(False)
        assert per_step > 0 and per_micro == 4 * per_step
    finally:
        dist.destroy_process_group()


def test_unknown_or_absent_devices_are_refused():
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(LmstackError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(LmstackError, match="no CUDA device"):
            resolve_device("cuda")


def test_gpu_hours_from_a_flop_budget():
    from lmstack.train.flops import gpu_hours

    # 1e12 FLOP/s at 50% MFU spends 1.8e15 FLOPs in one hour
    assert gpu_hours(1.8e15, 1e12, 0.5) == pytest.approx(1.0)
    assert gpu_hours(3.6e15, 1e12, 0.5) == pytest.approx(2 * gpu_hours(1.8e15, 1e12, 0.5))
    with pytest.raises(ValueError):
        gpu_hours(1e15, 1e12, 1.5)

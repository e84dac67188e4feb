import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint, save_checkpoint
from lmstack.io.shards import Batches
from lmstack.model import Transformer
from lmstack.train.loop import TrainConfig, evaluate_loss, train
from lmstack.train.optim import lr_at, make_optimizer
from tests.conftest import tiny_config


def _run(dataset, tokenizer, out, steps, total=None, resume=False, **kw):
    torch.manual_seed(0)
    model = Transformer(tiny_config(tokenizer.vocab_size))
    cfg = TrainConfig(steps=steps, batch_size=4, lr=3e-3, warmup_steps=3, eval_every=4, eval_batches=2,
                      ckpt_every=kw.pop("ckpt_every", 4), log_every=1, **kw)
    data = Batches(dataset, 32, 4, seed=cfg.seed)
    res = train(model, data, cfg, out, tokenizer.token_byte_lengths(), resume=resume, progress=False)
    return model, res


def _losses(out):
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r], [(r["step"], r["val_loss"]) for r in rows
                                                                   if "val_loss" in r]


def test_loss_falls_and_outputs_are_written(dataset, tokenizer, tmp_path):
    _, res = _run(dataset, tokenizer, tmp_path / "r", 30)
    train_losses, val = _losses(tmp_path / "r")
    assert train_losses[-1][1] < train_losses[0][1] - 1.0
    torch.manual_seed(0)  # the same initial weights, untrained, on the same held-out windows
    untrained = evaluate_loss(Transformer(tiny_config(tokenizer.vocab_size)), Batches(dataset, 32, 4).val_batches(2),
                              tokenizer.token_byte_lengths(), "cpu")
    assert res.last_eval["val_bytes"] == untrained["val_bytes"] > 0
    assert res.last_eval["val_bpb"] < untrained["val_bpb"] - 0.5 and len(val) >= 7
    assert (tmp_path / "r" / "loss.png").stat().st_size > 1000
    assert not list((tmp_path / "r").glob("*.tmp"))


def test_bf16_autocast_on_cpu_trains_in_bf16_and_learns_as_fp32_does(dataset, tokenizer, tmp_path):
    """--precision bf16 runs the matmuls in bf16 on a CPU too (where AMX makes them fast): the curve
    differs from fp32's from the first step, yet ends as low; auto stays fp32 on a CPU."""
    from lmstack.train.loop import autocast_for, resolve_precision

    _run(dataset, tokenizer, tmp_path / "fp32", 20)
    _run(dataset, tokenizer, tmp_path / "auto", 20, precision="auto")
    _run(dataset, tokenizer, tmp_path / "bf16", 20, precision="bf16")
    fp32, auto, bf16 = (_losses(tmp_path / d)[0] for d in ("fp32", "auto", "bf16"))
    assert auto == fp32 and resolve_precision("auto", "cpu") == "fp32" and resolve_precision("auto", "cuda") == "bf16"
    assert bf16[0][1] != fp32[0][1] and abs(bf16[0][1] - fp32[0][1]) < 0.05
    assert abs(bf16[-1][1] - fp32[-1][1]) < 0.1 and bf16[-1][1] < bf16[0][1] - 1.0
    with autocast_for("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(LmstackError, match="precision"):
        TrainConfig(precision="fp16")


def test_resume_continues_exactly(dataset, tokenizer, tmp_path):
    full, _ = _run(dataset, tokenizer, tmp_path / "full", 12)
    # first half of the same 12-step schedule: stop at step 6 by pretending the run is 12 long
    part_cfg = dict(steps=12)
    torch.manual_seed(0)
    model = Transformer(tiny_config(tokenizer.vocab_size))
    cfg = TrainConfig(**part_cfg, batch_size=4, lr=3e-3, warmup_steps=3, eval_every=4, eval_batches=2,
                      ckpt_every=6, log_every=1)
    data = Batches(dataset, 32, 4, seed=0)

    class StopAt6(Batches):
        def get(self, step, micro=0):
            if step == 6:
                raise KeyboardInterrupt  # a crash right after the step-6 checkpoint
            return super().get(step, micro)

    stop = StopAt6(dataset, 32, 4, seed=0)
    with pytest.raises(KeyboardInterrupt):
        train(model, stop, cfg, tmp_path / "half", tokenizer.token_byte_lengths(), progress=False)
    assert load_checkpoint(tmp_path / "half" / "ckpt.pt")["step"] == 6
    torch.manual_seed(123)  # a different init must not matter: the checkpoint decides
    model2 = Transformer(tiny_config(tokenizer.vocab_size))
    train(model2, data, cfg, tmp_path / "half", tokenizer.token_byte_lengths(), resume=True, progress=False)
    assert _losses(tmp_path / "half") == _losses(tmp_path / "full")
    for (n, a), b in zip(full.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    s_full = load_checkpoint(tmp_path / "full" / "ckpt.pt")["optimizer"]["state"]
    s_half = load_checkpoint(tmp_path / "half" / "ckpt.pt")["optimizer"]["state"]
    assert all(torch.equal(s_full[k]["exp_avg"], s_half[k]["exp_avg"]) for k in s_full)


def test_resume_drops_a_torn_last_metrics_line_and_refuses_a_corrupt_one(dataset, tokenizer, tmp_path, capsys):
    out = tmp_path / "r"
    _run(dataset, tokenizer, out, 4, ckpt_every=4)
    metrics = out / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"step": 5, "loss": 4.2, "lr"')  # a crash in the middle of an append
    _run(dataset, tokenizer, out, 6, resume=True)
    assert "was cut off" in capsys.readouterr().out
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:2] + ['{"step": 3, "lo'] + lines[2:]) + "\n")  # damage mid-file
    with pytest.raises(LmstackError, match=r"metrics\.jsonl:3: not valid JSON"):
        _run(dataset, tokenizer, out, 8, resume=True)


def test_resume_with_a_different_config_is_refused(dataset, tokenizer, tmp_path):
    _run(dataset, tokenizer, tmp_path / "r", 4)
    before = (tmp_path / "r" / "ckpt.pt").read_bytes()
    model = Transformer(tiny_config(tokenizer.vocab_size, dim=64))
    with pytest.raises(LmstackError, match="different model config.*dim"):
        train(model, Batches(dataset, 32, 4), TrainConfig(steps=8), tmp_path / "r",
              tokenizer.token_byte_lengths(), resume=True, progress=False)
    assert (tmp_path / "r" / "ckpt.pt").read_bytes() == before


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "model_config": {"a": 1}})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.pt", {"model": {}, "model_config": {"a": 2}})
    assert load_checkpoint(tmp_path / "c.pt")["model_config"] == {"a": 1}
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(LmstackError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_weight_decay_groups_and_schedule():
    m = Transformer(tiny_config(40))
    decay, rest = make_optimizer(m, 1e-3, 0.1, (0.9, 0.95)).param_groups
    decayed = {id(p) for p in decay["params"]}
    assert id(m.tok_embeddings.weight) not in decayed  # tied output too
    assert all(id(L.attn_norm.weight) not in decayed for L in m.layers)
    assert id(m.layers[0].attn.wq.weight) in decayed and rest["weight_decay"] == 0.0
    lrs = [lr_at(s, 100, 1.0, 10, "cosine", 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)) and lrs[-1] >= 0.1
    assert lr_at(99, 100, 1.0, 10, "linear", 0.0) == pytest.approx(1 / 90, rel=1e-6)


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resume_finishes(corpus_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "run"
    flags = {"--data": str(corpus_dir / "*.txt"), "--preset": "nano", "--vocab-size": "300", "--max-seq-len": "32",
             "--batch-size": "4", "--steps": "100000", "--ckpt-every": "100000", "--eval-every": "0", "--out": str(out)}
    cmd = lambda fl: [sys.executable, "-m", "lmstack", "train", *[x for kv in fl.items() for x in kv]]
    p = subprocess.Popen(cmd(flags), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # interrupt only once a training step has been logged (however slow the machine), mid-run
    metrics, deadline = out / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and not (metrics.exists() and '"step"' in metrics.read_text()):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    output, _ = p.communicate(timeout=60)
    assert p.returncode == 130, output
    step = load_checkpoint(out / "ckpt.pt")["step"]
    assert step > 0
    r = subprocess.run(cmd({**flags, "--steps": str(step + 3)}) + ["--resume"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out / "ckpt.pt")["step"] == step + 3


def test_copy_rows_are_a_data_setting_that_resume_checks(corpus_dir, tokenizer, tmp_path):
    from dataclasses import replace

    from lmstack.pretrain import DataConfig, PretrainConfig, pretrain

    tok_path = tmp_path / "tokenizer.json"
    tokenizer.save(tok_path)
    data = DataConfig(str(corpus_dir / "*.txt"), tokenizer.vocab_size, str(tok_path), copy_fraction=0.5)
    shape = {"dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_dim": 64, "max_seq_len": 64}
    tc = TrainConfig(steps=2, batch_size=2, eval_every=0, ckpt_every=1, device="cpu")
    cfg = PretrainConfig(str(tmp_path / "run"), data, "nano", shape, tc)
    pretrain(cfg, progress=False)
    run_json = tmp_path / "run" / "run.json"
    assert json.loads(run_json.read_text())["data"]["copy_fraction"] == 0.5
    with pytest.raises(LmstackError, match="different data settings"):
        pretrain(replace(cfg, data=replace(data, copy_fraction=0.0)), resume=True, progress=False)
    saved = json.loads(run_json.read_text())
    del saved["data"]["copy_fraction"]  # a run from before copy rows existed had none
    run_json.write_text(json.dumps(saved))
    plain = replace(cfg, data=replace(data, copy_fraction=0.0), train=replace(tc, steps=3))
    assert pretrain(plain, resume=True, progress=False).step == 3
    with pytest.raises(LmstackError, match="copy_fraction"):
        DataConfig("shakespeare", copy_fraction=1.5)

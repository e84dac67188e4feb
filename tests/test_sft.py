import json
import signal

import numpy as np
import pytest
import torch

from lmstack.cli import main
from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint, save_checkpoint
from lmstack.io.conversations import Conversation, write_conversations
from lmstack.io.gguf_file import export_gguf, read_gguf
from lmstack.io.packing import ConversationBatches, pack_rows
from lmstack.load import load_model
from lmstack.model import Transformer
from lmstack.sft import SFTConfig, sft
from lmstack.train.loop import TrainConfig
from lmstack.train.lora import LoRAConfig, LoRALinear, apply_lora, merge_lora
from tests.conftest import tiny_config


def qa(i: int) -> Conversation:
    a, b = i % 7, i % 5
    return Conversation([{"role": "user", "content": f"the king {a} plus {b}"},
                         {"role": "assistant", "content": f"good {a + b}"}], meta={"answer": str(a + b)})


@pytest.fixture
def base_run(tmp_path, tokenizer):
    """A tiny 'pretrained' run directory (random weights are enough to test the mechanics)."""
    torch.manual_seed(0)
    model = Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=64))
    d = tmp_path / "base"
    save_checkpoint(d / "ckpt.pt", {"model": model.state_dict(), "model_config": model.config.to_dict()})
    tokenizer.save(d / "tokenizer.json")
    (d / "run.json").write_text(json.dumps({"data_dir": "somewhere"}))
    return d


@pytest.fixture
def conv_files(tmp_path):
    write_conversations(tmp_path / "train.jsonl", [qa(i) for i in range(60)])
    write_conversations(tmp_path / "val.jsonl", [qa(i) for i in range(60, 70)])
    return tmp_path / "train.jsonl", tmp_path / "val.jsonl"


def test_packing_fills_rows_and_masks_prompts(tokenizer):
    examples = [([1, 2, 3], [-1, 3, 4]), ([5, 6], [6, -1]), ([7, 8, 9, 10], [-1, -1, 10, 11])]
    x, y = pack_rows(examples, 8, pad_id=0, packing=True)
    assert x.shape[1] == 8 and x.shape[0] < 3  # at least two examples share a row
    assert sorted(t for t in y.ravel() if t >= 0) == [3, 4, 6, 10, 11]
    xp, yp = pack_rows(examples, 8, pad_id=0, packing=False)
    assert xp.shape == (3, 8) and (yp[xp == 0] == -1).all()  # padding is never a target
    data = ConversationBatches(tokenizer, [qa(i) for i in range(40)], [qa(99)], 64, batch_size=3, seed=1)
    assert data.stats.fill > 0.5 and data.stats.trained_tokens > 0
    a, b = data.get(5, 0), data.get(5, 0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # a pure function of (step, micro)
    # one epoch visits every row exactly once
    n = len(data)
    seen = np.concatenate([data._rows(i) for i in range(n // 3)])
    assert len(set(seen.tolist())) == len(seen) == (n // 3) * 3
    vx, vy = next(data.val_batches(1))
    assert vx.shape[1] == 64 and (vy >= 0).any()


def test_lora_starts_at_the_base_and_merges_exactly(tokenizer):
    torch.manual_seed(0)
    model = Transformer(tiny_config(tokenizer.vocab_size))
    x = torch.randint(0, tokenizer.vocab_size, (2, 16))
    before = model(x)
    full_flops = model.flops_per_token()
    trainable = apply_lora(model, LoRAConfig(rank=4, alpha=8, dropout=0.0, targets=("wq", "wv", "w_up")))
    cfg = model.config  # rank x (in + out) for each wrapped matrix: wq (dim -> dim), wv (dim -> kv), w_up
    kv = cfg.n_kv_heads * cfg.head_dim
    assert trainable == cfg.n_layers * 4 * ((cfg.dim + cfg.dim) + (cfg.dim + kv) + (cfg.dim + cfg.ffn_dim))
    # frozen matrices cost 4 FLOPs a weight (no weight gradient) instead of 6; the adapters cost 6
    frozen = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "tok_emb" not in n
                 and "lora_" not in n) + (model.output.weight.numel() if cfg.tie_embeddings else 0)
    assert model.flops_per_token() == full_flops - 2 * frozen + 6 * trainable
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    assert torch.allclose(model(x), before)  # B starts at zero
    for m in model.modules():
        if isinstance(m, LoRALinear):
            torch.nn.init.normal_(m.lora_b, std=0.05)
    tuned = model(x)
    assert not torch.allclose(tuned, before, atol=1e-4)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == set(Transformer(tiny_config(tokenizer.vocab_size)).state_dict())
    assert torch.allclose(model(x), tuned, atol=1e-5)
    with pytest.raises(LmstackError, match="targets"):
        LoRAConfig(targets=("q_proj",))


def _tc(steps=30, lr=3e-3):
    return TrainConfig(steps=steps, batch_size=8, lr=lr, warmup_steps=2, weight_decay=0.0, eval_every=10,
                       eval_batches=2, ckpt_every=0, log_every=5)


ALL_LORA = LoRAConfig(rank=8, alpha=32, dropout=0.0, targets=("wq", "wv", "wo", "w_up", "w_down"))


@pytest.mark.parametrize("lora", [None, ALL_LORA])
def test_sft_run_is_a_loadable_exportable_model(base_run, conv_files, tmp_path, lora, tokenizer):
    train, val = conv_files
    out = tmp_path / "sft"
    res = sft(SFTConfig(base=str(base_run), data=str(train), val_data=str(val), out_dir=str(out), lora=lora,
                        train=_tc(lr=2e-2 if lora else 3e-3)), progress=False)
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    if lora:  # a low-rank update against a frozen random base learns slowly, but steadily
        assert all(b < a for a, b in zip(vals, vals[1:], strict=False)) and vals[-1] < vals[0] - 0.03
    else:
        assert losses[-1] < losses[0] - 0.5 and vals[-1] < vals[0] - 0.3
    assert res.step == 30
    model, tok, info = load_model(out)  # merged: a plain model, like any run
    assert info["kind"] == "sft" and info["lora"] == (None if lora is None else json.loads(json.dumps(
        {**lora.__dict__, "targets": list(lora.targets)})))
    assert info["chat_template"] and info["data_dir"] == "somewhere"
    base, _, _ = load_model(base_run)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    if lora:  # only the wrapped matrices moved
        assert changed and all(k.split(".")[-2] in lora.targets for k in changed)
    else:
        assert "tok_embeddings.weight" in changed
    gguf = export_gguf(model, tok, tmp_path / "m.gguf")
    g = read_gguf(gguf)
    x = torch.randint(0, tok.vocab_size, (1, 12))
    m2 = Transformer(g.config)
    m2.load_state_dict(g.state_dict)
    assert torch.allclose(m2.eval()(x), model(x), atol=1e-5)


def test_mfu_counts_attention_over_the_trained_rows_not_the_model_context(base_run, conv_files, tmp_path,
                                                                          monkeypatch, tokenizer):
    import lmstack.train.loop as loop

    monkeypatch.setattr(loop, "matmul_peak", lambda device, precision="auto": 1.0)  # mfu then reads FLOPs per second
    train, _ = conv_files
    out = tmp_path / "short"
    sft(SFTConfig(base=str(base_run), data=str(train), out_dir=str(out), lora=ALL_LORA, seq_len=48,
                  train=_tc(steps=5)), progress=False)
    row = next(json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines() if "mfu" in json.loads(r))
    model = Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=64))
    apply_lora(model, ALL_LORA)
    assert row["mfu"] / row["tok_s"] == pytest.approx(model.flops_per_token(48), rel=1e-9)
    assert model.flops_per_token(48) < model.flops_per_token()  # the context's 64 would count more


def test_sft_refuses_bad_input(base_run, conv_files, tmp_path):
    train, _ = conv_files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(train.read_text() + '{"messages": [{"role": "user", "content": "x"}]}\n')
    with pytest.raises(LmstackError, match=r"bad\.jsonl:61: no assistant message"):
        sft(SFTConfig(base=str(base_run), data=str(bad), out_dir=str(tmp_path / "o")), progress=False)
    with pytest.raises(LmstackError, match="no such model"):
        sft(SFTConfig(base=str(tmp_path / "nothing"), data=str(train), out_dir=str(tmp_path / "o")), progress=False)


def test_rows_longer_than_the_context_extend_it(base_run, conv_files, tmp_path):
    train, _ = conv_files
    base_len = load_model(base_run)[0].config.max_seq_len
    tc = TrainConfig(steps=2, batch_size=2, warmup_steps=0, eval_every=0, ckpt_every=0, device="cpu")
    sft(SFTConfig(base=str(base_run), data=str(train), out_dir=str(tmp_path / "long"), seq_len=2 * base_len,
                  train=tc), progress=False)
    model, _, _ = load_model(tmp_path / "long")
    assert model.config.max_seq_len == 2 * base_len  # RoPE tables grown, the same weights fine-tuned at the new length
    assert model(torch.zeros(1, 2 * base_len, dtype=torch.long)).shape[1] == 2 * base_len


def test_sft_resumes_to_the_weights_of_an_uninterrupted_run(base_run, conv_files, tmp_path, monkeypatch):
    train, val = conv_files
    tc = TrainConfig(steps=8, batch_size=4, lr=3e-3, warmup_steps=2, weight_decay=0.0, eval_every=4, eval_batches=1,
                     ckpt_every=4, log_every=1, device="cpu")
    cfg = lambda out: SFTConfig(base=str(base_run), data=str(train), val_data=str(val), out_dir=str(out), train=tc)
    sft(cfg(tmp_path / "full"), progress=False)
    real_get = ConversationBatches.get

    def crash_after_step_4(self, step, micro=0):
        if step == 4:
            raise KeyboardInterrupt  # the process dies right after the step-4 checkpoint
        return real_get(self, step, micro)

    monkeypatch.setattr(ConversationBatches, "get", crash_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        sft(cfg(tmp_path / "half"), progress=False)
    monkeypatch.setattr(ConversationBatches, "get", real_get)
    assert load_checkpoint(tmp_path / "half" / "ckpt.pt")["step"] == 4
    with pytest.raises(LmstackError, match="already holds a checkpoint"):
        sft(cfg(tmp_path / "half"), progress=False)
    sft(cfg(tmp_path / "half"), progress=False, resume=True)
    full, half = (load_checkpoint(tmp_path / d / "ckpt.pt") for d in ("full", "half"))
    assert half["step"] == 8 and full["model"].keys() == half["model"].keys()
    for k, v in full["model"].items():
        assert torch.equal(v, half["model"][k]), k
    assert not torch.equal(full["model"]["tok_embeddings.weight"], load_model(base_run)[0].tok_embeddings.weight)
    curve = lambda d: [(r["step"], r.get("loss"), r.get("val_loss")) for r in map(
        json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())]
    assert curve("half") == curve("full") and len(curve("full")) == 8 + 2  # every step, two evaluations


RESUME_LORA = LoRAConfig(rank=4, alpha=8, dropout=0.2, targets=("wq", "wv", "w_up"))  # dropout: the RNG matters


def test_lora_resumes_after_ctrl_c_to_the_weights_of_an_uninterrupted_run(base_run, conv_files, tmp_path,
                                                                          monkeypatch):
    train, val = conv_files
    tc = TrainConfig(steps=8, batch_size=4, lr=2e-2, warmup_steps=2, weight_decay=0.0, eval_every=4, eval_batches=1,
                     ckpt_every=0, log_every=1, device="cpu")
    cfg = lambda out, lora=RESUME_LORA: SFTConfig(base=str(base_run), data=str(train), val_data=str(val),
                                                  out_dir=str(out), lora=lora, train=tc)
    sft(cfg(tmp_path / "full"), progress=False)
    real_get = ConversationBatches.get

    def ctrl_c_in_step_6(self, step, micro=0):
        if step == 5 and micro == 0:
            signal.raise_signal(signal.SIGINT)  # the loop finishes this step, checkpoints and stops
        return real_get(self, step, micro)

    monkeypatch.setattr(ConversationBatches, "get", ctrl_c_in_step_6)
    res = sft(cfg(tmp_path / "half"), progress=False)
    monkeypatch.setattr(ConversationBatches, "get", real_get)
    state = load_checkpoint(tmp_path / "half" / "ckpt.pt")
    assert res.interrupted and res.step == state["step"] == 6
    assert not state.get("merged_lora") and any(k.endswith("lora_a") for k in state["model"])  # left resumable
    with pytest.raises(LmstackError, match="was LoRA .* asks for full fine-tuning"):
        sft(cfg(tmp_path / "half", None), progress=False, resume=True)
    assert not sft(cfg(tmp_path / "half"), progress=False, resume=True).interrupted
    full, half = (load_checkpoint(tmp_path / d / "ckpt.pt") for d in ("full", "half"))
    assert half["merged_lora"] and half["step"] == 8 and full["model"].keys() == half["model"].keys()
    for k, v in full["model"].items():
        assert torch.equal(v, half["model"][k]), k
    # the factors are kept beside the merged weights (for a quantised engine), and they are the update
    assert full["lora_update"].keys() == half["lora_update"].keys() and full["lora_update"]
    base = load_checkpoint(base_run / "ckpt.pt")["model"]
    for k, a in full["lora_update"].items():
        if k.endswith(".a"):
            layer = k[:-2]
            delta = full["model"][layer + ".weight"] - base[layer + ".weight"]
            torch.testing.assert_close(full["lora_update"][layer + ".b"] @ a, delta, atol=1e-5, rtol=1e-4)
            assert torch.equal(a, half["lora_update"][k])
    curve = lambda d: [(r["step"], r.get("loss"), r.get("val_loss")) for r in map(
        json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())]
    assert curve("half") == curve("full") and len(curve("full")) == 8 + 2
    with pytest.raises(LmstackError, match="merged into the weights: nothing to resume"):
        sft(cfg(tmp_path / "half"), progress=False, resume=True)


def test_sft_cli_with_lora_defaults_then_eval_chat(base_run, conv_files, tmp_path, capsys):
    train, val = conv_files
    out = tmp_path / "lora"
    main(["sft", "--base", str(base_run), "--data", str(train), "--val", str(val), "--out", str(out), "--lora",
          "--steps", "6", "--batch-size", "4", "--eval-every", "3", "--log-every", "3", "--device", "cpu"])
    assert "done: step 6" in capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())
    assert info["lora"] == {"rank": 8, "alpha": 16.0, "dropout": 0.05, "targets": ["wq", "wk", "wv", "wo"]}
    assert info["train"]["lr"] == 1e-3 and info["train"]["steps"] == 6 and info["train"]["weight_decay"] == 0.0
    model, _, _ = load_model(out)  # merged into plain weights: only the attention matrices moved
    base = load_model(base_run)[0].state_dict()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base[k])}
    assert changed == {f"layers.{i}.attn.{w}.weight" for i in range(2) for w in ("wq", "wk", "wv", "wo")}

    md = tmp_path / "chat.md"
    main(["eval", str(out), "--chat", "--data", str(val), "--max-new-tokens", "4", "--json",
          str(tmp_path / "chat.json"), "--markdown", str(md)])
    r = json.loads((tmp_path / "chat.json").read_text())
    assert r["n"] == 10 and r["data"] == str(val)
    assert list(r["models"]) == ["base (base)", "tuned (lora)"]  # the run's own base, found in run.json
    assert all(0 <= m["contains"] <= 1 for m in r["models"].values())
    assert "| tuned (lora) |" in md.read_text() and "| tuned (lora) |" in capsys.readouterr().out

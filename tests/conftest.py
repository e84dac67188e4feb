"""Shared fixtures: a small synthetic corpus, a tokenizer and a tokenized dataset, all offline."""

from __future__ import annotations

import random
import threading

import pytest

WORDS = ("the king queen lord lady speak hear love death night day sword crown heart blood "
         "thou thee thy doth hath good noble fair foul sweet cruel gentle brave").split()
NAMES = ["ROMEO", "JULIET", "HAMLET", "OPHELIA", "KING", "QUEEN"]


def make_play(seed: int, lines: int = 120) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        speaker = rng.choice(NAMES)
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        out.append(f"{speaker}:\n{' '.join(words).capitalize()}{rng.choice('.,!?;')}\n")
    return "\n".join(out)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Token caches go to a temp dir; named corpora and models reuse the user's cache so they download once."""
    import os

    real = os.environ.get("LMSTACK_CACHE")
    cache = tmp_path_factory.getbasetemp() / "cache"
    cache.mkdir(exist_ok=True)
    for kind in ("corpora", "models"):
        shared = cache / kind
        if real and not shared.exists():
            src = os.path.join(real, kind)
            if os.path.isdir(src):
                shared.symlink_to(src)
    monkeypatch.setenv("LMSTACK_CACHE", str(cache))


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(8):
        (d / f"play_{i}.txt").write_text(make_play(i), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tokenizer(corpus_dir):
    from lmstack.io.tokenizer import train_tokenizer

    texts = [p.read_text() for p in sorted(corpus_dir.glob("*.txt"))]
    return train_tokenizer(texts + ["héllo wörld 日本語 🎉 123 4567"], 320)


@pytest.fixture(scope="session")
def dataset(corpus_dir, tokenizer, tmp_path_factory):
    from lmstack.io.corpora import load_documents, split_documents
    from lmstack.io.shards import build_dataset

    train, val = split_documents(load_documents(str(corpus_dir / "*.txt")), 0.2)
    return build_dataset(train, val, tokenizer, tmp_path_factory.mktemp("data"))


def tiny_config(vocab_size: int, **kw):
    from lmstack.model import ModelConfig

    base = dict(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
    return ModelConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def trained_gguf(dataset, tokenizer, tmp_path_factory):
    """A small model trained by lmstack's own loop for a few seconds, exported to GGUF: (model, path)."""
    import torch

    from lmstack.io.gguf_file import export_gguf
    from lmstack.io.shards import Batches
    from lmstack.model import Transformer
    from lmstack.train.loop import TrainConfig, train

    torch.manual_seed(0)
    model = Transformer(tiny_config(tokenizer.vocab_size, dim=64, max_seq_len=64))
    cfg = TrainConfig(steps=120, batch_size=8, lr=1e-2, warmup_steps=10, eval_every=1000, eval_batches=1,
                      ckpt_every=1000, log_every=1000, device="cpu")
    out = tmp_path_factory.mktemp("trained")
    train(model, Batches(dataset, 64, 8, seed=0), cfg, out, tokenizer.token_byte_lengths(), progress=False)
    model.eval()
    return model, export_gguf(model, tokenizer, out / "model.gguf")


def counting_submits(monkeypatch, engine, n: int) -> tuple[list, threading.Event]:
    """Record every request submitted to `engine` (by anyone: generate(), the server); the event is set
    once `n` are in. With `engine.on_step` waiting on it, tests gate batching on events, not speed."""
    submitted, all_in, plain = [], threading.Event(), engine.submit

    def submit(*args, **kw):
        r = plain(*args, **kw)
        submitted.append(r)
        if len(submitted) >= n:
            all_in.set()
        return r

    monkeypatch.setattr(engine, "submit", submit)
    return submitted, all_in


def hold_until_cancelled(monkeypatch, engine, after: int = 1) -> tuple[list, threading.Event, threading.Event]:
    """Instrument `engine`: the first request submitted, once it has `after` tokens, is held before each
    of its decode steps until it is cancelled, so it cannot run to its end unless the cancellation
    never comes (then each hold gives up after 30 s). Returns (submitted, reached: it is being held,
    cancelled: its cancel() was called)."""
    submitted, all_in = counting_submits(monkeypatch, engine, 1)
    reached, cancelled = threading.Event(), threading.Event()
    counted = engine.submit

    def submit(*args, **kw):
        r = counted(*args, **kw)
        plain = r.cancel

        def cancel():
            plain()
            cancelled.set()

        r.cancel = cancel
        return r

    def on_step(ids):
        all_in.wait(timeout=30)
        if submitted[0].id in ids and len(submitted[0].token_ids) >= after:
            reached.set()
            cancelled.wait(timeout=30)

    monkeypatch.setattr(engine, "submit", submit)
    monkeypatch.setattr(engine, "on_step", on_step)
    return submitted, reached, cancelled


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real vocabulary, read from its GGUF file: <tool_call> is plain text there."""
    from lmstack.io.gguf_file import read_gguf, tokenizer_from_gguf
    from lmstack.io.models import resolve_model

    return tokenizer_from_gguf(read_gguf(resolve_model("smollm2-135m-instruct", quiet=True)).metadata)


@pytest.fixture(params=["lmstack", "smollm2"])
def any_tokenizer(request, tokenizer):
    """Each test twice: on an lmstack vocabulary (markers are special tokens) and on SmolLM2's."""
    return tokenizer if request.param == "lmstack" else request.getfixturevalue("smollm2_tokenizer")


def spread_out_model(vocab_size: int, seed: int):
    """A random model with spread-out logits (so greedy choices are not near-ties), in shapes the
    int4 kernel can pack (multiples of 64 rows)."""
    import torch

    from lmstack.model import Transformer

    torch.manual_seed(seed)
    m = Transformer(tiny_config(vocab_size, dim=64, ffn_dim=128, max_seq_len=64))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15 if "tok_emb" not in name else 1.0)
    return m.eval()

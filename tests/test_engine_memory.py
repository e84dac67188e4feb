"""The engine's KV cache memory: it follows the tokens actually cached, goes back to the OS when
requests end, and stays within its budget; quantised engines cache in 16 bits; quant="auto" runs a
file as it is stored."""

from __future__ import annotations

import mmap

import pytest
import torch

import lmstack.engine.forward as forward
from lmstack.engine import Engine, SamplingParams
from lmstack.engine.engine import auto_quant
from lmstack.errors import LmstackError
from lmstack.model import Transformer
from tests.conftest import tiny_config

GREEDY = dict(temperature=0.0, stop_token_ids=[])


@pytest.fixture(scope="module")
def model(tokenizer):
    """Head blocks of 1024 positions x 32 dims (128 KB in fp32): whole pages, so memory is exact."""
    torch.manual_seed(0)
    return Transformer(tiny_config(tokenizer.vocab_size, dim=128, n_heads=4, n_kv_heads=2, max_seq_len=1024)).eval()


def pages_for(cache: forward.KVCache, lengths: list[int]) -> int:
    """Bytes the cache holds when slot b has lengths[b] tokens: whole pages per (layer, K/V, slot, head)."""
    _, n_kv, _, hd = cache.shape
    per_block = sum(-(-n * hd * cache.itemsize // mmap.PAGESIZE) for n in lengths) * mmap.PAGESIZE
    return per_block * n_kv * (len(cache.k) + len(cache.v))


def run_recording(engine: Engine, prompts: list[list[int]], params: list[SamplingParams]) -> list[tuple]:
    """Generate, recording (request ids, cache lengths, resident bytes) at every decode step."""
    steps = []

    def on_step(ids):
        lengths = [r.pos for r in engine._running]  # the engine thread, between steps: consistent
        steps.append((ids, lengths, engine.model.cache.resident_bytes()))

    engine.on_step = on_step
    try:
        engine.generate(prompts, params)
    finally:
        engine.on_step = None
    return steps


def test_cache_memory_follows_tokens_and_is_released(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch=8)
    cache = engine.model.cache
    virtual = sum(t.numel() * cache.itemsize for t in cache.k + cache.v)
    assert cache.resident_bytes() == 0  # nothing is allocated before a token is written
    ids = tokenizer.encode("the king " * 60)
    steps = run_recording(engine, [ids[: 50 + 40 * i] for i in range(4)], SamplingParams(max_new_tokens=8, **GREEDY))
    for _, lengths, resident in steps:
        assert resident == pages_for(cache, lengths)  # exactly the pages the cached tokens are on
    most = max(resident for *_, resident in steps)
    assert most < virtual / 10  # half the slots, a sixth of the context at most
    # after they end, a new short request finds only its own tokens in memory
    steps = run_recording(engine, [ids[:5]], SamplingParams(max_new_tokens=3, **GREEDY))
    assert all(resident == pages_for(cache, lengths) for _, lengths, resident in steps)
    assert steps[-1][2] < most / 10
    engine.close()
    assert cache.resident_bytes() == 0


def test_moving_a_sequence_to_a_freed_slot_keeps_its_tokens_and_frees_the_rest(model, tokenizer):
    """A short request ends first; the last slot's sequence moves into its slot and continues the
    same as it would alone, and the memory of the vacated slot goes back."""
    engine = Engine(model, tokenizer, max_batch=4)
    ids = tokenizer.encode("the king " * 60)
    prompts = [ids[:200], ids[:30], ids[:120]]
    params = [SamplingParams(max_new_tokens=n, **GREEDY) for n in (2, 12, 12)]
    alone = [engine.generate([p], q)[0].token_ids for p, q in zip(prompts, params, strict=True)]
    steps = run_recording(engine, prompts, params)
    assert any(len(s[0]) == 3 for s in steps) and any(len(s[0]) == 2 for s in steps)
    assert all(resident == pages_for(engine.model.cache, lengths) for _, lengths, resident in steps)
    assert [c.token_ids for c in engine.generate(prompts, params)] == alone
    engine.close()


def test_budget_limits_requests_in_flight(model, tokenizer):
    bytes_per_token = Engine(model, tokenizer, max_batch=1).model.cache.bytes_per_token
    ids = tokenizer.encode("the king " * 60)[:20]
    # each request can reach 20 + 20 tokens: the budget holds two at once, not three
    engine = Engine(model, tokenizer, max_batch=8, kv_cache_mb=100 * bytes_per_token / 2**20)
    assert engine.kv_budget_tokens == 100
    steps = run_recording(engine, [ids] * 5, SamplingParams(max_new_tokens=20, **GREEDY))
    assert max(len(ids_) for ids_, *_ in steps) == 2
    assert all(sum(lengths) <= 100 for _, lengths, _ in steps)
    outs = engine.generate([ids] * 5, SamplingParams(max_new_tokens=20, **GREEDY))
    assert all(len(c.token_ids) == 20 and c.finish_reason == "length" for c in outs)  # they waited, then ran
    # one request alone is limited to the budget, as to the context; a prompt beyond it is refused
    long = engine.generate([ids], SamplingParams(max_new_tokens=500, **GREEDY))[0]
    assert len(long.token_ids) == 80 and long.finish_reason == "length"
    with pytest.raises(LmstackError, match="KV cache budget"):
        engine.submit(tokenizer.encode("the king " * 60)[:100])
    engine.close()
    with pytest.raises(LmstackError, match="kv_cache_mb"):
        Engine(model, tokenizer, kv_cache_mb=0)


def test_quantised_engines_cache_in_16_bits(model, tokenizer, monkeypatch):
    """float16 K and V move an int8 engine's logits by much less than int8 moves them from fp32. Measured
    through PyTorch's int8 kernel, whose bf16 activations are a smooth function of the cache; lmstack's
    kernel rounds activations to int8 blocks, where a small change can flip a rounding (its end-to-end
    cost is `bench/inference.py --quality`)."""
    monkeypatch.setenv("LMSTACK_KERNELS", "torch")
    ids = tokenizer.encode("the king " * 20)
    q16 = Engine(model, tokenizer, quant="int8", max_batch=1)
    assert q16.model.k_cache[0].dtype == torch.float16 and q16.model.v_cache[0].dtype == torch.float16
    assert Engine(model, tokenizer, max_batch=1).model.k_cache[0].dtype == torch.float32
    monkeypatch.setattr(forward, "kv_dtype", lambda quant: torch.float32)
    q32, fp32 = Engine(model, tokenizer, quant="int8", max_batch=1), Engine(model, tokenizer, max_batch=1)
    logits = []
    with torch.inference_mode():
        for e in (q16, q32, fp32):
            e.model.prefill(torch.tensor(ids[:-1]), 0)
            logits.append(e.model.decode(torch.tensor([ids[-1]]), torch.tensor([len(ids) - 1]), len(ids))[0])
    cache_err, quant_err = (logits[0] - logits[1]).abs().max(), (logits[1] - logits[2]).abs().max()
    assert cache_err < quant_err / 5  # (int8 rounds its activations to bf16, which absorbs most of it)
    for e in (q16, q32, fp32):
        e.close()


def test_auto_quant_follows_the_file(tmp_path, model, tokenizer):
    from lmstack.io.gguf_file import export_gguf

    assert [auto_quant({"general.file_type": t}) for t in (0, 1, 3, 7, 15, 18, 32)] == \
        ["none", "none", "int4", "int8", "int4", "int8", "none"]
    assert auto_quant({}) == "none"  # a training run or a Hugging Face checkpoint
    small = Transformer(tiny_config(tokenizer.vocab_size, dim=64, max_seq_len=64))
    for dtype, quant in (("f32", "none"), ("q8_0", "int8")):
        e = Engine.load(export_gguf(small, tokenizer, tmp_path / f"{dtype}.gguf", dtype=dtype), max_batch=1)
        assert e.quant == quant
        e.close()
    e = Engine.load(tmp_path / "q8_0.gguf", quant="none", max_batch=1)  # the opt-out
    assert e.quant == "none"
    e.close()

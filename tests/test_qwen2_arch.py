"""The qwen2 architecture on a small random model: Q/K/V biases, separate output, rope theta 1e6. Its GGUF
file is `qwen2` as llama.cpp defines it (Q and K rows in the halves layout, biases as tensors), and the
torch model, the numpy run file, the engine in every quantisation, transformers and llama.cpp agree on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmstack import run
from lmstack.engine import Engine, SamplingParams
from lmstack.engine.forward import FastTransformer
from lmstack.io.gguf_file import export_gguf, raw_tensors, read_gguf
from lmstack.io.hf import export_hf, pairs_to_halves, read_hf
from lmstack.io.tokenizer import bytes_to_unicode
from lmstack.load import load_model
from lmstack.model import Transformer
from tests.conftest import tiny_config

GREEDY = dict(temperature=0.0, stop_token_ids=[])
PROMPTS = ("ROMEO:\nThe king", "JULIET:", "HAMLET:\nGood night sweet lady, thou")


@pytest.fixture(scope="module")
def model(tokenizer):
    """Spread-out weights and biases large enough to matter, in shapes the int4 kernel packs."""
    torch.manual_seed(3)
    m = Transformer(tiny_config(tokenizer.vocab_size, dim=64, ffn_dim=128, max_seq_len=64, qkv_bias=True,
                                tie_embeddings=False, rope_theta=1e6))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15 if "tok_emb" not in name else 1.0)
            elif name.endswith("bias"):
                p.normal_(0, 0.5)
    return m.eval()


@pytest.fixture(scope="module")
def gguf_path(model, tokenizer, tmp_path_factory):
    return export_gguf(model, tokenizer, tmp_path_factory.mktemp("qwen2") / "m.gguf")


def test_export_is_a_qwen2_file_in_the_halves_layout_and_reads_back_exactly(model, gguf_path):
    g = read_gguf(gguf_path)
    assert g.metadata["general.architecture"] == "qwen2" and g.metadata["qwen2.rope.freq_base"] == 1e6
    assert g.config == model.config
    sd = model.state_dict()
    for name, t in g.state_dict.items():
        assert torch.equal(t, sd[name]), name
    raw = raw_tensors(gguf_path)  # the file's own bytes, reordered into our layout on reading
    assert np.array_equal(raw["layers.0.attn.wq.bias"].data, sd["layers.0.attn.wq.bias"].numpy())
    _, _, infos, buf = run.read_gguf_header(str(gguf_path))
    stored = run.dequantize(buf, infos["blk.0.attn_k.weight"])
    assert np.array_equal(stored, pairs_to_halves(sd["layers.0.attn.wk.weight"], model.config.n_kv_heads).numpy())
    assert "blk.1.attn_v.bias" in infos and "output.weight" in infos


def test_run_file_and_loaded_model_give_the_model_logits(model, tokenizer, gguf_path):
    loaded = load_model(gguf_path)[0]
    runner = run.load(str(gguf_path))
    assert runner.config.qkv_bias and not runner.config.tie_embeddings
    for text in PROMPTS:
        ids = tokenizer.encode(text)
        with torch.no_grad():
            ref = model(torch.tensor([ids]))[0].numpy()
            assert np.abs(loaded(torch.tensor([ids]))[0].numpy() - ref).max() < 1e-5
        runner.reset()
        assert np.abs(runner.forward_many(ids, 0) - ref).max() < 1e-4


@pytest.mark.parametrize("quant", ["none", "int8", "int4"])
def test_engine_reads_qwen2_in_every_quantisation(model, tokenizer, gguf_path, quant):
    """Read lean from the file, the engine holds the weights it builds from the whole model (biases in
    float32) with the same logits; unquantised they are the model's, and so are its greedy tokens."""
    lean = load_model(gguf_path, lazy=True)[0]
    ids = tokenizer.encode(PROMPTS[2])
    with torch.inference_mode():
        a, b = FastTransformer(model, quant, 1, 64), FastTransformer(lean, quant, 1, 64)
        assert a.layers[0].qkv.bias.dtype == torch.float32
        for name, t in a.state_dict().items():
            assert torch.equal(t, b.state_dict()[name]), name
        got = b.prefill(torch.tensor(ids), 0, all_logits=True)
        ref = model(torch.tensor([ids]))[0]
        if quant == "none":
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
        else:
            assert float((got - ref).abs().mean() / ref.std()) < (0.05 if quant == "int8" else 0.4)
    e = Engine.load(gguf_path, quant=quant, compile=False, max_batch=2)
    try:
        outs = e.generate([tokenizer.encode(t) for t in PROMPTS], SamplingParams(max_new_tokens=12, **GREEDY))
        if quant == "none":
            for text, c in zip(PROMPTS, outs, strict=True):
                ids = tokenizer.encode(text)
                assert c.token_ids == model.generate(torch.tensor([ids]), 12, temperature=0)[0, len(ids):].tolist()
        assert all(len(c.token_ids) == 12 for c in outs)
    finally:
        e.close()


def test_hf_export_is_a_qwen2_checkpoint_transformers_runs_with_the_same_logits(model, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    out = export_hf(model, tokenizer, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert type(hf).__name__ == "Qwen2ForCausalLM"
    ids = torch.tensor([tokenizer.encode(PROMPTS[0])])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-4, rtol=0)
    cfg, sd, _, _ = read_hf(out)
    assert cfg == model.config
    assert all(torch.equal(t, sd[name]) for name, t in model.state_dict().items())


def llama_cpp_greedy(server, prompt: list[int], n: int) -> tuple[int, bytes]:
    """(tokens generated, their text's bytes) from llama.cpp. Its per-token report joins a token that
    ends inside a UTF-8 character to the next one (so it can list fewer ids than it generated), drops
    such a token at the very end, and gives control tokens no bytes; the count and the bytes are exact."""
    r = server.handle_completions({"prompt": prompt, "n_predict": n, "temperature": 0, "logprobs": 1,
                                   "cache_prompt": False, "stream": False})
    assert "error" not in r, r
    return r["usage"]["completion_tokens"], b"".join(bytes(c["bytes"]) for c in r["choices"][0]["logprobs"]["content"])


def token_bytes(tok, ids: list[int]) -> bytes:
    """The bytes byte-level BPE tokens spell, control tokens spelling none (as llama.cpp reports them)."""
    byte_of, special = {c: b for b, c in bytes_to_unicode().items()}, set(tok.special_ids.values())
    return bytes(byte_of[c] for i in ids if i not in special for c in tok.hf.id_to_token(i))


def same_greedy_text(llama: tuple[int, bytes], tok, want: list[int]) -> bool:
    """llama.cpp generated as many tokens, spelling the same bytes (up to an unfinished character at the end)."""
    n, got = llama
    ours = token_bytes(tok, want)
    return n == len(want) and ours.startswith(got) and len(ours) - len(got) < 4


def test_llama_cpp_generates_the_greedy_tokens_of_our_qwen2_export(model, tokenizer, gguf_path):
    from tests.test_llamacpp import llama_cpp

    server = llama_cpp(gguf_path, 64)
    for text in PROMPTS:
        ids = tokenizer.encode(text)
        want = model.generate(torch.tensor([ids]), 16, temperature=0)[0, len(ids):].tolist()
        assert same_greedy_text(llama_cpp_greedy(server, ids, 16), tokenizer, want), text


@pytest.mark.slow
def test_compiled_engine_gives_the_eager_tokens_on_qwen2(model, tokenizer):
    ps = [tokenizer.encode(t) for t in PROMPTS]
    params = [SamplingParams(max_new_tokens=n, **GREEDY) for n in (10, 4, 7)]
    eager, compiled = Engine(model, tokenizer, quant="int4", max_batch=4), None
    try:
        compiled = Engine(model, tokenizer, quant="int4", compile=True, max_batch=4)
        assert compiled.compiled
        want = [c.token_ids for c in eager.generate(ps, params)]
        assert [c.token_ids for c in compiled.generate(ps, params)] == want  # the batched graph
        assert compiled.generate([ps[0]], params[0])[0].token_ids == want[0]  # the single-sequence graph
    finally:
        eager.close()
        if compiled is not None:
            compiled.close()

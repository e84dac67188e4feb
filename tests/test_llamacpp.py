"""A model trained by lmstack and exported to GGUF loads in llama.cpp (the `xllamacpp` wheel, in
process) and generates the same greedy tokens as our model, from token ids and from text that llama.cpp
tokenizes itself."""

import pytest
import torch
import xllamacpp

from lmstack.io.gguf_file import export_gguf


def llama_cpp(path, n_ctx: int) -> xllamacpp.Server:
    p = xllamacpp.CommonParams()
    p.model.path = str(path)
    p.n_ctx = n_ctx
    p.n_parallel = 1
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 2
    p.verbosity = 1  # errors only
    p.warmup = False
    return xllamacpp.Server(p)  # listens on an ephemeral loopback port; we call it in process


def greedy(server: xllamacpp.Server, prompt, n: int) -> list[int]:
    r = server.handle_completions({"prompt": prompt, "n_predict": n, "temperature": 0, "logprobs": 1,
                                   "cache_prompt": False, "stream": False})
    assert "error" not in r, r
    return [c["id"] for c in r["choices"][0]["logprobs"]["content"]]


def ours(model, ids: list[int], n: int) -> list[int]:
    return model.generate(torch.tensor([ids]), n, temperature=0.0)[0, len(ids):].tolist()


@pytest.fixture(scope="module")
def server(trained_gguf):
    model, path = trained_gguf
    return llama_cpp(path, model.config.max_seq_len)


@pytest.mark.parametrize("prompt", ["ROMEO:\n", "KING:\nGood night, sweet lady", "The queen doth"])
def test_llama_cpp_generates_our_greedy_tokens(trained_gguf, tokenizer, server, prompt):
    model, _ = trained_gguf
    ids = tokenizer.encode(prompt)
    n = 24
    want = ours(model, ids, n)
    assert greedy(server, ids, n) == want
    assert greedy(server, prompt, n) == want  # llama.cpp's own tokenization of the text agrees


def test_quantised_export_loads_in_llama_cpp(trained_gguf, tokenizer, tmp_path):
    model, _ = trained_gguf
    path = export_gguf(model, tokenizer, tmp_path / "q8.gguf", "q8_0")
    got = greedy(llama_cpp(path, model.config.max_seq_len), tokenizer.encode("ROMEO:\n"), 16)
    assert len(got) == 16 and all(0 <= i < tokenizer.vocab_size for i in got)
    assert got[:4] == ours(model, tokenizer.encode("ROMEO:\n"), 4)  # Q8_0 keeps the likeliest tokens first

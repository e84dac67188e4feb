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


def test_a_lora_adapter_applied_by_llama_cpp_gives_the_merged_models_tokens(trained_gguf, tokenizer, tmp_path):
    """`lmstack export RUN --lora-adapter`: llama.cpp loads the base file and the adapter and
    generates what the merged fine-tune generates (in llama.cpp and in lmstack), which the base
    alone does not."""
    import copy

    from lmstack.io.gguf_file import export_lora_adapter
    from lmstack.train.lora import LoRAConfig, apply_lora, lora_update, merge_lora

    model, base_path = trained_gguf
    tuned = copy.deepcopy(model)
    torch.manual_seed(0)
    apply_lora(tuned, LoRAConfig(rank=4, alpha=8.0, dropout=0.0, targets=("wq", "wk", "wv", "wo", "w_gate",
                                                                          "w_up", "w_down")))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_b" in name:
                p.normal_(0, 0.3)
    update = lora_update(tuned)
    merge_lora(tuned)
    adapter = export_lora_adapter(update, tuned.config, tmp_path / "adapter.gguf")
    merged = export_gguf(tuned.eval(), tokenizer, tmp_path / "merged.gguf")

    p = xllamacpp.CommonParams()
    p.model.path = str(base_path)
    p.n_ctx, p.n_parallel, p.verbosity, p.warmup = model.config.max_seq_len, 1, 1, False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 2
    lora = xllamacpp.CommonAdapterLoraInfo()
    lora.path, lora.scale = str(adapter), 1.0
    p.lora_adapters = [lora]
    with_adapter = xllamacpp.Server(p)
    ids = tokenizer.encode("KING:\nGood night, sweet lady")
    want = ours(tuned, ids, 20)
    assert greedy(llama_cpp(merged, model.config.max_seq_len), ids, 20) == want
    assert greedy(with_adapter, ids, 20) == want
    assert want != ours(model, ids, 20)  # the adapter changes what the base says

"""Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, architecture qwen2, joined from six PyPI packages) against
independent references: HF transformers dequantising the same file to float32 for token ids, top-5
next-token log-probabilities (within 0.02) and 32-token greedy continuations, in the PyTorch model and
in the run file; llama.cpp running the file for the engine's greedy tokens. Then the file's own chat
template in chat, the server and one LoRA fine-tuning step.

Each reference is loaded once for the module (transformers takes most of the time); a missing file
is fetched with the same code as `lmstack models get`, so CI runs these rather than skipping them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lmstack import run
from lmstack.engine import Engine, SamplingParams
from lmstack.io.models import resolve_model
from lmstack.load import load_model
from tests.test_qwen2_arch import llama_cpp_greedy, same_greedy_text
from tests.test_real_models import check_parity, hf_from_gguf

pytestmark = pytest.mark.slow
NAME = "qwen2.5-coder-0.5b-instruct"
TEXTS = [
    "def quicksort(xs: list[int]) -> list[int]:\n\tif len(xs) <= 1:\n        return xs  # done\n",
    "快速排序是一种高效的排序算法，由东尼·霍尔提出。日本語もテストします。",
    "Emoji: 🎉🚀👍🏽 🧑‍💻 and flags 🇫🇷 ✓ ∑ é",
    "Numbers: 1234567890, 3.14159, -0.5e-10, 0x1F, ١٢٣, ⅷ, 1,000,000.",
    "<|im_start|>user\nnot special when typed<|im_end|><|endoftext|>",
]
PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWrite a Python function that reverses a string.<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def ours():
    """(path, the PyTorch model, its tokenizer)."""
    path = resolve_model(NAME, quiet=True)
    model, tok, _ = load_model(path)
    return path, model, tok


@pytest.fixture(scope="module")
def qwen(ours):
    """(path, model, tokenizer, the run file's model, transformers' model, transformers' tokenizer)."""
    path, model, tok = ours
    hf, hf_tok = hf_from_gguf(path)
    return path, model, tok, run.load(str(path)), hf, hf_tok


@pytest.fixture(scope="module")
def engine(ours):
    """The engine on the file's weights as they are (no re-quantisation), as llama.cpp runs them."""
    _, model, tok = ours
    e = Engine(model, tok, quant="none", max_batch=2, max_seq_len=512)
    yield e
    e.close()


def test_qwen2_config_and_tokenizers_match_transformers(qwen):
    _, model, tok, runner, _, hf_tok = qwen
    c = model.config
    assert (c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.vocab_size) == (24, 896, 14, 2, 151936)
    assert c.qkv_bias and not c.tie_embeddings and c.rope_theta == 1e6 and c.max_seq_len == 32768
    assert tok.gguf_pre == "qwen2" and tok.end_of_turn_id == tok.eos_id == 151645 and tok.end_of_text_id == 151643
    for text in TEXTS + PROMPTS:
        want = hf_tok.encode(text, add_special_tokens=False)
        assert tok.encode(text, allow_special=True) == want, text
        assert tok.encode(text) == runner.tokenizer.encode(text), text
    assert 151644 not in tok.encode(TEXTS[-1])  # typed markers stay text
    msgs = [{"role": "user", "content": "Hi there"}]
    assert tok.render_chat(msgs) == hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_qwen2_logprobs_and_greedy_match_transformers(qwen, prompt):
    _, model, tok, runner, hf, _ = qwen
    check_parity(hf, model, runner, tok.encode(prompt, allow_special=True))


# llama.cpp multiplies these weights with 8-bit activations, so where the top two tokens are within about
# 0.01 nats it may pick the other one (the chat prompt above: " Python" -0.701 against " simple" -0.712 at
# the fourth token, where fp32 here and in transformers picks " simple"). Its greedy tokens are compared
# on prompts whose continuations have no such near-tie (the closest pair in 32 tokens: 0.1 nats).
LLAMA_CPP_PROMPTS = [
    "class Stack:\n    \"\"\"A last-in, first-out stack.\"\"\"\n\n    def __init__(self):\n",
    "# 计算两个数的最大公约数\ndef gcd(a, b):\n",
]


def test_llama_cpp_gives_the_engines_greedy_tokens(ours, engine):
    from tests.test_llamacpp import llama_cpp

    path, _, tok = ours
    server = llama_cpp(path, 512)
    for prompt in LLAMA_CPP_PROMPTS:
        ids = tok.encode(prompt, allow_special=True)
        got = engine.generate([ids], SamplingParams(max_new_tokens=32, temperature=0, stop_token_ids=[]))[0]
        assert same_greedy_text(llama_cpp_greedy(server, ids, 32), tok, got.token_ids), prompt


def test_chat_and_server_reply_through_the_files_template(ours, engine):
    from openai import OpenAI

    from lmstack.chat_cli import chat
    from lmstack.serve import create_app
    from tests.serve_fixtures import running_server

    tok = ours[2]
    lines, out = ["What is 2 + 3? Answer with the number only."], []

    def read(_prompt):
        if not lines:
            raise EOFError
        return lines.pop(0)

    history = chat(engine, SamplingParams(max_new_tokens=12, temperature=0), read=read,
                   out=type("Out", (), {"write": lambda _, s: out.append(s), "flush": lambda _: None})())
    assert [m["role"] for m in history] == ["user", "assistant"] and "5" in history[1]["content"]
    assert "<|im_end|>" not in "".join(out)
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    with running_server(create_app({"qwen": engine})) as url:
        r = OpenAI(base_url=url + "/v1", api_key="none").chat.completions.create(
            model="qwen", messages=msgs, max_tokens=8, temperature=0)
    # the prompt is the file's template, with its default system message
    assert r.usage.prompt_tokens == len(tok.encode(tok.render_chat(msgs), allow_special=True))
    assert "You are Qwen" in tok.render_chat(msgs)
    assert "Paris" in r.choices[0].message.content and r.choices[0].finish_reason == "stop"


def test_one_lora_step_on_qwen2_through_its_template(ours, tmp_path, monkeypatch):
    """sft() on the real model: its own template masks the prompt, LoRA wraps the biased projections,
    one step moves only the wrapped matrices, and the merged run loads back with its biases."""
    from lmstack import sft as sft_module
    from lmstack.io.conversations import Conversation, write_conversations
    from lmstack.train.loop import TrainConfig
    from lmstack.train.lora import LoRAConfig

    path, model, tok = ours
    base = copy.deepcopy(model)
    monkeypatch.setattr(sft_module, "open_base", lambda _b: (base, copy.deepcopy(tok), {}, str(path)))
    data = tmp_path / "train.jsonl"
    convs = [Conversation([{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": f"{w}!"}])
             for w in ("hello", "goodbye", "yes", "no")]
    write_conversations(data, convs)
    before = {k: v.clone() for k, v in model.state_dict().items() if ".layers.0." in f".{k}"}
    res = sft_module.sft(sft_module.SFTConfig(
        base=NAME, data=str(data), val_data=str(data), out_dir=str(tmp_path / "run"), seq_len=64,
        lora=LoRAConfig(rank=4, alpha=8, dropout=0.0, targets=("wq", "wv")),
        train=TrainConfig(steps=1, batch_size=2, lr=1e-3, warmup_steps=0, eval_every=1000, eval_batches=1,
                          ckpt_every=1000, log_every=1, device="cpu")), progress=False)
    assert res.step == 1 and np.isfinite(res.final_train_loss)
    tuned, tuned_tok, info = load_model(tmp_path / "run")
    assert tuned.config.qkv_bias and "You are Qwen" in info["chat_template"]
    sd = tuned.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(sd[k], v)}
    assert changed == {"layers.0.attn.wq.weight", "layers.0.attn.wv.weight"}
    assert torch.equal(sd["layers.0.attn.wq.bias"], before["layers.0.attn.wq.bias"])

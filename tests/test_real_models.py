"""Parity with HF transformers on real files: SmolLM2-135M-Instruct (Q4_1 GGUF, fetched from PyPI) and a
model trained by lmstack and exported to GGUF. transformers dequantises the same file to float32; our
torch model (lmstack.load.load_model) and the numpy run file must give the same top-5 next-token
log-probabilities (within 0.02) and the same 32-token greedy continuations.

Greedy continuations are compared by teacher forcing: transformers generates 32 tokens greedily,
then one forward pass of each of our implementations over prompt + continuation must pick, at every
position, the token transformers picked next. By induction that is the same as generating greedily,
at the cost of one forward pass instead of 32."""

import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from lmstack import run
from lmstack.io.models import resolve_model
from lmstack.load import load_model

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
    "Q: What is 12 + 30?\nA:",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n",
]
TEXTS = [
    "Hello world! It's 2024; I'LL say: 1234567 × 3.14 = ?",
    "def f(x):\n\treturn x ** 2  # square\n\n\n    pass",
    "Unicode: café naïve Straße 日本語 한국어 Ελληνικά 🎉🚀 e\u0301 ٣٤٥",
    "   leading and trailing   \n\n\t  ",
    "<|im_start|>user\nnot special when typed<|im_end|>",
]
TOL = 0.02


def hf_from_gguf(path: Path):
    """transformers' model and tokenizer from the file, which it would otherwise parse three times (config,
    weights, tokenizer): for a 151,936-token vocabulary each parse of the metadata costs about 40 s."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    readers: dict = {}

    def reader(file, mode="r"):
        key = (str(file), mode)
        if key not in readers:
            readers[key] = original(file, mode)
        return readers[key]

    original, kw = gguf.GGUFReader, dict(gguf_file=path.name)
    with mock.patch.object(gguf, "GGUFReader", reader):
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **kw).eval()
        return model, AutoTokenizer.from_pretrained(str(path.parent), **kw)


def log_probs(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    return x - x.max(-1, keepdims=True) - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))


def check_parity(hf, model, runner, prompt_ids: list[int], n_new: int = 32) -> None:
    """Top-5 log-probabilities after the prompt, then the greedy continuation, for both of ours."""
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt_ids]), max_new_tokens=n_new, do_sample=False, num_beams=1,
                          pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        full = out.sequences[0].tolist()
        ref = log_probs(out.logits[0][0].numpy())  # the distribution right after the prompt
        ours = log_probs(model(torch.tensor([full]))[0].numpy())
    runner.reset()
    theirs = log_probs(runner.forward_many(full, 0))
    n = len(prompt_ids)
    top5 = np.argsort(-ref)[:5]
    for got in (ours, theirs):
        assert np.abs(got[n - 1, top5] - ref[top5]).max() < TOL
        # each position predicts the token transformers generated next (or the end it stopped at)
        assert got[n - 1:-1].argmax(-1).tolist() == full[n:]
    assert len(full) - n >= min(n_new, 8)


# ------------------------------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="module")
def smollm2():
    path = resolve_model("smollm2-135m-instruct", quiet=True)
    model, tok, _ = load_model(path)
    hf, hf_tok = hf_from_gguf(path)
    return path, model, tok, run.load(str(path)), hf, hf_tok


@pytest.mark.slow
def test_smollm2_tokenizers_match_transformers(smollm2):
    """transformers' GGUF reader does not know the pre-tokenizer name `smollm` and falls back to GPT-2's
    split; SmolLM2's own tokenizer.json (and llama.cpp) first cut every digit off alone. The reference
    is transformers' tokenizer from the file with that split restored; the difference shows on digits
    the vocabulary has merges for (here ٣٤٥)."""
    from tokenizers import pre_tokenizers

    _, _, tok, runner, _, hf_tok = smollm2
    assert tok.gguf_pre == "smollm" and tok.eos_id == 2 and 2 in tok.stop_ids
    hf_tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    for text in TEXTS + PROMPTS:
        want = hf_tok.encode(text, add_special_tokens=False)
        assert tok.encode(text, allow_special=True) == want, text
        assert tok.encode(text) == runner.tokenizer.encode(text), text
    msgs = [{"role": "user", "content": "Hi there"}]
    assert tok.render_chat(msgs) == hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_smollm2_logprobs_and_greedy_match_transformers(smollm2, prompt):
    _, model, tok, runner, hf, _ = smollm2
    check_parity(hf, model, runner, tok.encode(prompt, allow_special=True))


@pytest.mark.slow
def test_run_file_chats_with_smollm2(smollm2):
    path = smollm2[0]
    r = subprocess.run([sys.executable, str(Path(run.__file__)), str(path), "--chat", "-n", "24", "--temperature", "0"],
                       input="What is the capital of France?\n", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout and "<|im_end|>" not in r.stdout and "tokens/s" in r.stderr


# ------------------------------------------------------------------------------------- lmstack-trained
@pytest.mark.slow
def test_lmstack_trained_model_matches_transformers_reading_our_gguf(trained_gguf, tokenizer):
    model, path = trained_gguf
    hf, hf_tok = hf_from_gguf(path)
    runner = run.load(str(path))
    for prompt in ["ROMEO:\n", "KING:\nGood night, sweet", "The queen doth love", "HAMLET:\nThou art", "lady\n\n"]:
        ids = tokenizer.encode(prompt)
        assert hf_tok.encode(prompt, add_special_tokens=False) == ids
        check_parity(hf, model, runner, ids, n_new=32)
        greedy = model.generate(torch.tensor([ids]), 32, temperature=0.0)[0, len(ids):].tolist()
        assert list(run.generate(runner, ids, 32, temperature=0.0, stop_ids=set())) == greedy


def test_prompt_longer_than_the_context_is_one_clear_error(trained_gguf):
    _, path = trained_gguf
    r = subprocess.run([sys.executable, str(Path(run.__file__)), str(path), "ROMEO " * 100, "-n", "4"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: the prompt has") and r.stderr.count("\n") == 1
    r = subprocess.run([sys.executable, "-m", "lmstack", "sample", str(path), "ROMEO " * 100],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "context is 64" in r.stderr and r.stderr.count("\n") == 1

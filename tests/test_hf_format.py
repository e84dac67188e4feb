"""Hugging Face checkpoints: an lmstack model exported with `export_hf` loads in `transformers` with the
same logits, tokens and chat formatting, and such a directory loads back into lmstack unchanged."""

import json
import subprocess
import sys

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.io.hf import export_hf, halves_to_pairs, pairs_to_halves
from lmstack.load import load_model
from lmstack.model import Transformer
from tests.conftest import tiny_config

TEXTS = ["ROMEO:\nWhat light through yonder window breaks?", "héllo wörld 日本語 🎉 123", "  x\n\n\ty  "]


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    m = Transformer(tiny_config(tokenizer.vocab_size, dim=64, n_heads=4, n_kv_heads=2, max_seq_len=64,
                                rope_theta=500.0, tie_embeddings=False))
    with torch.no_grad():  # larger weights than at init, so logits are O(1..10) and differences show
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return m.eval()


@pytest.fixture(scope="module")
def hf_dir(model, tokenizer, tmp_path_factory):
    return export_hf(model, tokenizer, tmp_path_factory.mktemp("hf") / "ckpt")


def test_rope_permutation_is_a_permutation_and_its_inverse():
    w = torch.arange(4 * 8 * 3, dtype=torch.float32).reshape(4 * 8, 3)
    assert torch.equal(halves_to_pairs(pairs_to_halves(w, 4), 4), w)
    assert not torch.equal(pairs_to_halves(w, 4), w)
    assert torch.equal(pairs_to_halves(w, 4).sort(0).values, w.sort(0).values)


def test_transformers_loads_the_export_with_the_same_logits(model, hf_dir):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    ids = torch.tensor([[5, 100, 7, 250, 3, 17, 64, 9, 200, 41, 1, 300]])
    with torch.no_grad():
        want = model(ids)
        got = hf(ids).logits
    assert (got - want).abs().max() < 1e-4
    assert not hf.config.tie_word_embeddings


def test_transformers_tokenizer_and_chat_template_agree(tokenizer, hf_dir):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(hf_dir))
    for text in TEXTS:
        assert ref.encode(text, add_special_tokens=False) == tokenizer.encode(text)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    text = ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == tokenizer.render_chat(msgs)
    assert ref.encode(text, add_special_tokens=False) == tokenizer.encode(text, allow_special=True)


def test_the_export_loads_back_into_lmstack(model, tokenizer, hf_dir):
    back, tok, info = load_model(hf_dir)
    assert info["model_type"] == "llama" and back.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert tok.encode(TEXTS[1]) == tokenizer.encode(TEXTS[1]) and tok.stop_ids == tokenizer.stop_ids


def test_cli_export_hf(tmp_path, model, tokenizer):
    from lmstack.io.gguf_file import export_gguf

    src = export_gguf(model, tokenizer, tmp_path / "m.gguf")
    r = subprocess.run([sys.executable, "-m", "lmstack", "export", str(src), "--format", "hf",
                        "--out", str(tmp_path / "hf")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["num_key_value_heads"] == 2
    back, _, _ = load_model(tmp_path / "hf")
    assert torch.equal(back.layers[0].attn.wq.weight, model.layers[0].attn.wq.weight)


def test_bad_checkpoints_give_one_clear_error(hf_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(hf_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(LmstackError, match="unsupported architecture 'gpt2'"):
        load_model(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}))
    with pytest.raises(LmstackError, match="rope scaling 'yarn'"):
        load_model(bad)
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(LmstackError, match="cannot read"):
        load_model(bad)
    (bad / "config.json").unlink()
    with pytest.raises(LmstackError, match="neither a training run"):
        load_model(bad)

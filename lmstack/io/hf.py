"""Hugging Face checkpoints: read a Llama or Qwen2 directory (config.json + *.safetensors +
tokenizer.json) into our Transformer, and write an lmstack model as one that `transformers` loads
(Qwen2ForCausalLM when it has Q/K/V biases, LlamaForCausalLM otherwise).

The only real conversion is RoPE's layout. HF's models rotate the two halves of each head,
(x[i], x[i + d/2]); ours (llama.cpp's and Meta's) rotates adjacent pairs (x[2i], x[2i+1]). The same
model in the two layouts differs by a permutation of the rows of each head in the Q and K weights
(and Qwen2's Q and K biases), the one llama.cpp's converter applies: `halves_to_pairs` and its
inverse (gguf_file.py applies them to `qwen2` files, which keep the halves layout). Everything else maps name to name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from lmstack.errors import LmstackError
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import ModelConfig


def halves_to_pairs(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Q or K rows (or biases) laid out for RoPE on halves (x[i], x[i + d/2]: HF, GGUF `qwen2`) ->
    laid out for RoPE on adjacent pairs (x[2i], x[2i+1]: this model). llama.cpp's converter applies
    this permutation to `llama` models."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def pairs_to_halves(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of halves_to_pairs: this model's Q or K rows in the halves layout."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn.wq.weight",
    "self_attn.k_proj.weight": "attn.wk.weight",
    "self_attn.v_proj.weight": "attn.wv.weight",
    "self_attn.o_proj.weight": "attn.wo.weight",
    "self_attn.q_proj.bias": "attn.wq.bias",
    "self_attn.k_proj.bias": "attn.wk.bias",
    "self_attn.v_proj.bias": "attn.wv.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn.w_gate.weight",
    "mlp.up_proj.weight": "ffn.w_up.weight",
    "mlp.down_proj.weight": "ffn.w_down.weight",
}
_TOP = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight",
        "lm_head.weight": "output.weight"}


def is_hf_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").exists() and any(path.glob("*.safetensors"))


def _rope_heads(cfg: ModelConfig, name: str) -> int | None:
    """Heads of a Q or K tensor (our name), whose rows HF lays out by halves; None for the rest."""
    return cfg.n_heads if ".attn.wq." in name else cfg.n_kv_heads if ".attn.wk." in name else None


def _config(path: Path, c: dict) -> ModelConfig:
    archs = c.get("architectures") or []
    qwen2 = c.get("model_type") == "qwen2" or "Qwen2ForCausalLM" in archs
    if not qwen2 and c.get("model_type") != "llama" and "LlamaForCausalLM" not in archs:
        raise LmstackError(f"{path}: unsupported architecture {c.get('model_type')!r} (supported: llama, qwen2)")
    if c.get("attention_bias") or c.get("mlp_bias"):
        raise LmstackError(f"{path}: Llama with bias terms is not supported")
    if qwen2 and c.get("use_sliding_window") and c.get("sliding_window", 0) < c.get("max_position_embeddings", 0):
        raise LmstackError(f"{path}: Qwen2 with sliding-window attention is not supported")
    if c.get("hidden_act", "silu") != "silu":
        raise LmstackError(f"{path}: activation {c['hidden_act']!r} is not supported (supported: silu)")
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "linear"):
        raise LmstackError(f"{path}: rope scaling {kind!r} is not supported (supported: linear)")
    dim, n_heads = c["hidden_size"], c["num_attention_heads"]
    if c.get("head_dim") not in (None, dim // n_heads):
        raise LmstackError(f"{path}: head_dim {c['head_dim']} differs from hidden_size / num_attention_heads")
    try:
        return ModelConfig(
            vocab_size=c["vocab_size"], dim=dim, n_layers=c["num_hidden_layers"], n_heads=n_heads,
            n_kv_heads=c.get("num_key_value_heads") or n_heads, ffn_dim=c["intermediate_size"],
            max_seq_len=c.get("max_position_embeddings", 2048),
            rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 10000.0))),
            rope_scaling=float(rope.get("factor", 1.0)) if kind == "linear" else 1.0,
            norm_eps=float(c.get("rms_norm_eps", 1e-6)), tie_embeddings=bool(c.get("tie_word_embeddings", False)),
            qkv_bias=qwen2)
    except (KeyError, ValueError) as e:
        raise LmstackError(f"{path}: config.json is incomplete or inconsistent ({e})") from None


def _token_id(tok_cfg: dict, key: str, hf) -> int | None:
    v = tok_cfg.get(key)
    v = v.get("content") if isinstance(v, dict) else v
    return hf.token_to_id(v) if isinstance(v, str) else None


def _tokenizer(path: Path, config: dict) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    if not (path / "tokenizer.json").exists():
        raise LmstackError(f"{path}: no tokenizer.json (only the fast-tokenizer format is supported)")
    try:
        hf = HFTokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # tokenizers raises plain Exceptions
        raise LmstackError(f"{path}/tokenizer.json: {str(e).splitlines()[0]}") from None
    tc = json.loads((path / "tokenizer_config.json").read_text()) if (path / "tokenizer_config.json").exists() else {}
    template = tc.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if (path / "chat_template.jinja").exists():
        template = (path / "chat_template.jinja").read_text()
    gen_file = path / "generation_config.json"
    gen = json.loads(gen_file.read_text()) if gen_file.exists() else {}
    eos = gen.get("eos_token_id", config.get("eos_token_id"))
    eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    eos_id = _token_id(tc, "eos_token", hf)
    eos_id = eos_id if eos_id is not None else (eos_ids[0] if eos_ids else None)
    bos_id = _token_id(tc, "bos_token", hf)
    bos_id = bos_id if bos_id is not None else gen.get("bos_token_id", config.get("bos_token_id"))
    post = json.dumps(json.loads(hf.to_str()).get("post_processor"))
    add_bos = tc.get("add_bos_token", bos_id is not None and hf.id_to_token(bos_id or 0) in post)
    turn_end = next((i for i in eos_ids if i != eos_id), None)
    return Tokenizer(hf, chat_template=template, bos_id=bos_id, eos_id=eos_id, end_of_turn_id=turn_end, add_bos=add_bos)


def read_hf(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer, dict]:
    """(config, float32 state dict in our layout, tokenizer, config.json) of a HF Llama or Qwen2 checkpoint."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        raw_cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LmstackError(f"{path}/config.json: {e}") from None
    cfg = _config(path, raw_cfg)
    weights: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        try:
            weights.update(load_file(str(f)))
        except Exception as e:  # safetensors raises its own error types on corrupt files
            raise LmstackError(f"{f}: cannot read ({str(e).splitlines()[0]})") from None
    sd = {}
    for name, t in weights.items():
        if name in _TOP:
            ours = _TOP[name]
        else:
            parts = name.split(".", 3)  # model.layers.{i}.rest
            if len(parts) < 4 or parts[:2] != ["model", "layers"] or parts[3] not in _LAYER:
                if name.endswith("rotary_emb.inv_freq"):
                    continue
                raise LmstackError(f"{path}: unexpected tensor {name!r} in the checkpoint")
            ours = f"layers.{parts[2]}.{_LAYER[parts[3]]}"
        t = t.float()
        sd[ours] = t if (heads := _rope_heads(cfg, ours)) is None else halves_to_pairs(t, heads)
    if "output.weight" not in sd:
        cfg.tie_embeddings = True
        sd["output.weight"] = sd.get("tok_embeddings.weight")
    return cfg, sd, _tokenizer(path, raw_cfg), raw_cfg


def export_hf(model: torch.nn.Module, tok: Tokenizer, out_dir: str | Path) -> Path:
    """Write `model` as a HF Llama (or, with Q/K/V biases, Qwen2) checkpoint directory (float32
    safetensors), atomically."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer as HFTokenizer

    cfg: ModelConfig = model.config
    out_dir = Path(out_dir)
    sd = {}
    for key, t in model.state_dict().items():
        if key.startswith("rope_") or (key == "output.weight" and cfg.tie_embeddings):
            continue
        t = t.detach().float().cpu()
        if (heads := _rope_heads(cfg, key)) is not None:
            t = pairs_to_halves(t, heads)
        hf_name = {v: k for k, v in _TOP.items()}.get(key)
        if hf_name is None:
            _, i, rest = key.split(".", 2)
            hf_name = f"model.layers.{i}." + {v: k for k, v in _LAYER.items()}[rest]
        sd[hf_name] = t.contiguous()
    name = lambda i: tok.hf.id_to_token(i) if i is not None else None
    bos = tok.bos_id if tok.bos_id is not None else tok.end_of_text_id
    arch, kind = ("Qwen2ForCausalLM", "qwen2") if cfg.qkv_bias else ("LlamaForCausalLM", "llama")
    config = {
        "architectures": [arch], "model_type": kind, "hidden_act": "silu",
        "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
        "rope_scaling": {"rope_type": "linear", "factor": cfg.rope_scaling} if cfg.rope_scaling != 1.0 else None,
        "tie_word_embeddings": cfg.tie_embeddings, "vocab_size": cfg.vocab_size, "attention_bias": False,
        "mlp_bias": False, "bos_token_id": bos, "eos_token_id": tok.eos_id, "torch_dtype": "float32",
    }
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": name(bos), "eos_token": name(tok.eos_id),
        "pad_token": name(tok.special_ids.get("<|pad|>", tok.eos_id)), "add_bos_token": tok.add_bos,
        "add_eos_token": False, "clean_up_tokenization_spaces": False, "model_max_length": cfg.max_seq_len,
        "chat_template": tok.chat_template,
    }
    gen = {"bos_token_id": bos, "eos_token_id": sorted(tok.stop_ids)}
    hf = HFTokenizer.from_str(tok.hf.to_str())
    hf.encode_special_tokens = False  # transformers must turn the chat template's markers into their ids
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        hf.save(str(tmp / "tokenizer.json"))
        for fname, obj in (("config.json", config), ("tokenizer_config.json", tok_cfg),
                           ("generation_config.json", gen)):
            (tmp / fname).write_text(json.dumps(obj, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir

"""The parameters file: GGUF export and import for the package (run.py keeps its own small reader).

Tensor names and metadata keys are llama.cpp's for architecture `llama`, and RoPE in model.py uses
llama.cpp's pair layout, so weights are copied as they are: no Q/K permutation in either direction.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io.chat_template import CHATML_TEMPLATE
from lmstack.io.tokenizer import EOT, Tokenizer
from lmstack.model import ModelConfig

DTYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
          "q8_0": gguf.GGMLQuantizationType.Q8_0}
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}

_LAYER_NAMES = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.wq.weight": "attn_q.weight",
    "attn.wk.weight": "attn_k.weight",
    "attn.wv.weight": "attn_v.weight",
    "attn.wo.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn.w_gate.weight": "ffn_gate.weight",
    "ffn.w_up.weight": "ffn_up.weight",
    "ffn.w_down.weight": "ffn_down.weight",
}
_TOP_NAMES = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
              "output.weight": "output.weight"}


def gguf_name(name: str) -> str:
    """Our state-dict name -> llama.cpp tensor name."""
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    _, i, rest = name.split(".", 2)  # layers.{i}.rest
    return f"blk.{i}.{_LAYER_NAMES[rest]}"


def torch_name(name: str) -> str:
    """llama.cpp tensor name -> our state-dict name."""
    for ours, theirs in _TOP_NAMES.items():
        if name == theirs:
            return ours
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk":
        for ours, theirs in _LAYER_NAMES.items():
            if parts[2] == theirs:
                return f"layers.{parts[1]}.{ours}"
    raise LmstackError(f"unexpected tensor {name!r} in GGUF file")


def export_gguf(model: torch.nn.Module, tok: Tokenizer, path: str | Path, dtype: str = "f32",
                name: str = "lmstack", chat_template: str = CHATML_TEMPLATE) -> Path:
    """Write weights, hyperparameters, tokenizer and chat template into one GGUF file (atomically)."""
    if dtype not in DTYPES:
        raise LmstackError(f"unknown export type {dtype!r}; choose from {', '.join(DTYPES)}")
    cfg: ModelConfig = model.config
    if tok.vocab_size != cfg.vocab_size:
        raise LmstackError(f"tokenizer has {tok.vocab_size} tokens but the model expects {cfg.vocab_size}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(name)
    w.add_file_type(FILE_TYPES[dtype])
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.dim)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.ffn_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tok.tokens())
    w.add_token_types(tok.token_types())
    w.add_token_merges(tok.merges())
    eot = tok.eot_id
    w.add_bos_token_id(eot)
    w.add_eos_token_id(eot)  # a document ends at <|endoftext|>; a chat turn at <|im_end|> (eot)
    w.add_eot_token_id(tok.special_ids.get("<|im_end|>", eot))
    w.add_pad_token_id(tok.special_ids.get("<|pad|>", eot))
    w.add_add_bos_token(False)
    w.add_chat_template(chat_template)

    qtype = DTYPES[dtype]
    for key, t in model.state_dict().items():
        if key == "output.weight" and cfg.tie_embeddings:
            continue
        if key.startswith("rope_"):
            continue
        arr = t.detach().float().cpu().numpy()
        if arr.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gguf_name(key), arr)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gguf_name(key), arr.astype(np.float16))
        else:
            if arr.shape[-1] % 32:
                raise LmstackError(f"{key}: row length {arr.shape[-1]} is not a multiple of 32, needed by Q8_0")
            w.add_tensor(gguf_name(key), gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


@dataclass
class GGUFModel:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict
    tensor_types: dict[str, str]


def _check_header(path: Path) -> None:
    if not path.exists():
        raise LmstackError(f"no such file: {path}")
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24:
        raise LmstackError(f"{path}: truncated GGUF file ({len(head)} bytes)")
    if head[:4] != b"GGUF":
        raise LmstackError(f"{path}: not a GGUF file (bad magic {head[:4]!r})")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in (2, 3):
        raise LmstackError(f"{path}: unsupported GGUF version {version} (supported: 2, 3)")


def _field_value(field: gguf.ReaderField):
    types = field.types
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        if types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    return field.parts[field.data[0]].tolist()[0]


def _f32(v: float) -> float:
    """GGUF stores these as float32: undo the rounding noise (1e-5 reads back as 9.99999974e-06)."""
    return float(f"{float(v):.7g}")


def read_gguf(path: str | Path) -> GGUFModel:
    """Read a `llama` GGUF file into a ModelConfig and float32 tensors, with one-line errors."""
    path = Path(path)
    _check_header(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, KeyError, IndexError, OverflowError, struct.error) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "not a valid GGMLQuantizationType" in msg or "quant" in msg.lower():
            raise LmstackError(f"{path}: unknown or unsupported tensor type ({msg})") from None
        if "cannot reshape array of size" in msg:  # a tensor's bytes lie beyond the end of the file
            raise LmstackError(f"{path}: tensor data runs past the end of the file (truncated?)") from None
        raise LmstackError(f"{path}: corrupt or truncated GGUF file ({msg})") from None
    meta = {name: _field_value(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise LmstackError(f"{path}: tensor {t.name} runs past the end of the file (truncated?)")
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise LmstackError(f"{path}: unsupported architecture {arch!r} (supported: llama)")

    def m(key, default=None):
        v = meta.get(f"llama.{key}", default)
        if v is None:
            raise LmstackError(f"{path}: missing metadata llama.{key}")
        return v

    tensors, types = {}, {}
    for t in reader.tensors:
        try:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            raise LmstackError(f"{path}: tensor {t.name} has unsupported type {t.tensor_type.name}") from None
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        tensors[torch_name(t.name)] = torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape))
        types[t.name] = t.tensor_type.name
    tied = "output.weight" not in tensors
    emb = tensors.get("tok_embeddings.weight")
    if emb is None:
        raise LmstackError(f"{path}: no token_embd.weight tensor")
    n_heads = int(m("attention.head_count"))
    cfg = ModelConfig(
        vocab_size=emb.shape[0], dim=int(m("embedding_length")), n_layers=int(m("block_count")),
        n_heads=n_heads, n_kv_heads=int(m("attention.head_count_kv", n_heads)),
        ffn_dim=int(m("feed_forward_length")), max_seq_len=int(m("context_length")),
        rope_theta=_f32(m("rope.freq_base", 10000.0)),
        norm_eps=_f32(m("attention.layer_norm_rms_epsilon", 1e-5)), tie_embeddings=tied,
    )
    if tied:
        tensors["output.weight"] = emb
    return GGUFModel(cfg, tensors, meta, types)


def tokenizer_from_gguf(meta: dict) -> Tokenizer:
    """Rebuild the byte-level BPE tokenizer from GGUF vocabulary and merges."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise LmstackError(f"unsupported tokenizer model {meta.get('tokenizer.ggml.model')!r} (supported: gpt2)")
    tokens, types = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type") or []
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    hf = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    specials = [tokens[i] for i, ty in enumerate(types) if ty == 3]
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if EOT not in specials:
        raise LmstackError(f"GGUF vocabulary has no {EOT} control token")
    return Tokenizer(hf)

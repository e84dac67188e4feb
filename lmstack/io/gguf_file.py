"""The parameters file: GGUF export and import for the package (run.py keeps its own small reader).

Tensor names and metadata keys are llama.cpp's for architectures `llama` and `qwen2` (a model with
`qkv_bias`: the same tensors plus Q/K/V biases). RoPE in model.py uses llama.cpp's pair layout for
`llama`, so those weights are copied as they are; `qwen2` files rotate halves, so their Q and K rows
are permuted on the way in and out (hf.halves_to_pairs), blocks and all for raw tensors.

Reading parses the header here (`_parse_header`) and dequantises tensors to float32 with the `gguf`
package (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants among others); `raw_tensors`
gives the quantised blocks untouched for a runtime that computes on them. Metadata handled: tied or separate
output matrix, grouped-query attention, rope theta, linear rope scaling, RMS epsilon, context length.
Not supported, with a one-line error: other architectures, partial rotary dimensions, rope scaling
other than linear (YaRN, Llama 3.1 frequency factors), and weights that would not fit in memory.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io.files import atomic_path
from lmstack.io.hf import halves_to_pairs, pairs_to_halves
from lmstack.io.tokenizer import DEFAULT_PRE, IGNORE_MERGES, Tokenizer, byte_level_pre_tokenizer
from lmstack.model import ModelConfig

DTYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
          "q8_0": gguf.GGMLQuantizationType.Q8_0}
# tensor types read_gguf dequantises (with the gguf package), each tested against its reference
READ_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}

_LAYER_NAMES = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.wq.weight": "attn_q.weight",
    "attn.wk.weight": "attn_k.weight",
    "attn.wv.weight": "attn_v.weight",
    "attn.wo.weight": "attn_output.weight",
    "attn.wq.bias": "attn_q.bias",
    "attn.wk.bias": "attn_k.bias",
    "attn.wv.bias": "attn_v.bias",
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
                name: str = "lmstack", chat_template: str | None = None) -> Path:
    """Write weights, hyperparameters, tokenizer and chat template into one GGUF file (atomically).
    The chat template defaults to the tokenizer's own (ChatML for lmstack vocabularies)."""
    if dtype not in DTYPES:
        raise LmstackError(f"unknown export type {dtype!r}; choose from {', '.join(DTYPES)}")
    cfg: ModelConfig = model.config
    if tok.vocab_size > cfg.vocab_size:
        raise LmstackError(f"tokenizer has {tok.vocab_size} tokens but the model expects {cfg.vocab_size}")
    path = Path(path)
    with atomic_path(path) as tmp:
        _write_gguf(gguf.GGUFWriter(str(tmp), architecture(cfg)), model, tok, name, dtype, chat_template)
    return path


def export_lora_adapter(update: dict[str, torch.Tensor], cfg: ModelConfig, path: str | Path) -> Path:
    """A LoRA run's factors (train/lora.py `lora_update`) as a llama.cpp adapter file, for
    `llama-cli -m <base>.gguf --lora <this>.gguf`: the base file stays as it was, quantised, and the
    update is applied beside it in float, as lmstack's engine does at int4 (docs/security.md).
    B carries the LoRA scale already, so the file's alpha equals the rank (a scale of 1)."""
    pairs = sorted(k[:-2] for k in update if k.endswith(".a"))
    ranks = {int(update[f"{k}.a"].shape[0]) for k in pairs}
    if not pairs or len(ranks) != 1 or any(f"{k}.b" not in update for k in pairs):
        raise LmstackError("a LoRA adapter needs factor pairs of one rank (<layer>.a and <layer>.b)")
    path = Path(path)
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(str(tmp), architecture(cfg))
        w.add_type("adapter")
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", float(ranks.pop()))
        for layer in pairs:
            key = f"{layer}.weight"
            a, b = update[f"{layer}.a"].float(), update[f"{layer}.b"].float()
            if (heads := _rope_heads(cfg, key)) is not None:  # B's rows are the matrix's output rows
                b = pairs_to_halves(b, heads)
            w.add_tensor(f"{gguf_name(key)}.lora_a", a.contiguous().numpy())
            w.add_tensor(f"{gguf_name(key)}.lora_b", b.contiguous().numpy())
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path


def _write_gguf(w, model, tok: Tokenizer, name: str, dtype: str, chat_template: str | None) -> None:
    cfg: ModelConfig = model.config
    w.add_name(name)
    w.add_file_type(FILE_TYPES[dtype])
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.dim)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.ffn_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    if cfg.rope_scaling != 1.0:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(cfg.rope_scaling)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    _add_tokenizer(w, tok, cfg.vocab_size)
    w.add_chat_template(chat_template or tok.chat_template)

    qtype = DTYPES[dtype]
    for key, t in model.state_dict().items():
        if key == "output.weight" and cfg.tie_embeddings:
            continue
        if key.startswith("rope_"):
            continue
        t = t.detach().float().cpu()
        if (heads := _rope_heads(cfg, key)) is not None:
            t = pairs_to_halves(t, heads)
        arr = t.numpy()
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


def _add_tokenizer(w: gguf.GGUFWriter, tok: Tokenizer, n_vocab: int) -> None:
    """Vocabulary, merges or scores, token types and special ids, as llama.cpp expects them.
    A vocabulary shorter than the embedding (padded for speed) is filled with unused control tokens."""
    tokens, types = tok.tokens(), tok.token_types()
    pad = n_vocab - len(tokens)
    tokens += [f"<|unused_{i}|>" for i in range(pad)]
    types += [3] * pad
    if tok.kind == "spm":
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_scores(list(tok.scores or _scores_from_merges(tok)) + [0.0] * pad)
        w.add_add_space_prefix(_prepends_space(tok))
    else:
        if tok.gguf_pre is None:
            raise LmstackError("cannot export this tokenizer to GGUF: its pre-tokenization is not one llama.cpp "
                               "knows by name (gpt-2, smollm, llama-bpe, qwen2, ...)")
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2" if tok.gguf_pre == "gpt2" else tok.gguf_pre)
        w.add_token_merges(tok.merges())
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_bos_token_id(tok.bos_id if tok.bos_id is not None else tok.end_of_text_id)
    w.add_eos_token_id(tok.eos_id)  # lmstack: a document ends at <|endoftext|> (eos), a chat turn at <|im_end|>
    if tok.end_of_turn_id is not None:  # GGUF's name for the end of a turn is eot
        w.add_eot_token_id(tok.end_of_turn_id)
    w.add_pad_token_id(tok.special_ids.get("<|pad|>", tok.eos_id))
    w.add_add_bos_token(tok.add_bos)


def _prepends_space(tok: Tokenizer) -> bool:
    """Whether a SentencePiece-style tokenizer puts '\u2581' before the text (GGUF add_space_prefix)."""
    desc = json.loads(tok.hf.to_str())
    norm, pre = desc.get("normalizer") or {}, desc.get("pre_tokenizer") or {}
    steps = norm.get("normalizers", [norm])
    return any(st.get("type") == "Prepend" for st in steps) or pre.get("prepend_scheme") in ("first", "always")


def _scores_from_merges(tok: Tokenizer) -> list[float]:
    """SentencePiece scores for a BPE vocabulary: the earlier a token's merge, the higher its score."""
    scores = [0.0] * tok.vocab_size
    vocab = tok.hf.get_vocab(with_added_tokens=False)
    for rank, m in enumerate(tok.merges()):
        a, b = m.split(" ", 1)
        if a + b in vocab and scores[vocab[a + b]] == 0.0:
            scores[vocab[a + b]] = -float(rank + 1)
    n = len(tok.merges())
    for t, i in vocab.items():
        if scores[i] == 0.0 and len(t) == 1:
            scores[i] = -float(n + i)  # single characters come after every merge
    return scores


def _rope_heads(cfg: ModelConfig, name: str) -> int | None:
    """Heads of a Q or K tensor (our name) that a `qwen2` file stores in the halves layout; else None."""
    if not cfg.qkv_bias:
        return None
    return cfg.n_heads if ".attn.wq." in name else cfg.n_kv_heads if ".attn.wk." in name else None


def _pairs_order(cfg: ModelConfig, name: str, rows: int) -> np.ndarray | None:
    """The row order that puts a tensor of the file into this model's RoPE layout (None: as it is).
    An order of rows, not arithmetic, so it applies to quantised blocks too: rows are independent."""
    heads = _rope_heads(cfg, name)
    return None if heads is None else halves_to_pairs(torch.arange(rows), heads).numpy()


@dataclass
class GGUFModel:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict
    tensor_types: dict[str, str]


def _check_header(path: Path) -> None:
    if not path.exists():
        raise LmstackError(f"no such file: {path}")
    if path.is_dir():
        raise LmstackError(f"{path} is a directory, not a GGUF file")
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24:
        raise LmstackError(f"{path}: truncated GGUF file ({len(head)} bytes)")
    if head[:4] != b"GGUF":
        raise LmstackError(f"{path}: not a GGUF file (bad magic {head[:4]!r})")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in (2, 3):
        raise LmstackError(f"{path}: unsupported GGUF version {version} (supported: 2, 3)")


# struct formats of the GGUF metadata scalar types (8 = string and 9 = array are read apart); ggml
# allows 4 dimensions
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
MAX_DIMS, MAX_NESTING = 4, 8


class _Cursor:
    """Reads the header of a memory-mapped file, every length checked against the bytes that are left."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"{what} needs {n} bytes at offset {self.pos}, past the end of the file")
        self.pos += n
        return self.pos - n

    def u(self, fmt: str, what: str) -> int:
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.u("<Q", what)
        return self.buf[self.take(n, what):self.pos].decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str, depth: int = 0):
        if depth > MAX_NESTING:
            raise ValueError(f"{key!r} nests arrays more than {MAX_NESTING} deep")
        if vtype in _SCALARS:
            return self.u(_SCALARS[vtype], key)
        if vtype == 8:
            return self.string(key)
        if vtype != 9:
            raise ValueError(f"unknown metadata value type {vtype} for {key!r}")
        etype, count = self.u("<I", key), self.u("<Q", key)
        if etype in _SCALARS:  # numbers: one read for the whole array
            dtype = np.dtype(_SCALARS[etype].replace("?", "b1"))
            at = self.take(count * dtype.itemsize, f"array {key!r} of {count} values")
            return np.frombuffer(self.buf[at:self.pos], dtype).tolist()
        if count * 8 > len(self.buf) - self.pos:  # every string or array takes at least 8 bytes
            raise ValueError(f"array {key!r} claims {count} elements, more than the file holds")
        if etype == 8:
            return [self.string(key) for _ in range(count)]
        return [self.value(etype, key, depth + 1) for _ in range(count)]


@dataclass
class TensorInfo:
    """Where one tensor lies in the file and what it is (its bytes are read only when asked for)."""
    name: str  # llama.cpp's
    ggml_type: gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # PyTorch order (rows, columns)
    offset: int  # of its first byte in the file
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    def numpy_layout(self) -> tuple[np.dtype, tuple[int, ...]]:
        """How the `gguf` package's dequantize wants the bytes: numbers for float types, uint8 blocks
        (rows, bytes per row) for quantised ones."""
        if self.ggml_type.name in _FLOAT_TYPES:
            return np.dtype(_FLOAT_TYPES[self.ggml_type.name]), self.shape
        return np.dtype(np.uint8), (*self.shape[:-1], self.n_bytes // math.prod(self.shape[:-1]))


_FLOAT_TYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def _parse_header(path: Path) -> tuple[dict, list[TensorInfo]]:
    """Metadata and tensor table of a GGUF file, read by this module rather than the `gguf` package's
    reader, for two reasons. Its reader trusts every count (an array that claims 2^61 elements takes
    minutes and gigabytes to fail); here each count and size is bounded by the bytes the file has, and
    every tensor's data must lie inside the file. And it makes two numpy arrays for every string of an
    array: for Qwen2.5's 151,936 tokens and 151,387 merges that held 160 MB (of a 1.2 GB engine)
    where the Python strings take 20."""
    _check_header(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        c = _Cursor(buf)
        try:
            c.take(8, "header")
            n_tensors, n_kv = c.u("<Q", "tensor count"), c.u("<Q", "metadata count")
            if n_kv * 12 > len(buf) or n_tensors * 24 > len(buf):  # the smallest entry of each
                raise ValueError(f"header claims {n_kv} metadata entries and {n_tensors} tensors, more than the "
                                 f"file holds")
            meta = {}
            for _ in range(n_kv):
                key = c.string("key")
                meta[key] = c.value(c.u("<I", key), key)
            infos = []
            for _ in range(n_tensors):
                name = c.string("tensor name")
                n_dims = c.u("<I", name)
                if not 1 <= n_dims <= MAX_DIMS:
                    raise ValueError(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
                dims = [c.u("<Q", name) for _ in range(n_dims)]
                infos.append((name, dims, c.u("<I", name), c.u("<Q", name)))
        except ValueError as e:
            raise LmstackError(f"{path}: corrupt or truncated GGUF file ({e})") from None
        size, end = len(buf), c.pos
    alignment = meta.get("general.alignment", 32)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise LmstackError(f"{path}: corrupt or truncated GGUF file (general.alignment must be a power of two, "
                           f"not {_show(alignment)})")
    start = -(-end // alignment) * alignment
    tensors, seen = [], set()
    for name, dims, type_id, offset in infos:
        if name in seen:
            raise LmstackError(f"{path}: corrupt GGUF file (tensor {name!r} appears twice)")
        seen.add(name)
        tensors.append(_tensor_info(path, name, dims, type_id, start + offset, size))
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise LmstackError(f"{path}: unsupported architecture {_show(arch)} (supported: {', '.join(ARCHITECTURES)})")
    return meta, tensors


def _tensor_info(path: Path, name: str, dims: list[int], type_id: int, at: int, size: int) -> TensorInfo:
    try:
        ggml_type = gguf.GGMLQuantizationType(type_id)
        block, block_bytes = gguf.GGML_QUANT_SIZES[ggml_type]
    except (ValueError, KeyError):
        raise LmstackError(f"{path}: tensor {name!r} has unknown or unsupported tensor type id {type_id}") from None
    if min(dims) < 1 or dims[0] % block:
        raise LmstackError(f"{path}: tensor {name!r} has shape {dims}: every dimension must be positive and "
                           f"rows a multiple of {block}")
    nbytes = math.prod(dims) // block * block_bytes  # Python integers: no overflow
    if at + nbytes > size:
        raise LmstackError(f"{path}: tensor {name!r} ({nbytes} bytes at offset {at}) runs past the end of the "
                           f"file ({size} bytes; truncated?)")
    return TensorInfo(name, ggml_type, tuple(reversed(dims)), at, nbytes)


def _tensor_data(path: Path, tensors: list[TensorInfo]) -> dict[str, np.ndarray]:
    """Each tensor's bytes as a read-only memory-mapped array laid out for gguf.quants.dequantize."""
    buf = np.memmap(path, np.uint8, "r").view(np.ndarray)  # plain slices: the memmap subclass is slow
    out = {}
    for t in tensors:
        dtype, shape = t.numpy_layout()
        out[t.name] = buf[t.offset:t.offset + t.n_bytes].view(dtype).reshape(shape)
    return out


def _f32(v: float) -> float:
    """GGUF stores these as float32: undo the rounding noise (1e-5 reads back as 9.99999974e-06)."""
    return float(f"{float(v):.7g}")


def available_memory() -> int:
    """Bytes of memory this process can still take (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


# GGUF architectures read and written; `qwen2` is `llama` with Q/K/V biases (ModelConfig.qkv_bias)
ARCHITECTURES = ("llama", "qwen2")


def architecture(cfg: ModelConfig) -> str:
    return "qwen2" if cfg.qkv_bias else "llama"


# Positions a file may declare: Llama-family files go up to 4M (2^22); more is a corrupt or hostile file,
# and the RoPE table a model builds grows with it. run.py refuses the same.
MAX_CONTEXT = 1 << 22


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _hyperparameters(path: Path, meta: dict):
    """Readers of `<architecture>.*` values (`llama.*`, `qwen2.*`) that refuse, in one line, a missing key,
    a wrong type or a value out of range."""
    arch = meta["general.architecture"]

    def get(key, default):
        v = meta.get(f"{arch}.{key}", default)
        if v is None:
            raise LmstackError(f"{path}: missing metadata {arch}.{key}")
        return v

    def count(key: str, default: int | None = None, hi: int | None = None, why: str = "") -> int:
        v = get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (hi is not None and v > hi):
            limit = "of at least 1" if hi is None else f"from 1 to {hi}{why}"
            raise LmstackError(f"{path}: {arch}.{key} = {_show(v)} must be a whole number {limit}")
        return v

    def number(key: str, default: float) -> float:
        v = get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
            raise LmstackError(f"{path}: {arch}.{key} = {_show(v)} must be a finite number above 0")
        return _f32(v)

    return get, count, number


def _config(path: Path, meta: dict, shapes: dict[str, tuple[int, ...]]) -> ModelConfig:
    """The ModelConfig the metadata describes, every value checked (positive, bounded, consistent)
    before anything is allocated; `shapes` (tensor name -> shape) gives the vocabulary and whether
    the output matrix is tied."""
    get, count, number = _hyperparameters(path, meta)
    arch = meta["general.architecture"]
    emb = shapes.get("token_embd.weight")
    if emb is None or len(emb) != 2:
        raise LmstackError(f"{path}: no token_embd.weight matrix")
    dim = count("embedding_length")
    n_heads = count("attention.head_count", hi=dim)
    if dim % n_heads:
        raise LmstackError(f"{path}: {arch}.embedding_length {dim} is not a multiple of {arch}.attention.head_count "
                           f"{n_heads}")
    head_dim = dim // n_heads
    n_kv_heads = count("attention.head_count_kv", n_heads, hi=n_heads)
    if n_heads % n_kv_heads:
        raise LmstackError(f"{path}: {arch}.attention.head_count {n_heads} is not a multiple of "
                           f"{arch}.attention.head_count_kv {n_kv_heads}")
    for key in ("attention.key_length", "attention.value_length", "rope.dimension_count"):
        if count(key, head_dim) != head_dim:
            raise LmstackError(f"{path}: {arch}.{key} = {get(key, 0)} differs from embedding_length / head_count = "
                               f"{head_dim}, which this model does not support")
    per_layer = 12 if arch == "qwen2" else 9
    n_layers = count("block_count", hi=len(shapes) // per_layer, why=f" ({len(shapes)} tensors, {per_layer} per layer)")
    kind = str(get("rope.scaling.type", "linear" if f"{arch}.rope.scale_linear" in meta else "none"))
    factor = 1.0
    if kind != "none":  # a factor of 0 means none given (older converters wrote rope.scale_linear)
        given = meta.get(f"{arch}.rope.scaling.factor") not in (None, 0, 0.0)
        factor = number("rope.scaling.factor", 0.0) if given else number("rope.scale_linear", 1.0)
    if kind != "linear" and factor != 1.0:
        raise LmstackError(f"{path}: rope scaling {kind!r} is not supported (supported: linear)")
    try:
        return ModelConfig(
            vocab_size=emb[0], dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
            ffn_dim=count("feed_forward_length"), max_seq_len=count("context_length", hi=MAX_CONTEXT),
            rope_theta=number("rope.freq_base", 10000.0), rope_scaling=factor,
            norm_eps=number("attention.layer_norm_rms_epsilon", 1e-5), tie_embeddings="output.weight" not in shapes,
            qkv_bias=arch == "qwen2")
    except ValueError as e:
        raise LmstackError(f"{path}: inconsistent hyperparameters ({e})") from None


def tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a `llama` (or, with qkv_bias, `qwen2`) file with this config holds (llama.cpp names),
    with its shape (rows, columns)."""
    d, qd, kvd, f = cfg.dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim
    shapes = {"token_embd.weight": (cfg.vocab_size, d), "output_norm.weight": (d,)}
    if not cfg.tie_embeddings:
        shapes["output.weight"] = (cfg.vocab_size, d)
    layer = {"attn_norm": (d,), "attn_q": (qd, d), "attn_k": (kvd, d), "attn_v": (kvd, d), "attn_output": (d, qd),
             "ffn_norm": (d,), "ffn_gate": (f, d), "ffn_up": (f, d), "ffn_down": (d, f)}
    bias = {"attn_q": (qd,), "attn_k": (kvd,), "attn_v": (kvd,)} if cfg.qkv_bias else {}
    for i in range(cfg.n_layers):
        shapes |= {f"blk.{i}.{name}.weight": shape for name, shape in layer.items()}
        shapes |= {f"blk.{i}.{name}.bias": shape for name, shape in bias.items()}
    return shapes


def _check_tensors(path: Path, cfg: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """The file holds exactly the tensors the config implies, each with the shape it implies."""
    want = tensor_shapes(cfg)
    for name, shape in want.items():
        if name not in shapes:
            raise LmstackError(f"{path}: tensor {name} is missing ({architecture(cfg)}.block_count = {cfg.n_layers})")
        if shapes[name] != shape:
            raise LmstackError(f"{path}: tensor {name} has shape {shapes[name]} but the metadata implies {shape}")
    extra = sorted(set(shapes) - set(want))
    if extra:
        raise LmstackError(f"{path}: unexpected tensor {extra[0]!r} (and {len(extra) - 1} more) for this config")


def _validated(path: Path) -> tuple[list[TensorInfo], dict, ModelConfig]:
    """Tensor table, metadata and config of a file whose metadata and tensors agree; nothing decoded yet."""
    meta, tensors = _parse_header(path)
    shapes = {t.name: t.shape for t in tensors}
    if "rope_freqs.weight" in shapes:
        raise LmstackError(f"{path}: rope frequency factors (rope_freqs, Llama 3.1 style) are not supported")
    cfg = _config(path, meta, shapes)
    _check_tensors(path, cfg, shapes)
    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list) and len(tokens) > cfg.vocab_size:  # ids past the embedding cannot be embedded
        raise LmstackError(f"{path}: the tokenizer has {len(tokens)} tokens but token_embd.weight only "
                           f"{cfg.vocab_size} rows")
    return tensors, meta, cfg


def _check_types(path: Path, tensors: list[TensorInfo]) -> None:
    for t in tensors:
        if t.ggml_type.name not in READ_TYPES:
            raise LmstackError(f"{path}: tensor {t.name} has unsupported type {t.ggml_type.name} "
                               f"(supported: {', '.join(READ_TYPES)})")


def read_gguf(path: str | Path) -> GGUFModel:
    """Read a `llama` or `qwen2` GGUF file into a ModelConfig and float32 tensors, with one-line errors.

    The metadata is checked against the tensors and the file size first; the file is memory-mapped and
    tensors are dequantised one at a time, so the peak is the float32 model (plus the RoPE table of its
    context), which is checked against the memory available before anything is decoded."""
    path = Path(path)
    infos, meta, cfg = _validated(path)
    _check_types(path, infos)
    rope_table = 32 * cfg.max_seq_len * cfg.head_dim // 2  # float64 angles and cos/sin, float32 copies
    need = 4 * sum(t.n_elements for t in infos) + rope_table
    avail = available_memory()
    if need > avail:
        raise LmstackError(
            f"{path}: the model needs {need / 1e9:.1f} GB as float32 weights but only {avail / 1e9:.1f} GB of "
            f"memory is available (the {path.stat().st_size / 1e9:.1f} GB file is memory-mapped, not read whole)")
    tensors, types, data = {}, {}, _tensor_data(path, infos)
    for t in infos:
        shape = t.shape
        arr = np.asarray(gguf.quants.dequantize(data[t.name], t.ggml_type), dtype=np.float32).reshape(shape)
        if (order := _pairs_order(cfg, torch_name(t.name), shape[0])) is not None:
            arr = arr[order]
        tensors[torch_name(t.name)] = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # F32: a view
        types[t.name] = t.ggml_type.name
    if cfg.tie_embeddings:
        tensors["output.weight"] = tensors["tok_embeddings.weight"]
    return GGUFModel(cfg, tensors, meta, types)


@dataclass
class RawTensor:
    """A tensor's bytes as stored (a read-only memory map), for runtimes that compute on quantised blocks."""
    ggml_type: str  # F32, F16, Q4_1, Q8_0, Q4_K, ...
    shape: tuple[int, ...]  # PyTorch order (rows, columns)
    data: np.ndarray  # uint8 blocks for quantised types, the numbers themselves for float types


def raw_tensors(path: str | Path) -> dict[str, RawTensor]:
    """Every tensor of a GGUF file without dequantising, by our state-dict names (Q/K rows of a `qwen2`
    file put in this model's RoPE layout, which copies those few)."""
    path = Path(path)
    infos, _, cfg = _validated(path)
    out, data = {}, _tensor_data(path, infos)
    for t in infos:
        name, arr = torch_name(t.name), data[t.name]
        order = _pairs_order(cfg, name, t.shape[0])
        out[name] = RawTensor(t.ggml_type.name, t.shape, arr if order is None else arr[order])
    return out


class TensorFile:
    """A GGUF file read one tensor (or a block of its rows) at a time, for a runtime that
    converts weights as it reads them and never holds the whole model as float32 (the engine).

    Validated like read_gguf. Each read takes the tensor's bytes with pread rather than through the
    memory map, so they leave memory as soon as they are converted; a mapped page would stay
    resident, and counted, until the whole file is unmapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        infos, self.metadata, self.config = _validated(self.path)
        _check_types(self.path, infos)
        self._tensors = {torch_name(t.name): t for t in infos}

    def shape(self, name: str) -> tuple[int, ...]:
        return self._tensors[name].shape

    def read(self, name: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows start..stop of a tensor (our state-dict name), as float32 in PyTorch's (rows, ...) order."""
        t = self._tensors[name]
        shape = self.shape(name)
        stop = shape[0] if stop is None else min(stop, shape[0])
        if (order := _pairs_order(self.config, name, shape[0])) is not None:  # Q/K of qwen2: rows reordered
            return self._read(t, shape, 0, shape[0])[torch.from_numpy(order[start:stop])]
        return self._read(t, shape, start, stop)

    def _read(self, t: TensorInfo, shape: tuple[int, ...], start: int, stop: int) -> torch.Tensor:
        row_bytes = t.n_bytes // shape[0]
        with open(self.path, "rb") as f:
            raw = os.pread(f.fileno(), (stop - start) * row_bytes, t.offset + start * row_bytes)
        dtype, layout = t.numpy_layout()
        blocks = np.frombuffer(raw, dtype=dtype).reshape(stop - start, *layout[1:])
        arr = np.asarray(gguf.quants.dequantize(blocks, t.ggml_type), dtype=np.float32)
        return torch.from_numpy(arr.reshape(stop - start, *shape[1:]).copy() if not arr.flags.writeable
                                else arr.reshape(stop - start, *shape[1:]))


def tokenizer_from_gguf(meta: dict) -> Tokenizer:
    """Rebuild the tokenizer a GGUF file describes: byte-level BPE (`gpt2`, with the pre-tokenizer the
    file names) or SentencePiece-style BPE with byte fallback (`llama`), its special tokens and ids,
    and its chat template."""
    from tokenizers import AddedToken

    kind = meta.get("tokenizer.ggml.model")
    tokens, types = _vocabulary(meta)
    pre = None
    try:
        if kind == "gpt2":
            pre = meta.get("tokenizer.ggml.pre") or DEFAULT_PRE
            hf = _byte_level_from_gguf(meta, tokens, pre)
        elif kind == "llama":
            hf = _sentencepiece_from_gguf(meta, tokens, types)
        else:
            raise LmstackError(f"unsupported tokenizer model {kind!r} (supported: gpt2, llama)")
    except LmstackError:
        raise
    except Exception as e:  # tokenizers raises plain Exceptions (a merge of tokens outside the vocabulary, ...)
        raise LmstackError(f"the GGUF file's tokenizer is inconsistent ({str(e).splitlines()[0][:200]})") from None
    hf.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                           for i, ty in enumerate(types) if ty == 3])
    hf.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i, ty in enumerate(types) if ty == 4])
    ids = lambda key: meta.get(f"tokenizer.ggml.{key}_token_id")
    template = meta.get("tokenizer.chat_template")
    if template is not None and not isinstance(template, str):
        raise LmstackError(f"tokenizer.chat_template must be a string, not {_show(template)}")
    return Tokenizer(hf, chat_template=template, bos_id=ids("bos"), eos_id=ids("eos"),
                     end_of_turn_id=ids("eot"), add_bos=meta.get("tokenizer.ggml.add_bos_token", kind == "llama"),
                     gguf_pre=pre, scores=meta.get("tokenizer.ggml.scores") if kind == "llama" else None)


def _vocabulary(meta: dict) -> tuple[list[str], list[int]]:
    """Tokens and token types, checked: strings and small whole numbers of one length, special ids inside."""
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise LmstackError("the GGUF file has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise LmstackError("tokenizer.ggml.tokens must be a list of strings")
    if not isinstance(types, list) or len(types) != len(tokens) or not all(type(t) is int for t in types):
        raise LmstackError(f"tokenizer.ggml.token_type must give one type to each of the {len(tokens)} tokens")
    for key in ("bos", "eos", "eot", "unknown", "padding"):
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        if i is not None and (type(i) is not int or not 0 <= i < len(tokens)):
            raise LmstackError(f"tokenizer.ggml.{key}_token_id = {_show(i)} is not a token id (0 to {len(tokens) - 1})")
    return tokens, types


def _byte_level_from_gguf(meta: dict, tokens: list[str], pre: str):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models

    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    vocab = {t: i for i, t in enumerate(tokens)}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in IGNORE_MERGES))
    hf.pre_tokenizer = byte_level_pre_tokenizer(pre)
    hf.decoder = decoders.ByteLevel()
    return hf


def _sentencepiece_from_gguf(meta: dict, tokens: list[str], types: list[int]):
    """llama.cpp merges the adjacent pair whose result has the highest score; as BPE, that is a merge
    (a, b) for every way of cutting a normal token into two vocabulary entries, ranked by its score.
    The leading space follows HF transformers (no second one before text that starts with a space;
    llama.cpp always adds one)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    cuts = []
    for i, t in enumerate(tokens):
        if types[i] == 1 and len(t) > 1:
            cuts += [(-scores[i], i, k) for k in range(1, len(t)) if t[:k] in vocab and t[k:] in vocab]
    merges = [(tokens[i][:k], tokens[i][k:]) for _, i, k in sorted(cuts)]
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=tokens[unk] if unk is not None else None,
                                byte_fallback=True, fuse_unk=True))
    space = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    # as HF's Llama tokenizer: spaces become '\u2581', and one goes in front unless the text starts with a space
    hf.pre_tokenizer = pre_tokenizers.Metaspace("\u2581", prepend_scheme="first" if space else "never", split=False)
    hf.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
                                   + [decoders.Strip(" ", 1, 0)] * space)
    return hf

"""The one GGUF-writing helper of the tests: files are written with the `gguf` package's own
GGUFWriter, independent of lmstack's exporter and of run.py's reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np


def add_metadata(w: gguf.GGUFWriter, values: dict, prefix: str = "llama.") -> None:
    """`prefix + key` for each item, typed as converters write them: whole numbers as uint32 (int32 when
    negative, uint64 when large), floats as float32, strings and lists as themselves."""
    for key, value in values.items():
        key = prefix + key
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            (w.add_int32 if value < 0 else w.add_uint32 if value < 1 << 32 else w.add_uint64)(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, value)


def write_gguf(path: str | Path, tensors: dict[str, np.ndarray | tuple[np.ndarray, gguf.GGMLQuantizationType]],
               metadata: dict | None = None, arch: str = "llama",
               setup: Callable[[gguf.GGUFWriter], None] | None = None) -> Path:
    """Write a GGUF file: `arch.*` metadata, whatever `setup(writer)` adds (a tokenizer, say), then the
    tensors, each an array (F32/F16 by its dtype) or (quantised bytes, their type)."""
    w = gguf.GGUFWriter(str(path), arch)
    add_metadata(w, metadata or {}, f"{arch}.")
    if setup is not None:
        setup(w)
    for name, t in tensors.items():
        if isinstance(t, tuple):
            w.add_tensor(name, t[0], raw_shape=t[0].shape, raw_dtype=t[1])
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def llama_tensors(dim: int, n_layers: int, n_heads: int, n_kv_heads: int, ffn_dim: int, vocab: int,
                  tied: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights of a `llama` model of this shape, by llama.cpp tensor name."""
    rng = np.random.default_rng(seed)
    hd = dim // n_heads
    lin = lambda rows, cols: (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
    norm = lambda: (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
    w = {"token_embd.weight": rng.standard_normal((vocab, dim)).astype(np.float32), "output_norm.weight": norm()}
    if not tied:
        w["output.weight"] = lin(vocab, dim)
    for i in range(n_layers):
        p = f"blk.{i}."
        w |= {p + "attn_norm.weight": norm(), p + "attn_q.weight": lin(n_heads * hd, dim),
              p + "attn_k.weight": lin(n_kv_heads * hd, dim), p + "attn_v.weight": lin(n_kv_heads * hd, dim),
              p + "attn_output.weight": lin(dim, n_heads * hd), p + "ffn_norm.weight": norm(),
              p + "ffn_gate.weight": lin(ffn_dim, dim), p + "ffn_up.weight": lin(ffn_dim, dim),
              p + "ffn_down.weight": lin(dim, ffn_dim)}
    return w

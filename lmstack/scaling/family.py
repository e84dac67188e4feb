"""One shape family of models for the sweep, and the FLOP and parameter counts of its members.

Sizes must be comparable, so every member has the same design: head_dim 32, full multi-head
attention, SwiGLU with ffn_dim ~ 8/3 dim, tied embeddings, one context length. Growing from member k
to k+1 alternately widens the model by one 32-wide head or adds one layer:

    k = 0, 1, 2, 3, 4, ...  ->  (n_layers, dim) = (1, 32), (1, 64), (2, 64), (2, 96), (3, 96), ...

so n_layers = k // 2 + 1 and dim = 32 * ((k + 1) // 2 + 1): the aspect ratio dim / n_layers stays
between 32 and 64, and consecutive sizes differ by a factor of 1.2-3 in parameters instead of the
factor ~8 that a fixed aspect ratio gives at one or two layers.

Compute convention (the one `Transformer.flops_per_token` implements): training FLOPs per token =
6 x (every matmul weight, the tied output projection included; the embedding lookup is free) +
12 x n_layers x context x dim for attention scores and values over the full T x T square. A run with
budget C trains for D = C / flops_per_token tokens, which is C / 6N plus the attention term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmstack.model import ModelConfig, Transformer

HEAD_DIM = 32


def shape(k: int) -> tuple[int, int]:
    """(n_layers, dim) of family member k."""
    if k < 0:
        raise ValueError(f"family index must be >= 0, got {k}")
    return k // 2 + 1, HEAD_DIM * ((k + 1) // 2 + 1)


def model_config(k: int, vocab_size: int, seq_len: int) -> ModelConfig:
    n_layers, dim = shape(k)
    heads = dim // HEAD_DIM
    return ModelConfig(vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=heads, n_kv_heads=heads,
                       max_seq_len=seq_len, tie_embeddings=True)


@dataclass(frozen=True)
class Member:
    k: int
    n_layers: int
    dim: int
    params: int  # total, embedding included (tied: counted once)
    params_non_embedding: int
    flops_per_token: float  # training, attention included


def member(k: int, vocab_size: int, seq_len: int) -> Member:
    """Counts come from the model itself, built on the meta device (no memory, no time)."""
    cfg = model_config(k, vocab_size, seq_len)
    with torch.device("meta"):
        m = Transformer(cfg)
    return Member(k, cfg.n_layers, cfg.dim, m.num_params(), m.num_params(True), m.flops_per_token(seq_len))


def ladder(vocab_size: int, seq_len: int, max_params: float = 2e9) -> list[Member]:
    """Family members in increasing size, up to max_params."""
    out: list[Member] = []
    k = 0
    while True:
        m = member(k, vocab_size, seq_len)
        if m.params > max_params:
            return out
        out.append(m)
        k += 1


def nearest(members: list[Member], n_params: float) -> Member:
    """The member whose total parameter count is closest to n_params on a log scale."""
    import math

    return min(members, key=lambda m: abs(math.log(m.params / n_params)))

"""The transformer: the Llama architecture exactly as GGUF's `llama` defines it, and Qwen2 (`qwen2`).

Token embedding, pre-norm blocks of RMSNorm -> grouped-query attention with RoPE -> RMSNorm ->
SwiGLU MLP, a final RMSNorm and an output projection that may share the embedding matrix. No
dropout, and no biases except Qwen2's on the Q, K and V projections (`qkv_bias`), which is all
that separates the two architectures: every weight maps one-to-one onto a GGUF tensor, so export
is a copy and parity with llama.cpp and the numpy run file is testable.

RoPE rotates adjacent pairs (x[2i], x[2i+1]), the convention llama.cpp uses for `llama` tensors,
so Q and K weights are exported without the permutation HF checkpoints need. `qwen2` files (and
HF checkpoints) rotate the two halves of each head instead; their Q and K rows (and biases) are
permuted on the way in and out (io/hf.py's `halves_to_pairs`, `pairs_to_halves`), so there is one RoPE here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmstack.checks import ConfigError, check_float, check_int


@dataclass
class ModelConfig:
    vocab_size: int = 4096
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 4
    ffn_dim: int = 0  # 0 -> SwiGLU default: 8/3 * dim rounded up to a multiple of 32
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    rope_scaling: float = 1.0  # linear RoPE scaling: positions are divided by this (GGUF rope.scaling.factor)
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    qkv_bias: bool = False  # Qwen2: the Q, K and V projections add a bias (GGUF architecture qwen2)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "max_seq_len"):
            check_int(name, getattr(self, name), 1)
        check_int("ffn_dim", self.ffn_dim, 0)
        for name in ("rope_theta", "rope_scaling", "norm_eps"):
            check_float(name, getattr(self, name), 0, lo_open=True)
        if self.ffn_dim == 0:
            self.ffn_dim = 32 * math.ceil(8 * self.dim / 3 / 32)
        if self.dim % self.n_heads:
            raise ConfigError(f"dim {self.dim} must divide by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_heads {self.n_heads} must divide by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim = dim / n_heads = {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# Named sizes. Non-embedding parameter counts are roughly the suffix; the vocabulary is set by the
# tokenizer at train time.
PRESETS: dict[str, dict] = {
    "nano": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128),
    "micro": dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, max_seq_len=256),
    "tiny": dict(dim=192, n_layers=6, n_heads=6, n_kv_heads=3, max_seq_len=256),
    "small": dict(dim=256, n_layers=6, n_heads=8, n_kv_heads=4, max_seq_len=256),
    "base": dict(dim=384, n_layers=8, n_heads=6, n_kv_heads=2, max_seq_len=512),
    "medium": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, max_seq_len=1024),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(head_dim: int, max_seq_len: int, theta: float,
                scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (max_seq_len, head_dim/2), computed in float64 for exactness at long positions.
    Linear scaling (a model trained at a short context, stretched) divides positions by `scaling`."""
    inv = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.outer(torch.arange(max_seq_len, dtype=torch.float64) / scaling, inv)
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, hd); cos/sin: (T, hd/2). Rotates adjacent pairs."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads
        )
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w_gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        # GPT-2 style: shrink the residual-stream writers by depth so activations stay O(1).
        for name, p in self.named_parameters():
            if name.endswith(("wo.weight", "w_down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean",
                embeds: torch.Tensor | None = None):
        """Logits for every position; with targets, (logits, loss). Target -1 is ignored (masking).

        `embeds` (B, T, dim) replaces the token embeddings of `idx`, so a caller can put other
        inputs (an image's projected features) at some positions of the sequence.
        """
        T = idx.shape[1]
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds the model context {self.config.max_seq_len}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.tok_embeddings(idx) if embeds is None else embeds
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.output(self.norm(x))
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1, reduction=reduction
        )
        return logits, loss

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_embeddings.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6 x each trained matmul weight (forward, gradient to the input,
        gradient to the weight), 4 x each frozen one (no weight gradient: LoRA's base layers), output
        projection included, plus attention.

        Attention scores and weighted sum cost 2*2*T*dim per token forward (counted for the full
        T x T square, the PaLM convention), so training adds 12 * n_layers * T * dim.
        """
        cfg = self.config
        T = seq_len or cfg.max_seq_len
        weights = [p for n, p in self.named_parameters() if p.dim() == 2 and "tok_emb" not in n]
        if cfg.tie_embeddings:
            weights.append(self.output.weight)
        matmul = sum((6 if p.requires_grad else 4) * p.numel() for p in weights)
        return matmul + 12 * cfg.n_layers * T * cfg.dim

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        stop_id: int | None = None,
    ) -> torch.Tensor:
        """Simple sampling without a KV cache, for samples during training (the engine is faster)."""
        for _ in range(max_new_tokens):
            ctx = idx[:, -self.config.max_seq_len :]
            logits = self(ctx)[:, -1, :].float()
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
            if stop_id is not None and bool((nxt == stop_id).all()):
                break
        return idx

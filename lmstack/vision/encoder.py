"""The vision encoder: a ViT (patch embedding, learned positions, pre-norm blocks, post-norm).

It is the SigLIP layout llama.cpp runs for `idefics3` projectors: a strided convolution cuts the
image into patches, a learned position vector is added to each, then pre-norm blocks of
LayerNorm -> multi-head attention (biases everywhere, no mask) -> LayerNorm -> MLP (SiLU or GELU), and a
final LayerNorm. Every weight maps one-to-one onto an mmproj tensor (`v.patch_embd`,
`v.blk.N.attn_q`, ...), so export is a copy. A larger pretrained encoder with the same layout
(SigLIP's) loads into the same module by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmstack.checks import ConfigError, check_float, check_int

ACTIVATIONS = {"silu": F.silu, "gelu": lambda x: F.gelu(x, approximate="tanh")}  # tanh GELU is ggml_gelu


@dataclass
class VisionConfig:
    image_size: int = 48  # the encoder's input side; larger images are tiled to it
    patch_size: int = 6
    dim: int = 64
    n_layers: int = 3
    n_heads: int = 4
    ffn_dim: int = 192  # must differ from dim: llama.cpp swaps up/down when they look alike
    norm_eps: float = 1e-6
    scale_factor: int = 4  # pixel shuffle: (grid/s)^2 tokens of s^2 * dim features
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    max_tiles: int = 1  # tiles per side at most: the longest edge is resized to max_tiles * image_size
    # SiLU by default: llama.cpp computes it in float32, while its GELU goes through a float16 table
    # (first-token log-probabilities then differ by ~1e-3, enough to flip near ties); "gelu" is SigLIP's
    act: str = "silu"

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "dim", "n_layers", "n_heads", "ffn_dim", "scale_factor",
                     "max_tiles"):
            check_int(name, getattr(self, name), 1)
        check_float("norm_eps", self.norm_eps, 0, lo_open=True)
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} must divide by patch_size {self.patch_size}")
        if self.grid % self.scale_factor:
            raise ConfigError(f"the patch grid {self.grid} must divide by scale_factor {self.scale_factor}")
        if self.dim % self.n_heads:
            raise ConfigError(f"vision dim {self.dim} must divide by n_heads {self.n_heads}")
        if self.ffn_dim == self.dim:
            raise ConfigError("vision ffn_dim must differ from dim (llama.cpp reads equal sizes as swapped weights)")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"vision act must be one of {', '.join(ACTIVATIONS)}, got {self.act!r}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ConfigError("image_mean and image_std need three values each, std positive")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid**2

    @property
    def tokens_per_view(self) -> int:
        return self.n_patches // self.scale_factor**2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VisionConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.n_heads, self.act = cfg.n_heads, ACTIVATIONS[cfg.act]
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn_q = nn.Linear(cfg.dim, cfg.dim)
        self.attn_k = nn.Linear(cfg.dim, cfg.dim)
        self.attn_v = nn.Linear(cfg.dim, cfg.dim)
        self.attn_out = nn.Linear(cfg.dim, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.ffn_up = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.ffn_down = nn.Linear(cfg.ffn_dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        h = self.ln1(x)
        heads = lambda t: t.view(B, N, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, N, hd)
        y = F.scaled_dot_product_attention(heads(self.attn_q(h)), heads(self.attn_k(h)), heads(self.attn_v(h)))
        x = x + self.attn_out(y.transpose(1, 2).reshape(B, N, C))
        return x + self.ffn_down(self.act(self.ffn_up(self.ln2(x))))


class VisionEncoder(nn.Module):
    """(B, 3, S, S) normalised pixels -> (B, n_patches, dim) features, patches in row-major order."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.config = cfg
        self.patch_embd = nn.Conv2d(3, cfg.dim, cfg.patch_size, stride=cfg.patch_size)
        self.position_embd = nn.Parameter(torch.randn(cfg.n_patches, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.n_layers))
        self.post_ln = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embd(pixels).flatten(2).transpose(1, 2)  # (B, N, dim)
        x = x + self.position_embd
        for blk in self.blocks:
            x = blk(x)
        return self.post_ln(x)

"""LoRA: train a low-rank update B·A beside frozen weights, then fold it into them.

y = W x + (alpha / r) · B (A dropout(x)), with A (r × in) random and B (out × r) zero, so training
starts exactly at the base model. Only A and B learn: a few hundred thousand numbers instead of
every weight, which is what lets a 135M-parameter model be tuned on a laptop CPU. `merge_lora`
adds the update into W and restores plain `nn.Linear` layers, so a tuned model saves, loads and
exports to GGUF exactly like any other: there is no adapter format to carry around.

Written here rather than taken from `peft`: our Transformer's linear layers are plain and few,
and twenty lines keep the merge exact and visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from lmstack.errors import LmstackError

ALL_TARGETS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


@dataclass
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple[str, ...] = ("wq", "wk", "wv", "wo")  # any of ALL_TARGETS

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        bad = [t for t in self.targets if t not in ALL_TARGETS]
        if bad or not self.targets:
            raise LmstackError(f"LoRA targets must be among {', '.join(ALL_TARGETS)} (got {', '.join(bad) or 'none'})")
        if self.rank < 1:
            raise LmstackError(f"LoRA rank must be at least 1 (got {self.rank})")
        if not 0 <= self.dropout < 1:
            raise LmstackError(f"LoRA dropout must be in [0, 1) (got {self.dropout})")


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        """The base layer with the update added into its weight."""
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a).to(self.base.weight.dtype) * self.scale
        self.base.weight.requires_grad_(True)
        return self.base


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> int:
    """Freeze every weight and wrap the target linear layers; returns the number of trainable numbers."""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in cfg.targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, cfg.rank, cfg.alpha, cfg.dropout))
                wrapped += 1
    if not wrapped:
        raise LmstackError(f"no linear layer named {', '.join(cfg.targets)} in this model")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_update(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each wrapped layer's factors by name, `<layer>.a` (r x in) and `<layer>.b` (out x r, the scale
    folded in). Kept beside the merged weights because rounding those to 4 bits moves them by more
    than the LoRA did (docs/security.md): a quantised engine subtracts B·A, rounds the base and adds
    the update back in float."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            out[f"{name}.a"] = m.lora_a.detach().float().cpu().clone()
            out[f"{name}.b"] = (m.lora_b.detach().float() * m.scale).cpu().clone()
    return out


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight and make all parameters trainable again."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return model

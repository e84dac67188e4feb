"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

SCHEDULES = ("cosine", "linear", "constant")  # what follows the warmup


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                   fused: bool = False) -> torch.optim.AdamW:
    """Decay the 2-D weight matrices of linear layers; never norms or embeddings (tied output included)."""
    no_decay = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen, decay, rest = set(), [], []
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in no_decay else rest).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def lr_at(step: int, total: int, lr: float, warmup: int, schedule: str, min_frac: float) -> float:
    """Linear warmup, then cosine or linear decay to min_frac * lr at the last step."""
    if schedule not in SCHEDULES:  # checked before the first step, not only once warmup ends
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        mult = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        mult = 1 - progress
    return lr * (min_frac + (1 - min_frac) * mult)

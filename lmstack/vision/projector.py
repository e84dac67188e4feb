"""Pixel shuffle and the linear projector: encoder features -> language-model embeddings.

Pixel shuffle (space to depth) folds each s x s block of neighbouring patches into one token of
s^2 times the width, so an image costs s^2 fewer positions in the language model. The order is
llama.cpp's (`build_patch_merge_permute`): output tokens row-major over the folded grid, and
inside a token the s x s patches row-major, each patch's features contiguous. One linear layer
without bias (`mm.model.fc`) then maps the folded features to the language model's width.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def pixel_shuffle(x: torch.Tensor, grid: int, s: int) -> torch.Tensor:
    """(B, grid*grid, C) -> (B, (grid/s)^2, s*s*C)."""
    B, N, C = x.shape
    g = grid // s
    x = x.view(B, g, s, g, s, C)  # (B, row block, row in block, col block, col in block, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, g * g, s * s * C)


class Projector(nn.Module):
    def __init__(self, vision_dim: int, scale_factor: int, lm_dim: int):
        super().__init__()
        self.scale_factor = scale_factor
        self.fc = nn.Linear(vision_dim * scale_factor**2, lm_dim, bias=False)

    def forward(self, feats: torch.Tensor, grid: int) -> torch.Tensor:
        return self.fc(pixel_shuffle(feats, grid, self.scale_factor))

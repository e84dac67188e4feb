"""Weight-only quantisation for inference: one linear layer whose weight is fp32, int8 or int4.

Decoding one token reads every weight once, so at batch 1 the speed is set by bytes of weights,
not by arithmetic. int8 keeps one scale per output row (symmetric); int4 keeps a scale and an
offset per group of 32 inputs (asymmetric, the same 0.625 bytes per weight as GGUF Q4_1). The
matrix products run in PyTorch's CPU kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`),
which are fast with bfloat16 activations, so quantised layers take bf16 in and give fp32 out; the
residual stream stays fp32.

`rows(ids)` dequantises single rows, so a tied embedding is looked up in the output matrix itself
and the vocabulary is stored once (at int8 at least: see forward.py).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmstack.engine import kernels

QUANTS = ("none", "int8", "int4")
INT4_GROUP = 32
_INT4_BLOCK_N = 64  # the CPU int4 kernel packs 64 output rows together


class RowSource(Protocol):
    """A matrix read a block of rows at a time: m[i:j] is rows i..j-1 as a tensor."""
    shape: tuple[int, int]

    def __getitem__(self, rows: slice) -> torch.Tensor: ...


def int4_fits(n_out: int, n_in: int, group: int = INT4_GROUP) -> bool:
    """The int4 kernel wants whole blocks of 64 output rows and whole groups of inputs."""
    return n_out % _INT4_BLOCK_N == 0 and n_in % group == 0


def on_kernels(quant: str, n_out: int, n_in: int, group: int = INT4_GROUP) -> bool:
    """Whether a quantised matrix of this shape runs on lmstack's kernels (kernels.py): where they
    pay and the shape allows, else PyTorch's."""
    return quant != "none" and group == kernels.BLOCK and kernels.fits(n_out, n_in) and kernels.available()


class QLinear(nn.Module):
    """y = x @ W.T with W (n_out, n_in) kept as fp32, int8 (+ row scales) or int4 (+ group scales/offsets).

    int4 falls back to int8 for a shape the kernel cannot pack (say so via `.kind`)."""

    def __init__(self, weight: torch.Tensor | RowSource, quant: str = "none", group: int = INT4_GROUP,
                 bias: torch.Tensor | None = None, low_rank: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`weight` is a tensor, or anything that gives blocks of its rows as `weight[i:j]` (a matrix
        still in its file): int8 reads it a block at a time, so a vocabulary matrix never exists in
        float32 whole. A `bias` (Qwen2's Q/K/V) stays float32 and is added to the float32 output, and
        so does `low_rank` = (A (r, n_in), B (n_out, r)): y += B (A x), a LoRA update kept in float."""
        super().__init__()
        if quant not in QUANTS:
            raise ValueError(f"unknown quantisation {quant!r}; choose from {', '.join(QUANTS)}")
        w = weight.detach() if isinstance(weight, torch.Tensor) else weight
        self.n_out, self.n_in = w.shape
        self.ours = on_kernels(quant, self.n_out, self.n_in, group)
        if quant == "int4" and not (self.ours or int4_fits(self.n_out, self.n_in, group)):
            quant = "int8"
        self.kind, self.group = quant, group
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        a, b = low_rank or (None, None)
        self.register_buffer("lr_a", None if a is None else a.detach().float().contiguous())
        self.register_buffer("lr_b", None if b is None else b.detach().float().contiguous())
        if quant == "none":
            self.register_buffer("weight", w[:].float().contiguous())
        elif quant == "int8":
            # by blocks of rows, each packed as it is made: no temporaries the size of a vocabulary matrix
            r = kernels.ROWS if self.ours else 1
            q = torch.empty(kernels.q8_shape(self.n_out, self.n_in) if self.ours else (self.n_out, self.n_in),
                            dtype=torch.int8)
            scale = torch.empty(self.n_out)
            for i in range(0, self.n_out, 4096):
                rows = w[i:i + 4096].float()
                scale[i:i + 4096] = rows.abs().amax(1).clamp(min=1e-12) / 127
                qi = (rows / scale[i:i + 4096, None]).round_().clamp_(-127, 127).to(torch.int8)
                q[i // r:(i + 4096) // r] = kernels.pack_q8(qi) if self.ours else qi
            self.register_buffer("weight", q)
            self.register_buffer("scale", scale if self.ours else scale.to(torch.bfloat16))
        elif self.ours:  # by blocks of rows too (a vocabulary matrix at 4 bits: Qwen2's untied embedding)
            q = torch.empty(self.n_out // kernels.ROWS, self.n_in // group, kernels.Q4_BYTES, dtype=torch.uint8)
            for i in range(0, self.n_out, 4096):
                q[i // kernels.ROWS:(i + 4096) // kernels.ROWS] = kernels.q4_quantize(w[i:i + 4096])
            self.register_buffer("weight", q)
        else:
            w = w[:].float()
            g = w.reshape(self.n_out, self.n_in // group, group)
            lo, hi = g.amin(-1), g.amax(-1)
            scale = ((hi - lo) / 15).clamp(min=1e-12)
            q = ((g - lo[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32)
            # the kernel computes (q - 8) * scale + offset, so its offset is lo + 8 * scale
            sz = torch.stack([scale.t(), (lo + 8 * scale).t()], -1).contiguous()  # (n_in/group, n_out, 2)
            self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                q.reshape(self.n_out, self.n_in), 1))
            self.register_buffer("scale", sz.to(torch.bfloat16))
            # the group size as the model's own tensor: given as an int, Inductor makes it a constant
            # of its own, which a compiled package built without constants cannot be given
            self.register_buffer("group_size", torch.tensor([group]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._product(x)
        if self.lr_a is not None:
            y = y + F.linear(F.linear(x, self.lr_a), self.lr_b)
        return y if self.bias is None else y + self.bias

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return F.linear(x, self.weight)
        if self.ours:
            x2 = x.reshape(-1, self.n_in).float().contiguous()
            y = kernels.q4_mm(x2, self.weight) if self.kind == "int4" else kernels.q8_mm(x2, self.weight, self.scale)
            return y.reshape(*x.shape[:-1], self.n_out)
        if (self.kind == "int8" and self.n_out >= 16384 and torch.compiler.is_compiling()
                and type(x.numel()) is int and x.numel() == self.n_in):
            # One row through a vocabulary-sized matrix, compiled: a product and a sum that Inductor
            # turns into one vectorised loop over the int8 weights in fp32, twice as fast as the
            # bf16 kernel (1.2 vs 2.2 ms for 49152 x 576), and the activations keep fp32. For
            # several rows, or a layer-sized matrix, the kernel is faster.
            return (x.unsqueeze(-2) * self.weight.float()).sum(-1) * self.scale.float()
        x2 = x.reshape(-1, self.n_in).to(torch.bfloat16)
        if self.kind == "int8":
            y = torch.ops.aten._weight_int8pack_mm(x2, self.weight, self.scale)
        else:
            y = torch.ops.quantized.int4mm_packed_weight_cpu(x2, self.weight, self.group_size, self.scale)
        return y.float().reshape(*x.shape[:-1], self.n_out)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantised rows W[ids] as fp32: an embedding lookup in this matrix."""
        if self.kind == "none":
            return F.embedding(ids, self.weight)
        if self.kind == "int8":
            q = kernels.q8_rows(self.weight, ids) if self.ours else self.weight[ids]
            return q.float() * self.scale[ids].float().unsqueeze(-1)
        if self.ours:
            return kernels.q4_rows(self.weight, ids)
        raise NotImplementedError("rows of a matrix in PyTorch's int4 layout (such embeddings are kept at int8)")

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())

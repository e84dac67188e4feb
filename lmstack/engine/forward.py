"""The inference forward pass: `lmstack.model.Transformer`'s weights, rearranged for decoding.

Same arithmetic as the model (the same RMSNorm, the same RoPE function, the same attention call in
prefill), with three changes that only affect speed:
- Q, K and V are one matrix, and so are the gate and up projections: five matrix products per
  layer instead of seven, which matters when each costs a few microseconds of call overhead;
- a static KV cache, per layer a (slots, kv heads, context, head dim) tensor for K and one for V,
  allocated once and zeroed lazily by the OS (pages cost memory only once a sequence reaches
  them); one tensor per layer, not views of one big tensor, so that `torch.compile` updates them
  in place instead of copying the whole cache;
- decoding advances several sequences at once, each at its own position: sequence b lives in
  cache slot b, and attention masks out the positions beyond its length.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmstack.engine.quant import QLinear
from lmstack.model import Transformer, apply_rope, rope_tables


class FastLayer(nn.Module):
    def __init__(self, block, quant: str):
        super().__init__()
        a, f = block.attn, block.ffn
        self.eps = block.attn_norm.eps
        self.register_buffer("attn_norm", block.attn_norm.weight.detach().float().clone())
        self.register_buffer("ffn_norm", block.ffn_norm.weight.detach().float().clone())
        self.qkv = QLinear(torch.cat([a.wq.weight, a.wk.weight, a.wv.weight]), quant)
        self.wo = QLinear(a.wo.weight, quant)
        self.gate_up = QLinear(torch.cat([f.w_gate.weight, f.w_up.weight]), quant)
        self.down = QLinear(f.w_down.weight, quant)


class FastTransformer(nn.Module):
    """Prefill one sequence into a cache slot; decode one token for each of slots 0..B-1."""

    def __init__(self, model: Transformer, quant: str = "none", max_batch: int = 8, max_seq_len: int | None = None):
        super().__init__()
        cfg = model.config
        self.config, self.quant = cfg, quant
        self.max_batch = max_batch
        self.max_seq_len = min(max_seq_len or cfg.max_seq_len, cfg.max_seq_len)
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.eps = cfg.norm_eps
        self.layers = nn.ModuleList(FastLayer(b, quant) for b in model.layers)
        self.register_buffer("norm", model.norm.weight.detach().float().clone())
        # The vocabulary matrix keeps 8 bits under int4 (as GGUF Q4 files keep their embeddings at
        # Q8_0): the logits are far more sensitive to it than to any layer. On SmolLM2-135M, 4 bits
        # here cost 20% of top-1 agreement with fp32; 8 bits cost 4%.
        vocab_quant = "int8" if quant == "int4" else quant
        self.output = QLinear(model.output.weight, vocab_quant)
        # a tied embedding is looked up in the (possibly quantised) output matrix: stored once
        self.embed = self.output if cfg.tie_embeddings else QLinear(model.tok_embeddings.weight, vocab_quant)
        cos, sin = rope_tables(cfg.head_dim, self.max_seq_len, cfg.rope_theta, getattr(cfg, "rope_scaling", 1.0))
        self.cos, self.sin = cos, sin
        shape = (max_batch, cfg.n_kv_heads, self.max_seq_len, cfg.head_dim)
        # numpy's zeros come from calloc: untouched pages stay unallocated (torch.zeros writes them all)
        self.k_cache = [torch.from_numpy(np.zeros(shape, dtype=np.float32)) for _ in range(cfg.n_layers)]
        self.v_cache = [torch.from_numpy(np.zeros(shape, dtype=np.float32)) for _ in range(cfg.n_layers)]

    def weight_bytes(self) -> int:
        """Bytes of weights held (the tied embedding counted once)."""
        n = sum(m.nbytes() for m in self.modules() if isinstance(m, QLinear))
        return n + 4 * (self.norm.numel() + sum(lay.attn_norm.numel() * 2 for lay in self.layers))

    def _split_qkv(self, x: torch.Tensor, B: int, T: int):
        q, k, v = x.split([self.n_heads * self.hd, self.n_kv * self.hd, self.n_kv * self.hd], dim=-1)
        return (q.view(B, T, self.n_heads, self.hd).transpose(1, 2), k.view(B, T, self.n_kv, self.hd).transpose(1, 2),
                v.view(B, T, self.n_kv, self.hd).transpose(1, 2))

    def _ffn(self, lay: FastLayer, x: torch.Tensor) -> torch.Tensor:
        gate, up = lay.gate_up(F.rms_norm(x, (x.shape[-1],), lay.ffn_norm, self.eps)).chunk(2, dim=-1)
        return x + lay.down(F.silu(gate) * up)

    def prefill(self, tokens: torch.Tensor, slot: int, all_logits: bool = False) -> torch.Tensor:
        """tokens (T,) from position 0 into cache slot `slot`; logits (V,) of the last position, or (T, V)."""
        T = tokens.shape[0]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.embed.rows(tokens).unsqueeze(0)
        for i, lay in enumerate(self.layers):
            q, k, v = self._split_qkv(lay.qkv(F.rms_norm(x, (x.shape[-1],), lay.attn_norm, self.eps)), 1, T)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            self.k_cache[i][slot, :, :T] = k[0]
            self.v_cache[i][slot, :, :T] = v[0]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_heads)
            x = self._ffn(lay, x + lay.wo(y.transpose(1, 2).reshape(1, T, -1)))
        x = x[0] if all_logits else x[0, -1]
        return self.output(F.rms_norm(x, (x.shape[-1],), self.norm, self.eps))

    def decode(self, tokens: torch.Tensor, pos: torch.Tensor, length: int) -> torch.Tensor:
        """One token per slot 0..B-1: tokens (B,) at positions pos (B,) -> logits (B, V).

        `length` = max(pos) + 1 bounds the attention span; shorter sequences mask the rest."""
        return self.decode_span(tokens, pos, torch.arange(length))

    def decode_span(self, tokens: torch.Tensor, pos: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        """decode() with the span as the tensor arange(length): a size torch.compile can be told is
        dynamic before its first call, so the step compiles once rather than once per length."""
        B, length = tokens.shape[0], span.shape[0]
        cos, sin = self.cos[pos].view(B, 1, 1, -1), self.sin[pos].view(B, 1, 1, -1)
        hidden = (span > pos.unsqueeze(1)).view(B, 1, 1, length)  # beyond each sequence's end
        slots = torch.arange(B)
        x = self.embed.rows(tokens).unsqueeze(1)  # (B, 1, dim)
        for i, lay in enumerate(self.layers):
            x = self.decode_layer(lay, x, self.k_cache[i], self.v_cache[i], cos, sin, hidden, slots, pos)
        x = x[:, 0]
        return self.output(F.rms_norm(x, (x.shape[-1],), self.norm, self.eps))

    def decode_batch(self, tokens: torch.Tensor, pos: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        """The same as decode_span(); a separate function so that torch.compile keeps a separate graph."""
        return self.decode_span(tokens, pos, span)

    @staticmethod
    def decode_layer(lay: FastLayer, x: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, cos: torch.Tensor,
                     sin: torch.Tensor, hidden: torch.Tensor, slots: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One block for one new token per sequence."""
        B, (n_kv, hd), length = x.shape[0], (kc.shape[1], kc.shape[3]), hidden.shape[-1]
        n_heads = lay.wo.n_in // hd
        qkv = lay.qkv(F.rms_norm(x, (x.shape[-1],), lay.attn_norm, lay.eps)).view(B, n_heads + 2 * n_kv, 1, hd)
        q, k = apply_rope(qkv[:, : n_heads + n_kv], cos, sin).split([n_heads, n_kv], dim=1)  # one call for both
        v = qkv[:, n_heads + n_kv:]
        kc[slots, :, pos] = k[:, :, 0]
        vc[slots, :, pos] = v[:, :, 0]
        # grouped-query attention without copying K/V: the query heads that share a KV head attend
        # as that many "positions" of one head. Written out, as for one query row this is cheaper
        # than the fused attention kernel's setup. Compiled, it is written as products and sums, which
        # Inductor fuses with the softmax into two loops; two matrix-product calls per layer cost
        # more than the arithmetic (0.5 ms of 9 per token on SmolLM2-135M).
        q, k, v = q.reshape(B, n_kv, n_heads // n_kv, hd), kc[:B, :, :length], vc[:B, :, :length]
        if torch.compiler.is_compiling():
            scores = (q.unsqueeze(-2) * k.unsqueeze(2)).sum(-1) * hd**-0.5
            p = scores.masked_fill(hidden, float("-inf")).softmax(-1)
            y = (p.unsqueeze(-1) * v.unsqueeze(2)).sum(-2)
        else:
            y = (q @ k.transpose(-1, -2) * hd**-0.5).masked_fill(hidden, float("-inf")).softmax(-1) @ v
        x = x + lay.wo(y.reshape(B, 1, -1))
        gate, up = lay.gate_up(F.rms_norm(x, (x.shape[-1],), lay.ffn_norm, lay.eps)).chunk(2, dim=-1)
        return x + lay.down(F.silu(gate) * up)

    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's cache from slot src to dst (keeps the running sequences in slots 0..B-1)."""
        for cache in self.k_cache + self.v_cache:
            cache[dst, :, :length] = cache[src, :, :length]

"""The inference forward pass: `lmstack.model.Transformer`'s weights, rearranged for decoding.

Same arithmetic as the model (the same RMSNorm, the same RoPE function, the same attention call in
prefill), with three changes that only affect speed:
- Q, K and V are one matrix, and so are the gate and up projections: five matrix products per
  layer instead of seven, which matters when each costs a few microseconds of call overhead;
- a KV cache of fixed shape whose memory grows with the tokens held (`KVCache`): the shape never
  changes, so the exported decode step never needs another graph for it, while the OS provides the memory page by
  page as tokens are written and takes it back when a sequence ends;
- decoding advances several sequences at once, each at its own position: sequence b lives in
  cache slot b, and attention masks out the positions beyond its length.
"""

from __future__ import annotations

import functools
import mmap

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmstack.engine.quant import QLinear, on_kernels
from lmstack.model import Transformer, apply_rope, rope_tables

LowRank = dict[str, torch.Tensor]  # "<layer>.a" (r, in) and "<layer>.b" (out, r): train/lora.py's `lora_update`


def _stacked(block, names: list[str], prefix: str, low_rank: LowRank | None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """The rows of several of a block's matrices as one, and, given their LoRA updates, the base
    weights (merged minus B·A) and one low-rank pair for them all: the A's stacked, the B's on the
    diagonal (zero rows for a matrix without an update)."""
    lins = [functools.reduce(getattr, n.split("."), block) for n in names]  # a lazy model's are namespaces
    w = lins[0].weight if len(lins) == 1 else torch.cat([m.weight for m in lins])
    pairs = [(low_rank[f"{prefix}{n}.a"], low_rank[f"{prefix}{n}.b"]) if low_rank and f"{prefix}{n}.a" in low_rank
             else None for n in names]
    if not any(pairs):
        return w, None
    a = torch.cat([p[0] for p in pairs if p])
    b = torch.zeros(w.shape[0], a.shape[0])
    row = col = 0
    for m, p in zip(lins, pairs, strict=True):
        if p:
            b[row:row + m.weight.shape[0], col:col + p[0].shape[0]] = p[1]
            col += p[0].shape[0]
        row += m.weight.shape[0]
    return w.float() - b @ a, (a, b)


class FastLayer(nn.Module):
    def __init__(self, block, quant: str, prefix: str = "", low_rank: LowRank | None = None):
        super().__init__()
        a = block.attn
        self.eps = block.attn_norm.eps
        self.register_buffer("attn_norm", block.attn_norm.weight.detach().float().clone())
        self.register_buffer("ffn_norm", block.ffn_norm.weight.detach().float().clone())
        biases = [a.wq.bias, a.wk.bias, a.wv.bias]  # Qwen2's; None for Llama

        def layer(*names: str, bias: torch.Tensor | None = None) -> QLinear:
            w, update = _stacked(block, list(names), prefix, low_rank)
            return QLinear(w, quant, bias=bias, low_rank=update)

        self.qkv = layer("attn.wq", "attn.wk", "attn.wv", bias=None if biases[0] is None else torch.cat(biases))
        self.wo = layer("attn.wo")
        self.gate_up = layer("ffn.w_gate", "ffn.w_up")
        self.down = layer("ffn.w_down")


class FastTransformer(nn.Module):
    """Prefill one sequence into a cache slot; decode one token for each of slots 0..B-1."""

    def __init__(self, model: Transformer, quant: str = "none", max_batch: int = 8, max_seq_len: int | None = None,
                 low_rank: LowRank | None = None):
        """`low_rank`: a LoRA fine-tune's updates, added in float beside the quantised base weights."""
        super().__init__()
        cfg = model.config
        self.config, self.quant = cfg, quant
        self.max_batch = max_batch
        self.max_seq_len = min(max_seq_len or cfg.max_seq_len, cfg.max_seq_len)
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.eps = cfg.norm_eps
        self.layers = nn.ModuleList(FastLayer(b, quant, f"layers.{i}.", low_rank) for i, b in enumerate(model.layers))
        self.low_rank = sum(int(v.shape[0]) for k, v in (low_rank or {}).items() if k.endswith(".a"))
        self.register_buffer("norm", model.norm.weight.detach().float().clone())
        # The vocabulary matrix keeps 8 bits under int4 (as GGUF Q4 files keep their embeddings at
        # Q8_0): the logits are far more sensitive to it than to any layer. On SmolLM2-135M, 4 bits
        # here cost 20% of top-1 agreement with fp32; 8 bits cost 4%.
        vocab_quant = "int8" if quant == "int4" else quant
        self.output = QLinear(model.output.weight, vocab_quant)
        # a tied embedding is looked up in the (possibly quantised) output matrix: stored once. An
        # untied one is only looked up, a row per token, so it takes the layers' type where its rows
        # can be read back (lmstack's int4 layout): Qwen2.5-0.5B's 136M-weight embedding at 4 bits
        # instead of 8 brings the engine's weights under the Q4_K_M file's, which keeps it at 5.
        embed_quant = quant if quant == "int4" and on_kernels(quant, cfg.vocab_size, cfg.dim) else vocab_quant
        self.embed = self.output if cfg.tie_embeddings else QLinear(model.tok_embeddings.weight, embed_quant)
        cos, sin = rope_tables(cfg.head_dim, self.max_seq_len, cfg.rope_theta, getattr(cfg, "rope_scaling", 1.0))
        self.register_buffer("cos", cos, persistent=False)  # buffers, so an exported step names them
        self.register_buffer("sin", sin, persistent=False)
        self.cache = KVCache(cfg.n_layers, max_batch, cfg.n_kv_heads, self.max_seq_len, cfg.head_dim,
                             kv_dtype(quant))
        self.k_cache, self.v_cache = self.cache.k, self.cache.v

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

    def prefill(self, tokens: torch.Tensor, slot: int, all_logits: bool = False,
                embeds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """tokens (T,) from position 0 into cache slot `slot`; logits (V,) of the last position, or (T, V).
        embeds = (positions (k,), vectors (k, dim)): input embeddings that replace those positions'
        token embeddings (a VLM's image features)."""
        T = tokens.shape[0]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.embed.rows(tokens).unsqueeze(0)  # (1, T, dim)
        if embeds is not None:
            x[0, embeds[0]] = embeds[1].to(x.dtype)
        for i, lay in enumerate(self.layers):
            q, k, v = self._split_qkv(lay.qkv(F.rms_norm(x, (x.shape[-1],), lay.attn_norm, self.eps)), 1, T)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            self.k_cache[i][slot, :, :T] = k[0].to(self.cache.dtype)
            self.v_cache[i][slot, :, :T] = v[0].to(self.cache.dtype)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_heads)
            x = self._ffn(lay, x + lay.wo(y.transpose(1, 2).reshape(1, T, -1)))
        x = x[0] if all_logits else x[0, -1]
        return self.output(F.rms_norm(x, (x.shape[-1],), self.norm, self.eps))

    def decode(self, tokens: torch.Tensor, pos: torch.Tensor, length: int) -> torch.Tensor:
        """One token per slot 0..B-1: tokens (B,) at positions pos (B,) -> logits (B, V).

        `length` = max(pos) + 1 bounds the attention span; shorter sequences mask the rest."""
        return self.decode_span(tokens, pos, torch.arange(length))

    def decode_span(self, tokens: torch.Tensor, pos: torch.Tensor, span: torch.Tensor,
                    caches: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> torch.Tensor:
        """decode() with the span as the tensor arange(length): a size torch.export can be told is
        dynamic, so one compiled step serves every length.
        `caches` = (K per layer, V per layer), by default this model's own: an exported step takes
        them as inputs, which it writes in place."""
        k_cache, v_cache = caches or (self.k_cache, self.v_cache)
        B, length = tokens.shape[0], span.shape[0]
        cos, sin = self.cos[pos].view(B, 1, 1, -1), self.sin[pos].view(B, 1, 1, -1)
        hidden = (span > pos.unsqueeze(1)).view(B, 1, 1, length)  # beyond each sequence's end
        slots = torch.arange(B)
        x = self.embed.rows(tokens).unsqueeze(1)  # (B, 1, dim)
        for i, lay in enumerate(self.layers):
            x = self.decode_layer(lay, x, k_cache[i], v_cache[i], cos, sin, hidden, slots, pos)
        x = x[:, 0]
        return self.output(F.rms_norm(x, (x.shape[-1],), self.norm, self.eps))

    @staticmethod
    def decode_layer(lay: FastLayer, x: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, cos: torch.Tensor,
                     sin: torch.Tensor, hidden: torch.Tensor, slots: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One block for one new token per sequence."""
        B, (n_kv, hd), length = x.shape[0], (kc.shape[1], kc.shape[3]), hidden.shape[-1]
        n_heads = lay.wo.n_in // hd
        qkv = lay.qkv(F.rms_norm(x, (x.shape[-1],), lay.attn_norm, lay.eps)).view(B, n_heads + 2 * n_kv, 1, hd)
        q, k = apply_rope(qkv[:, : n_heads + n_kv], cos, sin).split([n_heads, n_kv], dim=1)  # one call for both
        v = qkv[:, n_heads + n_kv:]
        kc[slots, :, pos] = k[:, :, 0].to(kc.dtype)
        vc[slots, :, pos] = v[:, :, 0].to(vc.dtype)
        # grouped-query attention without copying K/V: the query heads that share a KV head attend
        # as that many "positions" of one head. Written out, as for one query row this is cheaper
        # than the fused attention kernel's setup. Compiled, it is written as products and sums, which
        # Inductor fuses with the softmax into two loops; two matrix-product calls per layer cost
        # more than the arithmetic (0.5 ms of 9 per token on SmolLM2-135M).
        q, k, v = q.reshape(B, n_kv, n_heads // n_kv, hd), kc[:B, :, :length].float(), vc[:B, :, :length].float()
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
        self.cache.release(dst, length)  # what the sequence that had dst wrote beyond `length`


def kv_dtype(quant: str) -> torch.dtype:
    """float16 for quantised models, half the memory of float32 and the type llama.cpp caches in;
    their logits already move by far more than its rounding (about 5e-4 relative). Unquantised
    models keep float32, so that the engine's logits stay within 1e-4 of the model's."""
    return torch.float32 if quant == "none" else torch.float16


class KVCache:
    """K and V for every layer: per layer a (slots, kv heads, context, head dim) tensor for each,
    of fixed shape, whose memory follows the tokens actually written.

    Each tensor is its own anonymous private memory map, never given huge pages: the kernel
    provides a 4 KB page when a token is first written to it (reads of pages never written see
    the shared zero page, which costs nothing), and `release` hands pages back when a sequence
    ends. numpy's zeros, used before, asked for transparent huge pages, and each (slot, KV head)
    block of SmolLM2 is exactly 2 MB, so one token made 2 MB per block resident, 11.5 GB for 32
    short requests, kept for good. One tensor per layer, not views of one big tensor, so that
    the exported step updates them in place instead of copying the whole cache."""

    def __init__(self, n_layers: int, slots: int, n_kv: int, seq_len: int, head_dim: int, dtype: torch.dtype):
        self.shape, self.dtype = (slots, n_kv, seq_len, head_dim), dtype
        self.itemsize = torch.empty((), dtype=dtype).element_size()
        self.bytes_per_token = 2 * n_layers * n_kv * head_dim * self.itemsize  # K and V, every layer
        self._maps = [self._map() for _ in range(2 * n_layers)]
        with torch.inference_mode(False):  # ordinary tensors, even on the engine thread: compiles trace writes to them
            tensors = [torch.frombuffer(m, dtype=dtype).view(self.shape) for m in self._maps]
        self.k, self.v = tensors[:n_layers], tensors[n_layers:]

    def _map(self) -> mmap.mmap:
        m = mmap.mmap(-1, max(1, int(np.prod(self.shape))) * self.itemsize,
                      flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            m.madvise(mmap.MADV_NOHUGEPAGE)
        return m

    def release(self, slot: int, keep: int) -> None:
        """Return the memory of positions keep.. of a slot to the OS (they read as zeros after). Only
        whole pages inside the range go, so a neighbouring slot or head is never touched."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return  # the memory stays allocated (and is reused); the results do not depend on it
        _, n_kv, seq_len, hd = self.shape
        row = hd * self.itemsize
        for m in self._maps:
            for h in range(n_kv):
                base = (slot * n_kv + h) * seq_len * row
                start = -(-(base + keep * row) // mmap.PAGESIZE) * mmap.PAGESIZE
                end = (base + seq_len * row) // mmap.PAGESIZE * mmap.PAGESIZE
                if end > start:
                    m.madvise(mmap.MADV_DONTNEED, start, end - start)

    def resident_bytes(self) -> int:
        """Bytes of the cache in memory now, as the process's resident size counts them (Linux: pages
        present and mapped only here, from /proc/self/pagemap; -1 elsewhere). Pages only read, never
        written, are the kernel's shared zero page: present, but neither counted nor exclusive."""
        try:
            with open("/proc/self/pagemap", "rb") as f:
                total = 0
                for t in self.k + self.v:
                    f.seek(t.data_ptr() // mmap.PAGESIZE * 8)
                    entries = np.frombuffer(f.read(-(-t.numel() * self.itemsize // mmap.PAGESIZE) * 8), np.uint64)
                    total += int(((entries >> np.uint64(63)) & (entries >> np.uint64(56)) & np.uint64(1)).sum())
        except OSError:
            return -1
        return total * mmap.PAGESIZE

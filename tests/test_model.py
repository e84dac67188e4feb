import math
import re

import pytest
import torch
import torch.nn.functional as F

from lmstack.errors import LmstackError
from lmstack.model import PRESETS, ModelConfig, Transformer, apply_rope, preset, rope_tables
from tests.conftest import tiny_config


def reference_forward(m: Transformer, idx: torch.Tensor) -> torch.Tensor:
    """The Llama forward pass written out the long way: complex RoPE, repeated KV heads, explicit mask."""
    cfg = m.config
    T, hd = idx.shape[1], cfg.head_dim
    freqs = 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2).double() / hd)
    rot = torch.polar(torch.ones(T, hd // 2, dtype=torch.float64), torch.outer(torch.arange(T).double(), freqs))

    def rope(x):  # (B, T, H, hd), adjacent pairs as complex numbers
        xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], hd // 2, 2))
        return torch.view_as_real(xc * rot[None, :, None]).flatten(-2).float()

    def rms(x, w):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps) * w

    x = m.tok_embeddings.weight[idx]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for L in m.layers:
        h = rms(x, L.attn_norm.weight)
        q = rope((h @ L.attn.wq.weight.T).view(1, T, cfg.n_heads, hd))
        k = rope((h @ L.attn.wk.weight.T).view(1, T, cfg.n_kv_heads, hd))
        v = (h @ L.attn.wv.weight.T).view(1, T, cfg.n_kv_heads, hd)
        rep = cfg.n_heads // cfg.n_kv_heads
        k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
        att = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd) + mask
        y = torch.einsum("bhqk,bkhd->bqhd", att.softmax(-1), v).reshape(1, T, -1)
        x = x + y @ L.attn.wo.weight.T
        h = rms(x, L.ffn_norm.weight)
        x = x + (F.silu(h @ L.ffn.w_gate.weight.T) * (h @ L.ffn.w_up.weight.T)) @ L.ffn.w_down.weight.T
    return rms(x, m.norm.weight) @ m.output.weight.T


@pytest.mark.parametrize("kv", [1, 2, 4])
def test_forward_matches_the_written_out_reference(kv):
    torch.manual_seed(0)
    m = Transformer(tiny_config(50, n_kv_heads=kv, tie_embeddings=kv != 2)).eval()
    idx = torch.randint(0, 50, (1, 20))
    assert torch.allclose(m(idx), reference_forward(m, idx), atol=1e-5)


def test_rope_rotates_adjacent_pairs_and_preserves_norm():
    cos, sin = rope_tables(8, 16, 10000.0)
    x = torch.randn(1, 1, 16, 8)
    y = apply_rope(x, cos, sin)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(y[..., 0, :], x[..., 0, :])  # position 0 is not rotated
    # pair (0,1) at position 1 rotated by exactly 1 radian
    c, s = math.cos(1.0), math.sin(1.0)
    assert torch.allclose(y[0, 0, 1, 0], x[0, 0, 1, 0] * c - x[0, 0, 1, 1] * s, atol=1e-6)


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    m = Transformer(tiny_config(40)).eval()
    a = torch.randint(0, 40, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 40
    assert torch.allclose(m(a)[:, :10], m(b)[:, :10], atol=1e-6)
    assert not torch.allclose(m(a)[:, 10:], m(b)[:, 10:])


def test_loss_ignores_masked_targets_and_context_is_enforced():
    torch.manual_seed(0)
    m = Transformer(tiny_config(40))
    x = torch.randint(0, 40, (2, 8))
    y = x.clone()
    _, full = m(x, y)
    y2 = y.clone()
    y2[:, :4] = -1
    _, half = m(x, y2)
    logits = m(x)
    ref = F.cross_entropy(logits[:, 4:].reshape(-1, 40), y[:, 4:].reshape(-1))
    assert torch.allclose(half, ref, atol=1e-6) and not torch.allclose(half, full)
    with pytest.raises(ValueError, match="exceeds"):
        m(torch.zeros(1, 33, dtype=torch.long))


def test_tied_and_untied_output():
    tied, untied = Transformer(tiny_config(40)), Transformer(tiny_config(40, tie_embeddings=False))
    assert tied.output.weight is tied.tok_embeddings.weight
    assert untied.num_params() - tied.num_params() == 40 * 32


def test_presets_and_config_validation():
    for name in PRESETS:
        cfg = preset(name, vocab_size=100)
        assert cfg.ffn_dim % 32 == 0 and cfg.ffn_dim >= 8 * cfg.dim / 3  # SwiGLU's default width, rounded up
    assert ModelConfig.from_dict(preset("small").to_dict()) == preset("small")
    with pytest.raises(LmstackError, match="unknown model preset"):
        preset("gigantic")
    bad = [(dict(dim=30, n_heads=4), "dim 30 must divide by n_heads 4"),
           (dict(n_heads=8, n_kv_heads=3), "n_heads 8 must divide by n_kv_heads 3"),
           (dict(dim=36, n_heads=4, n_kv_heads=2), "head_dim = dim / n_heads = 9 must be even"),
           (dict(n_heads=0), "n_heads must be an integer >= 1, got 0"),
           (dict(max_seq_len=0), "max_seq_len must be an integer >= 1"),
           (dict(ffn_dim=-1), "ffn_dim must be an integer >= 0"),
           (dict(rope_theta=float("nan")), "rope_theta must be a finite number > 0, got nan"),
           (dict(norm_eps=0.0), "norm_eps must be a finite number > 0"),
           (dict(dim=64.0), "dim must be an integer")]
    for kw, says in bad:
        with pytest.raises(LmstackError, match=re.escape(says)):
            ModelConfig(**kw)
    with pytest.raises(ValueError, match="must divide"):  # readers of files wrap ValueErrors with the file name
        ModelConfig(dim=30, n_heads=4)

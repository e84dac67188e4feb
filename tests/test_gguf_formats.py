"""Every tensor type a llama GGUF file may use is dequantised as the `gguf` package's reference does,
by the package reader and by the run file; hyperparameters (GQA, untied output, rope theta and linear
scaling, RMS epsilon, context) come through; bad files give one clear error."""

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize as reference

from lmstack import run
from lmstack.errors import LmstackError
from lmstack.io import gguf_file
from lmstack.io.gguf_file import raw_tensors, read_gguf
from lmstack.model import Transformer
from tests.gguf_helpers import write_gguf

# byte offsets, in each block, of the fp16 scales that random bytes must not turn into inf or NaN
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
              "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "IQ4_NL": [0]}
RUN_FILE_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]


def random_tensor(qtype: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random contents of a tensor of this type as the file stores it: random quantised bytes with
    plausible scales for block formats, random numbers for float formats."""
    if qtype in ("F32", "F16", "BF16"):
        x = rng.normal(0, 1, (rows, cols)).astype(np.float32)
        if qtype == "BF16":
            return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(rows, -1)
        return x.astype(np.float16) if qtype == "F16" else x
    block, nbytes = GGML_QUANT_SIZES[Q[qtype]]
    raw = rng.integers(0, 256, (rows, cols // block, nbytes), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        scales = rng.uniform(0.001, 0.05, raw.shape[:2]).astype(np.float16)
        raw[:, :, off:off + 2] = scales.view(np.uint8).reshape(*raw.shape[:2], 2)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("qtype", RUN_FILE_TYPES)
def test_run_file_dequantises_like_the_reference(qtype):
    rng = np.random.default_rng(sum(map(ord, qtype)))
    data = random_tensor(qtype, 3, 512, rng)
    want = reference(data, Q[qtype]).reshape(3, 512)
    type_id = int(Q[qtype])
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    info = run.TensorInfo("t", (3, 512), type_id, 0, raw.size)
    got = run.dequantize(raw, info)
    assert got.dtype == np.float32 and got.shape == (3, 512)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(np.abs(want).max()))


# A 2-layer llama whose tensors use every supported type, one each, with GQA and an untied output.
DIM, FFN, VOCAB, HEADS, KV = 256, 512, 300, 4, 2
LAYOUT = {
    "token_embd.weight": ("Q8_0", VOCAB, DIM), "output.weight": ("Q6_K", VOCAB, DIM),
    "output_norm.weight": ("F32", 1, DIM),
    "blk.0.attn_norm.weight": ("F16", 1, DIM), "blk.0.ffn_norm.weight": ("BF16", 1, DIM),
    "blk.0.attn_q.weight": ("Q4_0", DIM, DIM), "blk.0.attn_k.weight": ("Q4_1", DIM // 2, DIM),
    "blk.0.attn_v.weight": ("Q5_0", DIM // 2, DIM), "blk.0.attn_output.weight": ("Q5_1", DIM, DIM),
    "blk.0.ffn_gate.weight": ("Q4_K", FFN, DIM), "blk.0.ffn_up.weight": ("Q5_K", FFN, DIM),
    "blk.0.ffn_down.weight": ("Q6_K", DIM, FFN),
    "blk.1.attn_norm.weight": ("F32", 1, DIM), "blk.1.ffn_norm.weight": ("F32", 1, DIM),
    "blk.1.attn_q.weight": ("Q2_K", DIM, DIM), "blk.1.attn_k.weight": ("Q3_K", DIM // 2, DIM),
    "blk.1.attn_v.weight": ("F16", DIM // 2, DIM), "blk.1.attn_output.weight": ("BF16", DIM, DIM),
    "blk.1.ffn_gate.weight": ("F32", FFN, DIM), "blk.1.ffn_up.weight": ("Q8_0", FFN, DIM),
    "blk.1.ffn_down.weight": ("Q4_K", DIM, FFN),
}


def write_model(path, layout=LAYOUT, arch="llama", **meta) -> dict[str, np.ndarray]:
    """Write the file; return the reference float32 value of every tensor."""
    rng = np.random.default_rng(0)
    hp = {"context_length": 64, "embedding_length": DIM, "block_count": 2, "feed_forward_length": FFN,
          "attention.head_count": HEADS, "attention.head_count_kv": KV, "rope.freq_base": 5000.0,
          "attention.layer_norm_rms_epsilon": 1e-6, **meta}
    expect, tensors = {}, {}
    for name, (qtype, rows, cols) in layout.items():
        data = random_tensor(qtype, rows, cols, rng)
        if name.endswith("norm.weight"):  # norms near 1, like trained ones
            data = np.abs(reference(data, Q[qtype])).astype(np.float32).reshape(cols) * 0.2 + 0.9
            qtype = "F32"
        expect[name] = reference(data, Q[qtype]).reshape(rows, cols).squeeze(0) if rows == 1 else \
            reference(data, Q[qtype]).reshape(rows, cols)
        tensors[name] = data if qtype in ("F32", "F16") else (data, Q[qtype])
    write_gguf(path, tensors, hp, arch)
    return expect


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    path = tmp_path_factory.mktemp("mixed") / "mixed.gguf"
    return path, write_model(path)


def test_package_reader_dequantises_every_type_and_reads_hyperparameters(mixed):
    path, expect = mixed
    g = read_gguf(path)
    cfg = g.config
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim, cfg.vocab_size) == \
        (DIM, 2, HEADS, KV, FFN, VOCAB)
    assert (cfg.max_seq_len, cfg.rope_theta, cfg.norm_eps, cfg.tie_embeddings) == (64, 5000.0, 1e-6, False)
    for name, want in expect.items():
        got = g.state_dict[gguf_file.torch_name(name)].numpy()
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert {g.tensor_types[n] for n in expect} >= set(RUN_FILE_TYPES) | {"Q2_K", "Q3_K"}
    raw = raw_tensors(path)
    assert raw["layers.0.ffn.w_gate.weight"].ggml_type == "Q4_K"
    assert raw["layers.0.ffn.w_gate.weight"].shape == (FFN, DIM)


def test_torch_model_and_run_file_agree_on_quantised_weights(mixed):
    """Same logits from the same dequantised weights: the tensors are oriented and named alike. The run
    file has no Q2_K/Q3_K, so it refuses the mixed file and gets one with those two as Q8_0."""
    path, _ = mixed
    with pytest.raises(ValueError, match="Q2_K, which this runner cannot dequantise"):
        run.load(str(path))
    swapped = {k: (("Q8_0",) + v[1:] if v[0] in ("Q2_K", "Q3_K") else v) for k, v in LAYOUT.items()}
    p2 = path.with_name("mixed2.gguf")
    write_model(p2, swapped)
    g = read_gguf(p2)
    model = Transformer(g.config).eval()
    model.load_state_dict(g.state_dict)
    ids = [5, 17, 200, 3, 99, 150, 42, 7]
    with torch.no_grad():
        ref = model(torch.tensor([ids]))[0].numpy()
    got = run.load(str(p2)).forward_many(ids, 0)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_linear_rope_scaling_is_applied_by_both(tmp_path):
    small = {k: ("F32",) + v[1:] for k, v in LAYOUT.items()}
    write_model(tmp_path / "a.gguf", small)
    write_model(tmp_path / "b.gguf", small, **{"rope.scaling.type": "linear", "rope.scaling.factor": 4.0})
    ids = list(range(1, 20))
    out = {}
    for name in ("a", "b"):
        g = read_gguf(tmp_path / f"{name}.gguf")
        model = Transformer(g.config).eval()
        model.load_state_dict(g.state_dict)
        with torch.no_grad():
            out[name] = model(torch.tensor([ids]))[0].numpy()
        got = run.load(str(tmp_path / f"{name}.gguf")).forward_many(ids, 0)
        assert np.abs(got - out[name]).max() < 1e-4 * max(1.0, np.abs(out[name]).max())
    assert read_gguf(tmp_path / "b.gguf").config.rope_scaling == 4.0
    assert np.abs(out["a"] - out["b"]).max() > 1e-3  # the scaling changed the positions


SMALL = {k: ("F32",) + v[1:] for k, v in LAYOUT.items()}
BAD = {
    "architecture": (dict(arch="gpt2"), "unsupported architecture 'gpt2'"),
    "rope scaling": (dict(**{"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0}), "rope scaling 'yarn'"),
    "head size": (dict(**{"attention.key_length": 32}), "key_length = 32 differs"),
    "partial rotary": (dict(**{"rope.dimension_count": 32}), "dimension_count = 32 differs"),
    "tensor type": (dict(layout={**SMALL, "blk.0.attn_q.weight": ("IQ4_NL", DIM, DIM)}),
                    "blk.0.attn_q.weight has unsupported type IQ4_NL"),
    "tensor name": (dict(layout={**SMALL, "blk.0.attn_q.bias": ("F32", 1, DIM)}), "unexpected tensor"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_unsupported_files_give_one_clear_error(tmp_path, case):
    kw, message = BAD[case]
    kw = dict(kw)
    write_model(tmp_path / "bad.gguf", kw.pop("layout", SMALL), **kw)
    with pytest.raises(LmstackError, match=message) as err:
        read_gguf(tmp_path / "bad.gguf")
    assert "\n" not in str(err.value)


def test_a_model_larger_than_memory_is_refused_before_loading(mixed, monkeypatch):
    path, _ = mixed
    monkeypatch.setattr(gguf_file, "available_memory", lambda: 1_000_000)
    with pytest.raises(LmstackError, match=r"needs 0\.\d GB as float32 .* memory-mapped"):
        read_gguf(path)
    monkeypatch.setattr(run.os, "sysconf", lambda name: 1000 if name == "SC_PHYS_PAGES" else 4096)
    with pytest.raises(ValueError, match="memory-mapped"):
        run.load(str(path))

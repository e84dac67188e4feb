"""lmstack's AVX2 matrix products (engine/kernels.cpp) against the same arithmetic done in float64."""

import shutil

import numpy as np
import pytest
import torch

from lmstack.engine import kernels
from lmstack.engine.quant import QLinear

pytestmark = pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"),
                                reason="the kernels are written for x86 CPUs with AVX2")


@pytest.fixture(scope="module", autouse=True)
def built():
    # a machine with a C++ compiler must build them: a failed build would silently cost the fast path
    assert shutil.which("c++") or shutil.which("g++"), "no C++ compiler to build the kernels with"
    assert kernels.build()


def rounded_activations(x: np.ndarray) -> np.ndarray:
    """x as the kernels see it: each block of 32 rounded to int8 with its own scale."""
    b = x.reshape(x.shape[0], -1, 32).astype(np.float32)
    amax = np.abs(b).max(-1, keepdims=True)
    inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0)
    q = np.rint(b * inv)  # in float32, as the kernel rounds: ties and all
    return (q.astype(np.float64) * (amax / np.float32(127)).astype(np.float64)).reshape(x.shape)


def q4_weights(n: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (n, k), generator=g)
    scale = torch.rand(n, k // 32, generator=g) * 1e-2 + 1e-4
    minimum = -torch.rand(n, k // 32, generator=g) * 0.1
    s, mn = (v.half().double().numpy()[..., None] for v in (scale, minimum))  # the float16 values it reads
    w = q.double().numpy().reshape(n, k // 32, 32) * s + mn
    return kernels.pack_q4(q, scale, minimum), w.reshape(n, k)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 9, 38])  # 38: a prefill's many rows, tiles of 4 and a remainder
@pytest.mark.parametrize("n,k", [(8, 32), (72, 96), (136, 576), (16, 1536)])
def test_q4_matches_float64(m, n, k):
    packed, w = q4_weights(n, k, seed=m)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(k))
    ref = rounded_activations(x.numpy()) @ w.T
    y = kernels.q4_mm(x, packed).double().numpy()
    assert y.shape == (m, n)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_q4_rows_are_the_weights_the_product_uses():
    """An int4 embedding lookup reads back exactly the weights pack_q4 stored, any ids, any shape."""
    packed, w = q4_weights(72, 96, seed=3)
    ids = torch.tensor([[0, 7, 8, 71], [33, 33, 9, 64]])
    rows = kernels.q4_rows(packed, ids)
    assert rows.shape == (2, 4, 96) and rows.dtype == torch.float32
    np.testing.assert_allclose(rows.double().numpy(), w[ids.numpy()], rtol=1e-6, atol=1e-7)


def test_int4_embedding_layer_reads_back_its_rows_in_blocks(monkeypatch):
    """A QLinear at int4 quantises a tall matrix block by block (as a vocabulary matrix is read from
    its file) and its rows are what its product multiplies by."""
    monkeypatch.setenv("LMSTACK_KERNELS", "lmstack")  # also where the CPU would choose PyTorch's kernels
    w = torch.randn(4096 + 136, 64, generator=torch.Generator().manual_seed(0))
    lin = QLinear(w, "int4")
    assert lin.ours and lin.weight.shape == (w.shape[0] // 8, 2, kernels.Q4_BYTES)
    ids = torch.tensor([0, 4095, 4096, 4231])
    dense = lin(torch.eye(64)).t()  # the identity's rows round exactly: each column is a stored row
    torch.testing.assert_close(lin.rows(ids), dense[ids], rtol=0, atol=1e-6)
    step = (w.reshape(-1, 2, 32).amax(-1) - w.reshape(-1, 2, 32).amin(-1)) / 15  # the quantisation step
    assert ((lin.rows(ids) - w[ids]).abs().reshape(4, 2, 32) <= step[ids, :, None] * 0.5 + 1e-3).all()


@pytest.mark.parametrize("m", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("n,k", [(64, 64), (72, 576)])
def test_q8_matches_float64(m, n, k):
    g = torch.Generator().manual_seed(m)
    q = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    s = torch.rand(n, generator=g) + 0.01
    x = torch.randn(m, k, generator=g)
    ref = rounded_activations(x.numpy()) @ (q.double().numpy() * s.double().numpy()[:, None]).T
    y = kernels.q8_mm(x, kernels.pack_q8(q), s).double().numpy()
    torch.testing.assert_close(kernels.q8_rows(kernels.pack_q8(q), torch.tensor([n - 1, 0, 9])), q[[n - 1, 0, 9]])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_quantize_gives_the_bytes_of_the_reference_packing():
    """q4_quantize (one C++ pass, what the engine loads with) against the same rounding done in
    PyTorch and packed by pack_q4, the readable statement of the layout: byte for byte."""
    w = torch.randn(24, 96) * 0.05
    w[3, :32] = 0.25  # a constant block: scale clamped, every value at the minimum
    g = w.view(24, 3, 32)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    q = ((g - lo[..., None]) / scale[..., None]).round().clamp(0, 15).reshape(24, 96)
    assert torch.equal(kernels.q4_quantize(w), kernels.pack_q4(q, scale, lo))
    with pytest.raises(RuntimeError, match="multiple of 8"):
        kernels.q4_quantize(torch.randn(12, 96))


def test_bad_shapes_are_refused():
    packed, _ = q4_weights(8, 64)
    with pytest.raises(RuntimeError, match="multiple of 32"):
        kernels.q4_mm(torch.randn(1, 48), packed)
    with pytest.raises(RuntimeError, match="do not match"):
        kernels.q4_mm(torch.randn(1, 96), packed)
    with pytest.raises(RuntimeError, match="contiguous float"):
        kernels.q4_mm(torch.randn(1, 64).double(), packed)


def test_compiled_call_matches_eager():
    packed, _ = q4_weights(64, 64)
    x = torch.randn(1, 64)
    f = torch.compile(lambda x: kernels.q4_mm(x * 2, packed) + 1, fullgraph=True)
    torch.testing.assert_close(f(x), kernels.q4_mm(x * 2, packed) + 1)


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_qlinear_uses_them_and_agrees_with_torch(quant, monkeypatch):
    """The same rounded weights through our kernel and PyTorch's: apart only by how each rounds the
    activations (int8 blocks here, bfloat16 there), far less than the weights' own rounding."""
    monkeypatch.setenv("LMSTACK_KERNELS", "lmstack")
    w = torch.randn(128, 256) * 0.05
    ours = QLinear(w, quant)
    monkeypatch.setenv("LMSTACK_KERNELS", "torch")
    theirs = QLinear(w, quant)
    assert ours.ours and ours.kind == quant and not theirs.ours
    x = torch.randn(2, 3, 256)
    y, y_torch, exact = ours(x), theirs(x), x @ w.T
    assert y.shape == (2, 3, 128)
    apart = float((y - y_torch).norm() / y_torch.norm())
    assert apart < 0.02 and apart < float((y_torch - exact).norm() / exact.norm())
    assert ours.nbytes() <= theirs.nbytes() * 1.01
    if quant == "int8":  # an embedding lookup reads the same rows back
        torch.testing.assert_close(ours.rows(torch.tensor([5, 0])), theirs.rows(torch.tensor([5, 0])), rtol=0.01,
                                   atol=1e-3)

"""lmstack's own quantised matrix products (kernels.cpp), built once per machine, and their weight layouts.

On a CPU with AVX2 but not AVX-512, PyTorch's int4 kernel multiplies in emulated bfloat16 and is the
largest part of a decode step; kernels.cpp multiplies int8-rounded activations by the int4 or int8
weights in integer dot products instead, as llama.cpp does on such CPUs. It is compiled with
PyTorch's extension builder the first time it is needed (about half a minute, then cached under
`~/.cache/lmstack/kernels/`) and registered as the operators `torch.ops.lmstack.q4_mm` and
`q8_mm`, which the exported, compiled decode step calls like any other. Where it cannot be built (no C++ compiler) or
the CPU has AVX-512, `available()` is False and the engine keeps PyTorch's kernels.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from functools import cache
from pathlib import Path

import torch

from lmstack.io.packages import cache_dir

log = logging.getLogger(__name__)
BLOCK = 32  # inputs per block of weights and of rounded activations
ROWS = 8  # weight rows per tile
Q4_BYTES = 160  # bytes of a q4 tile's block: 8 rows x 32 nibbles, then 8 float16 scales and 8 minimums
_SOURCE = Path(__file__).with_name("kernels.cpp")


def wanted() -> bool:
    """Our kernels pay where the CPU has AVX2 and no AVX-512 (there PyTorch's int4 kernel is fast).
    LMSTACK_KERNELS=torch or =lmstack overrides the choice."""
    choice = os.environ.get("LMSTACK_KERNELS", "auto")
    if choice in ("torch", "lmstack"):
        return choice == "lmstack"
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def available() -> bool:
    """Whether the engine should use these kernels: where they pay, and they build."""
    return wanted() and build()


@cache
def build() -> bool:
    """Build (or load the cached build of) kernels.cpp; False, with one warning, where that fails."""
    from torch.utils import cpp_extension
    where = cache_dir() / "kernels" / f"torch-{torch.__version__}"
    where.mkdir(parents=True, exist_ok=True)
    bin_dir = os.path.dirname(sys.executable)  # the environment's ninja, if it is not on PATH
    if shutil.which("ninja") is None and os.path.exists(os.path.join(bin_dir, "ninja")):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    try:
        cpp_extension.load("lmstack_kernels", [str(_SOURCE)], build_directory=str(where), is_python_module=False,
                           extra_cflags=["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp"],
                           extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as e:  # no compiler, no ninja, a failed build: PyTorch's kernels still work
        log.warning("lmstack's AVX2 kernels could not be built (%s); using PyTorch's",
                    str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__)
        return False
    _register_shapes()
    return True


def _register_shapes() -> None:
    """What the operators return, for torch.export's tracing (which runs them on shapes, not data)."""
    torch.library.register_fake("lmstack::q4_mm")(lambda x, w: x.new_empty(x.shape[0], w.shape[0] * ROWS))
    torch.library.register_fake("lmstack::q8_mm")(lambda x, w, s: x.new_empty(x.shape[0], w.shape[0] * ROWS))


def fits(n_out: int, n_in: int) -> bool:
    """The kernels take whole tiles of 8 output rows and whole blocks of 32 inputs."""
    return n_out % ROWS == 0 and n_in % BLOCK == 0


def pack_q4(q: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor) -> torch.Tensor:
    """Integer weights 0..15 (N, K) with a scale and a minimum per group of 32 (N, K/32), in the tiled
    layout kernels.cpp reads (described at its top): (N/8, K/32, 160) bytes."""
    n, k = q.shape
    t, nb = n // ROWS, k // BLOCK
    g = q.to(torch.uint8).reshape(t, ROWS, nb, 4, 2, 4)  # tile, row, block, chunk, low/high, input
    nibbles = (g[..., 0, :] | (g[..., 1, :] << 4)).permute(0, 2, 3, 1, 4).reshape(t, nb, 128)

    def halves(v):  # (N, K/32) -> float16 bytes (N/8, K/32, 16), the tile's 8 rows side by side
        return v.to(torch.float16).reshape(t, ROWS, nb).transpose(1, 2).contiguous().view(torch.uint8)
    return torch.cat([nibbles, halves(scale), halves(minimum)], -1).contiguous()


def q8_shape(n_out: int, n_in: int) -> tuple[int, int, int]:
    """(tiles, blocks, bytes a tile's block): 8 chunks of 4 inputs for each of the tile's rows."""
    return n_out // ROWS, n_in // BLOCK, 8 * ROWS * 4


def pack_q8(q: torch.Tensor) -> torch.Tensor:
    """int8 weights (N, K) in the tiled layout: (N/8, K/32, 256)."""
    n, k = q.shape
    t, nb, _ = shape = q8_shape(n, k)
    return q.reshape(t, ROWS, nb, 8, 4).permute(0, 2, 3, 1, 4).reshape(shape).contiguous()


def q8_rows(packed: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` of a packed int8 matrix, back in (len(ids), K) order: an embedding lookup."""
    t, nb, _ = packed.shape
    rows = packed.view(t, nb, 8, ROWS, 4)[ids // ROWS, :, :, ids % ROWS, :]  # (..., K/32, 8, 4)
    return rows.reshape(*ids.shape, nb * BLOCK)


def q4_rows(packed: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` of a packed int4 matrix as float32 (len(ids), K): minimum + q * scale, an
    embedding lookup. Inverts pack_q4's layout: a block's 128 bytes are (chunk, row, input) with
    inputs chunk*8 + i in the low nibbles and chunk*8 + 4 + i in the high ones."""
    t, nb, _ = packed.shape
    flat = ids.reshape(-1)
    tiles, r = packed[flat // ROWS], flat % ROWS  # (n, K/32, 160)
    n = flat.shape[0]
    pick = torch.arange(n)
    nib = tiles[..., :128].reshape(n, nb, 4, ROWS, 4)[pick, :, :, r]  # (n, K/32, chunk, input)
    q = torch.stack([nib & 15, nib >> 4], -2).reshape(n, nb, BLOCK).float()  # (chunk, half, input) order

    def half(lo):  # the 8 rows' float16 values at bytes lo..lo+16 of each block -> this row's (n, K/32, 1)
        return tiles[..., lo:lo + 16].contiguous().view(torch.float16)[pick, :, r].float().unsqueeze(-1)
    return (half(144) + q * half(128)).reshape(*ids.shape, nb * BLOCK)


def q4_quantize(w: torch.Tensor) -> torch.Tensor:
    """float weights (N, K) rounded to q4 (groups of 32 from their minimum in 15 steps) and packed, in
    one pass: the bytes pack_q4 gives for the same rounding, without its temporaries."""
    return torch.ops.lmstack.q4_quantize(w.float().contiguous())


def q4_mm(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.lmstack.q4_mm(x, packed)


def q8_mm(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.ops.lmstack.q8_mm(x, packed, scale)

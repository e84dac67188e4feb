"""The machine's own matmul peak: the denominator of model FLOPs utilisation on any device."""

from __future__ import annotations

import time

import torch


def measure_matmul_peak(device: str = "cpu", n: int = 1024, seconds: float = 0.5,
                        dtype: torch.dtype = torch.float32) -> float:
    """Best FLOP/s of an n x n matmul over a short loop; the best repeat filters out noise. Where one
    matmul outlasts the loop (bf16 on a CPU without bf16 units runs at about 1 GFLOP/s), that one
    timing is the answer, so measuring never costs much more than `seconds`."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = (torch.cuda.synchronize if device.startswith("cuda") else torch.mps.synchronize if device == "mps"
            else (lambda: None))
    t = time.perf_counter()
    a @ b
    sync()
    first = time.perf_counter() - t
    if first > seconds:
        return 2 * n**3 / first
    for _ in range(2):
        a @ b
    sync()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


def gpu_hours(budget_flops: float, peak_flops: float, mfu: float) -> float:
    """Device-hours to spend a training budget: FLOPs / (peak FLOP/s of one device x MFU) / 3600.

    Divide by the number of devices for wall-clock hours, if the MFU holds at that scale.
    """
    if not (budget_flops > 0 and peak_flops > 0 and 0 < mfu <= 1):
        raise ValueError("gpu_hours needs a positive budget and peak and an MFU in (0, 1]")
    return budget_flops / (peak_flops * mfu) / 3600

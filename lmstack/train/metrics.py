"""Metrics as JSONL (one object per line) and a loss-curve PNG drawn from them."""

from __future__ import annotations

import json
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.files import atomic_write, read_jsonl


class MetricsLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict]:
        """Every logged row. A torn last line (a crash mid-append) is dropped; a bad earlier one is an error."""
        if not self.path.exists():
            return []
        rows = [r for _, r in read_jsonl(self.path, torn_tail_ok=True)]
        bad = next((r for r in rows if not isinstance(r, dict) or not isinstance(r.get("step"), int)), None)
        if bad is not None:
            raise LmstackError(f"{self.path}: a row without an integer 'step': {json.dumps(bad)[:80]}")
        return rows

    def torn(self) -> bool:
        """Whether the file ends in a partial line: every complete row ends with a newline."""
        return self.path.exists() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")

    def truncate_after(self, step: int) -> None:
        """On resume: drop rows logged after the checkpoint, so the curve continues seamlessly."""
        keep = [r for r in self.rows() if r["step"] <= step]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def plot(self, png: str | Path, title: str = "") -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        tr = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        va = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        fig, ax = plt.subplots(figsize=(7, 4))
        if tr:
            ax.plot(*zip(*tr, strict=True), label="train loss", lw=1)
        if va:
            ax.plot(*zip(*va, strict=True), "o-", label="val loss", ms=3)
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if tr or va:  # an empty legend is a warning
            ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)

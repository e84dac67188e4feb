"""Checkpoints: written atomically, read with a clear error when they do not fit.

A checkpoint is written to a temporary file in the same directory and renamed over the old one, so a
crash or Ctrl-C mid-write leaves the previous checkpoint intact: work is never lost.

A checkpoint is read with `weights_only=True`: PyTorch's restricted unpickler, which rebuilds only
tensors and plain containers (dict, list, str, numbers) and refuses any other object, so a crafted
`ckpt.pt` cannot run code when a run directory is opened. Checkpoints therefore hold nothing else.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from lmstack.errors import LmstackError
from lmstack.io.files import atomic_open


def save_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise LmstackError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise LmstackError(f"checkpoint {path} holds objects other than tensors and plain values: "
                           "refused (loading it could run code)") from None
    except Exception as e:
        raise LmstackError(f"checkpoint {path} is unreadable or corrupt ({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise LmstackError(f"{path} is not an lmstack checkpoint")
    return state


def config_mismatch(saved: dict, wanted: dict) -> str | None:
    """Describe how two model configs differ, or None when they agree."""
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs requested {wanted.get(k)!r}"
             for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]
    return "; ".join(diffs) or None

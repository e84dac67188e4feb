"""Checkpoints are data: opening one must never run code, whatever the file holds."""

import os
import pickle
import zipfile

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint, save_checkpoint


class _Payload:
    """Unpickling this calls os.system: what a crafted ckpt.pt would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {}, "model_config": {}, "evil": _Payload(marker)}, path)
    with pytest.raises(LmstackError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_raw_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    path.write_bytes(pickle.dumps(_Payload(marker)))  # an old-style, non-zip pickle
    with pytest.raises(LmstackError):
        load_checkpoint(path)
    assert not marker.exists()


def test_round_trip_and_corruption(tmp_path):
    path = tmp_path / "ckpt.pt"
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "model_config": {"dim": 3}, "step": 7,
             "train_config": {"lr": 1e-3, "schedule": "cosine"}, "elapsed": 1.5}
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert back["step"] == 7 and back["train_config"] == state["train_config"]
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert zipfile.is_zipfile(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(LmstackError, match="unreadable or corrupt"):
        load_checkpoint(path)

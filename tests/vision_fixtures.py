"""A tiny vision run for the vision interface tests (server, web chat, chat, run file).

Its weights are random but spread out, as in tests/test_vision_llamacpp.py, so answers vary with the
image: training even a tiny VLM through its three stages took minutes on the shared 2-core test
machine, and what these tests check is that every interface gives the model the same image, which
random weights show as well as trained ones.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch
from PIL import Image

from lmstack.model import preset
from lmstack.vision.encoder import VisionConfig

SMALL_VISION = dict(image_size=24, patch_size=6, dim=32, n_layers=2, n_heads=2, ffn_dim=64, scale_factor=2)


def tiny_vlm_run(out_dir, seed: int = 1):
    """A vision run directory as lmstack vision train leaves it; returns (run dir, data)."""
    from lmstack.io.files import write_json
    from lmstack.vision.train import save_vlm

    data, tok, vlm = _tiny_vlm(seed)
    save_vlm(vlm, out_dir)
    tok.save(out_dir / "tokenizer.json")
    write_json(out_dir / "run.json", {"kind": "vlm", "seed": 0, "n_train": 30, "n_val": 8})
    return out_dir, data


@functools.cache  # built once per test session: the data and the tokenizer take seconds
def _tiny_vlm(seed: int):
    from lmstack.vision.data import build_data
    from lmstack.vision.train import default_tokenizer
    from lmstack.vision.vlm import IMAGE_PAD, VLM, VLMConfig

    data = build_data(24, seed=0, n_train=30, n_val=8)
    tok = default_tokenizer(data, 300)
    torch.manual_seed(seed)
    cfg = VLMConfig(VisionConfig(**SMALL_VISION), preset("nano", vocab_size=tok.vocab_size), tok.special(IMAGE_PAD))
    vlm = VLM(cfg).eval()
    with torch.no_grad():  # spread-out weights: answers that vary with the image, not one fixed string
        for name, p in vlm.named_parameters():
            if p.dim() == 2 and name != "encoder.position_embd":
                p.normal_(0, 0.9 / p.shape[1] ** 0.5)
    return data, tok, vlm


def png_bytes(img: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt)
    return buf.getvalue()

"""A VLM behind the engine: the language model is an ordinary `Engine`, the image features its input
embeddings.

The server and the chat take a VLM from a vision run directory (vlm.pt) or an exported pair
(model.gguf with mmproj.gguf beside it). A prompt names each image with the media marker; `prompt`
expands every marker into the image's layout (vlm.py) and returns, with the expanded ids, a function
that encodes the images and says which positions their features take. The engine calls it on its
own thread when it prefills the prompt, so the encoder runs where the model runs, and the reply is
then decoded in the same batch as every other request, text or image.
"""

from __future__ import annotations

import collections
import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lmstack.engine import Engine
from lmstack.errors import LmstackError
from lmstack.io.tokenizer import Tokenizer
from lmstack.vision.preprocess import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, image_views, load_image
from lmstack.vision.vlm import IMAGE_PAD, VLM, expand_images, image_layout

FEATURE_CACHE = 256  # images whose features are kept (the default model: 2 KB each)
MMPROJ = "mmproj.gguf"  # the name lmstack export gives the encoder's file, looked for beside model.gguf


class VisionModel:
    """A VLM's encoder and projector beside an Engine over its language model."""

    def __init__(self, vlm: VLM, tokenizer: Tokenizer, chat_template: str | None = None,
                 max_image_bytes: int = MAX_IMAGE_BYTES, max_image_pixels: int = MAX_IMAGE_PIXELS, **engine_kw):
        self.vlm, self.tokenizer = vlm.eval(), tokenizer
        self.max_image_bytes, self.max_image_pixels = max_image_bytes, max_image_pixels
        self._cache: collections.OrderedDict[bytes, torch.Tensor] = collections.OrderedDict()
        self.engine = Engine(vlm.lm, tokenizer, chat_template=chat_template, **engine_kw)

    @property
    def min_image_tokens(self) -> int:
        """The fewest positions an image takes in a prompt (one tile and the global view)."""
        return 2 * self.vlm.config.vision.tokens_per_view

    def load_image(self, data: bytes | str | Path, what: str = "image") -> np.ndarray:
        """(H, W, 3) uint8 from a file's bytes or path, within this model's limits (one-line errors)."""
        return load_image(data, what, self.max_image_bytes, self.max_image_pixels)

    def prompt(self, ids: list[int], images: list[np.ndarray]) -> tuple[list[int], Callable | None]:
        """(ids with each media marker expanded into its image's layout, the engine's `embeds` or None)."""
        cfg, tok = self.vlm.config.vision, self.tokenizer
        views, layouts = [], []
        for img in images:
            v, rows, cols = image_views(img, cfg)
            views.append((hashlib.sha256(v.numpy().tobytes()).digest(), v))
            layouts.append(image_layout(tok, rows, cols, cfg.tokens_per_view))
        ids, _ = expand_images(tok, ids, [False] * len(ids), layouts)
        if not images:
            return ids, None
        pad = tok.special(IMAGE_PAD)
        positions = torch.tensor([i for i, t in enumerate(ids) if t == pad])

        @functools.cache  # the choices of one request (n > 1) share one encoding
        def embeds() -> tuple[torch.Tensor, torch.Tensor]:
            return positions, torch.cat([self._features(key, v) for key, v in views])  # (k, lm dim)

        return ids, embeds

    def _features(self, key: bytes, views: torch.Tensor) -> torch.Tensor:
        """An image's features, from the cache of recent images when it is there: a conversation sends
        its images again with every turn, and an evaluation asks several questions about each image.
        Called on the engine's thread only, so the cache needs no lock."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        with torch.no_grad():
            feats = self.vlm.image_features(views).flatten(0, 1)
        self._cache[key] = feats
        if len(self._cache) > FEATURE_CACHE:
            self._cache.popitem(last=False)
        return feats

    def close(self) -> None:
        self.engine.close()


def find_pair(path: str | Path) -> tuple[Path, Path] | None:
    """(model.gguf, mmproj.gguf) when `path` is a GGUF file with mmproj.gguf beside it, or a directory
    holding both; None otherwise."""
    p = Path(path)
    model = p / "model.gguf" if p.is_dir() else p
    mmproj = model.with_name(MMPROJ)
    if model.suffix == ".gguf" and model.name != MMPROJ and model.is_file() and mmproj.is_file():
        return model, mmproj
    return None


def is_vision_model(path: str | Path) -> bool:
    """A vision run directory, or an exported pair the loader can find."""
    p = Path(path)
    return (p.is_dir() and (p / "vlm.pt").exists()) or find_pair(p) is not None


def open_vision(path: str | Path, **kw) -> VisionModel:
    """The VisionModel of a vision run directory or an exported pair (see find_pair); kw go to
    VisionModel (image limits) and the Engine (quant, threads, max_batch, ...)."""
    from lmstack.vision.pair import load_pair
    from lmstack.vision.train import load_vlm

    p = Path(path)
    if p.is_dir() and (p / "vlm.pt").exists():
        vlm, tok, info = load_vlm(p)
        return VisionModel(vlm, tok, info.get("chat_template"), **kw)
    pair = find_pair(p)
    if pair is None:
        raise LmstackError(f"{path} is not a vision model (a run of lmstack vision train, or model.gguf with "
                           f"{MMPROJ} beside it)")
    vlm, tok = load_pair(*pair)
    return VisionModel(vlm, tok, getattr(tok, "chat_template", None), **kw)

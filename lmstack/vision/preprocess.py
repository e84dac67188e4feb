"""Image input: read and check a file, resize and tile it to the encoder's size, normalise.

Idefics3's rule, as llama.cpp applies it: the image is resized (aspect kept, each side rounded up
to a multiple of the encoder size, the longest at most `max_tiles` tiles) and cut into tiles, and
a global view of the whole image resized to the encoder size follows them. An image no larger
than the encoder gets one tile and the global view. Pixels become (x / 255 - mean) / std.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.vision.encoder import VisionConfig

MAX_IMAGE_BYTES = 20 << 20  # a larger file is refused before it is decoded
MAX_IMAGE_PIXELS = 4096 * 4096  # width x height, checked from the header before decoding


def load_image(source: str | Path | bytes, what: str = "image", max_bytes: int = MAX_IMAGE_BYTES,
               max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a file path or bytes; one-line LmstackError for anything else."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, bytes):
        data = source
    else:
        p = Path(source)
        if not p.is_file():
            raise LmstackError(f"{what} {p} does not exist")
        if p.stat().st_size > max_bytes:
            raise LmstackError(f"{what} {p} is {p.stat().st_size:,} bytes, more than the {max_bytes:,} allowed")
        data = p.read_bytes()
    if len(data) > max_bytes:
        raise LmstackError(f"{what} is {len(data):,} bytes, more than the {max_bytes:,} allowed")
    if not data:
        raise LmstackError(f"{what} is empty")
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise LmstackError(f"{what} is {w}x{h} pixels, more than the {max_pixels:,} allowed")
        img.load()  # decodes now: a truncated or corrupt file fails here, not later
        rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise LmstackError(f"{what} is not an image Pillow can read (PNG, JPEG, PPM, ...)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise LmstackError(f"{what} is corrupt or truncated: {e}") from None
    return np.asarray(rgb, dtype=np.uint8)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if img.shape[1] == width and img.shape[0] == height:
        return img
    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BICUBIC))


def tile_grid(height: int, width: int, cfg: VisionConfig) -> tuple[int, int]:
    """(rows, cols) of tiles: each side rounded up to whole tiles, the longest at most max_tiles."""
    S = cfg.image_size
    scale = min(1.0, cfg.max_tiles * S / max(height, width))
    return (max(1, math.ceil(height * scale / S)), max(1, math.ceil(width * scale / S)))


def normalise(img: np.ndarray | torch.Tensor, cfg: VisionConfig) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32, (x / 255 - mean) / std: one image or a batch, in
    torch ops only, so a compiled training step traces through it."""
    x = torch.from_numpy(np.array(img, dtype=np.uint8)) if isinstance(img, np.ndarray) else img
    x = x.float().div(255).movedim(-1, -3)
    mean = torch.tensor(cfg.image_mean, device=x.device).view(3, 1, 1)
    std = torch.tensor(cfg.image_std, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def image_views(img: np.ndarray, cfg: VisionConfig) -> tuple[torch.Tensor, int, int]:
    """(views (rows*cols + 1, 3, S, S), rows, cols): the tiles row by row, then the global view."""
    S = cfg.image_size
    rows, cols = tile_grid(img.shape[0], img.shape[1], cfg)
    big = _resize(img, cols * S, rows * S)
    tiles = [big[r * S:(r + 1) * S, c * S:(c + 1) * S] for r in range(rows) for c in range(cols)]
    views = [normalise(t, cfg) for t in tiles] + [normalise(_resize(img, S, S), cfg)]
    return torch.stack(views), rows, cols

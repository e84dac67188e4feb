"""image_url content parts -> pixels: data URLs and local files; remote URLs are refused.

The server has no network to fetch from, and fetching a URL a client names would let any client
make the server connect anywhere, so http(s) URLs are a 400 that says to send a data URL. A local
file (`file://` or a plain path) is read only from the folder the server was started with
(`--image-dir`), after resolving links: otherwise any client could make the server read, and learn
about, any file its process can. Every failure is a 400
naming the content part, with the image checks of vision/preprocess.py (not an image, corrupt or
truncated, over the model's byte or pixel limit).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from lmstack.errors import LmstackError
from lmstack.serve.protocol import ApiError


def read_image(url: str, param: str, vision, image_dir: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 of one image_url, checked within `vision`'s limits (a VisionModel); a local file
    only from inside `image_dir`."""
    def bad(msg: str) -> ApiError:
        return ApiError(400, f"{param}: {msg}", param, "invalid_image")

    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        head, comma, payload = url.partition(",")
        if not comma or not head.endswith(";base64"):
            raise bad("a data URL must be base64-encoded (data:image/png;base64,...)")
        if len(payload) // 4 * 3 > vision.max_image_bytes + 2:  # before decoding it
            raise bad(f"the image is over the {vision.max_image_bytes:,} bytes allowed")
        try:
            source, what = base64.b64decode(payload, validate=True), "the image"
        except (binascii.Error, ValueError):
            raise bad("the data URL's base64 is not valid") from None
    elif scheme in ("http", "https"):
        raise bad("remote image URLs are not fetched (the server does not go to the network): send the image "
                  "as a data URL (data:image/png;base64,...)")
    elif scheme == "file":
        source, what = _local(unquote(urlparse(url).path), image_dir, bad), "image"
    elif "://" in url:
        raise bad(f"unsupported image URL scheme {scheme!r}: send a data URL or a local file path")
    else:
        source, what = _local(url, image_dir, bad), "image"
    try:
        return vision.load_image(source, what)
    except LmstackError as e:
        raise bad(str(e)) from None


def _local(path: str, image_dir: str | None, bad) -> str:
    if image_dir is None:
        raise bad("this server reads no local files (start it with --image-dir DIR to allow images from DIR): "
                  "send the image as a data URL")
    root, target = Path(image_dir).resolve(), Path(image_dir, path).resolve()
    if not target.is_relative_to(root):
        raise bad("local images are read only from the server's --image-dir")
    return str(target)


def read_images(images: list[tuple[str, str]], vision, image_dir: str | None = None) -> list[np.ndarray]:
    return [read_image(url, param, vision, image_dir) for url, param in images]

"""Offline, seeded images with captions and questions: handwritten digits and rendered scenes.

Real images are scikit-learn's bundled handwritten digits (read from its csv.gz: no pickle, no
network). Scenes are drawn with Pillow: one shape (shape, colour, size, position), 1-6 copies of a
shape (counting), or a printed word or number (reading). Every image comes with a caption and
question-answer pairs whose answers are short, so accuracy is exact match. Generation depends only
on the seed; the held-out split is by image (digits by a seeded permutation, scenes drawn from a
separate seed stream, and any held-out picture equal to a training one dropped).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lmstack.checks import check_float, check_int
from lmstack.errors import LmstackError

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40),
           "purple": (170, 60, 220), "white": (245, 245, 245)}
POSITIONS = {"top left": (0.27, 0.27), "top right": (0.73, 0.27), "bottom left": (0.27, 0.73),
             "bottom right": (0.73, 0.73), "center": (0.5, 0.5)}
SIZES = {"small": 0.13, "large": 0.23}  # radius as a fraction of the side
WORDS = ("cat", "dog", "sun", "red", "box", "cup", "hat", "map", "pen", "key", "owl", "fox", "bee", "jam",
         "tree", "fish", "bird", "moon", "star", "ship", "book", "lamp", "frog", "rain")
QUESTIONS = {
    "digit": "Which digit is this?",
    "shape": "What shape is this?",
    "colour": "What colour is the shape?",
    "size": "Is the shape small or large?",
    "position": "Where is the shape?",
    "count": "How many shapes are there?",
    "text": "What does the text say?",
}
CAPTION_PROMPT = "Describe the image."


@dataclass
class Sample:
    """One image (H, W, 3 uint8), its caption and its (question type, question, answer) triples."""

    image: np.ndarray
    caption: str
    qa: list[tuple[str, str, str]] = field(default_factory=list)
    kind: str = ""


@dataclass
class VisionData:
    """Training and held-out samples; `redraw(e)` gives epoch e's training images (None: `train` every epoch)."""

    train: list[Sample]
    val: list[Sample]
    redraw: Callable[[int], list[Sample]] | None = None

    def epoch(self, e: int) -> list[Sample]:
        return self.train if e == 0 or self.redraw is None else self.redraw(e)


def _digits_csv() -> Path:
    import sklearn.datasets

    p = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    if not p.is_file():
        raise LmstackError(f"scikit-learn's bundled digits are missing ({p})")
    return p


def digit_samples(size: int) -> list[Sample]:
    """The 1,797 bundled 8x8 digits, ink white on black, scaled up to size x size (nearest)."""
    with gzip.open(_digits_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    out = []
    for row in table:
        img = (row[:64].reshape(8, 8) * (255 / 16)).round().astype(np.uint8)
        rep = -(-size // 8)
        big = np.kron(img, np.ones((rep, rep), dtype=np.uint8))[:size, :size]
        label = str(int(row[64]))
        out.append(Sample(np.repeat(big[:, :, None], 3, axis=2), f"a handwritten {label}",
                          [("digit", QUESTIONS["digit"], label)], "digit"))
    return out


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    return None


def _draw(draw, shape: str, cx: float, cy: float, r: float, rgb) -> None:
    poly = _polygon(shape, cx, cy, r)
    if poly is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    else:
        draw.polygon(poly, fill=rgb)


def _canvas(size: int):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (0, 0, 0))
    return img, ImageDraw.Draw(img)


def shape_scene(rng: np.random.Generator, size: int) -> Sample:
    shape, colour = SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))]
    where, big = list(POSITIONS)[rng.integers(len(POSITIONS))], list(SIZES)[rng.integers(len(SIZES))]
    img, draw = _canvas(size)
    fx, fy = POSITIONS[where]
    jitter = rng.uniform(-0.04, 0.04, 2) * size
    _draw(draw, shape, fx * size + jitter[0], fy * size + jitter[1], SIZES[big] * size, COLOURS[colour])
    qa = [("shape", QUESTIONS["shape"], shape), ("colour", QUESTIONS["colour"], colour),
          ("size", QUESTIONS["size"], big), ("position", QUESTIONS["position"], where)]
    return Sample(np.asarray(img), f"a {big} {colour} {shape} at the {where}", qa, "shape")


def count_scene(rng: np.random.Generator, size: int) -> Sample:
    n = int(rng.integers(1, 7))
    shape, colour = SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))]
    r = 0.085 * size
    img, draw = _canvas(size)
    centres: list[tuple[float, float]] = []
    while len(centres) < n:  # rejection sampling: copies never touch, so every one is countable
        c = tuple(rng.uniform(r + 1, size - r - 1, 2))
        if all((c[0] - a) ** 2 + (c[1] - b) ** 2 > (2.4 * r) ** 2 for a, b in centres):
            centres.append(c)
    for cx, cy in centres:
        _draw(draw, shape, cx, cy, r, COLOURS[colour])
    plural = shape + ("s" if n > 1 else "")
    return Sample(np.asarray(img), f"{n} {colour} {plural}", [("count", QUESTIONS["count"], str(n))], "count")


def text_scene(rng: np.random.Generator, size: int, numbers: float = 0.5, max_digits: int = 2) -> Sample:
    """A printed word or, with chance `numbers` (at least a half), a number 0-99; with `max_digits`
    above 2, a number of 1 to max_digits digits, each length as likely (training only: a model that
    must read 10,000 numbers cannot learn each as a picture of its own)."""
    from PIL import ImageFont

    is_word = bool(rng.integers(2))
    if is_word and numbers > 0.5:  # the extra draws only then: by default the stream is the held-out one
        is_word = rng.random() >= 2 * numbers - 1
    if is_word:
        text = WORDS[rng.integers(len(WORDS))]
    elif max_digits > 2:
        n = int(rng.integers(1, max_digits + 1))
        text = str(int(rng.integers(10 ** (n - 1) if n > 1 else 0, 10**n)))
    else:
        text = str(int(rng.integers(0, 100)))
    img, draw = _canvas(size)
    font = ImageFont.load_default(size=int(0.27 * size))
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    w, h = x1 - x0, y1 - y0
    x = rng.uniform(0, max(size - w, 0)) - x0
    y = rng.uniform(0, max(size - h, 0)) - y0
    draw.text((x, y), text, fill=(255, 255, 255), font=font)
    caption = f"the word {text}" if is_word else f"the number {text}"
    return Sample(np.asarray(img), caption, [("text", QUESTIONS["text"], text)], "text")


SCENES = {"shape": shape_scene, "count": count_scene, "text": text_scene}


def _key(img: np.ndarray) -> bytes:
    return hashlib.sha256(img.tobytes()).digest()


def scene_samples(kind: str, n: int, seed: int, size: int, epoch: int = 0,
                  skip: set[bytes] | None = None, numbers: float = 0.5, max_digits: int = 2) -> list[Sample]:
    """n scenes of a kind from the seed's stream (epoch 0) or epoch's own stream, none whose picture is
    in skip; `numbers`, `max_digits`: text scenes' share of numbers and their longest (text_scene)."""
    rng = np.random.default_rng([seed, list(SCENES).index(kind)] + ([epoch] if epoch else []))
    kw = {"numbers": numbers, "max_digits": max_digits} if kind == "text" else {}
    out: list[Sample] = []
    while len(out) < n:
        s = SCENES[kind](rng, size, **kw)
        if not skip or _key(s.image) not in skip:
            out.append(s)
    return out


def shifted(s: Sample, rng: np.random.Generator, most: int) -> Sample:
    """The sample with its picture moved by up to `most` pixels each way, the uncovered edge black."""
    dy, dx = (int(v) for v in rng.integers(-most, most + 1, 2))
    h, w = s.image.shape[:2]
    img = np.zeros_like(s.image)
    img[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        s.image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return replace(s, image=img)


def build_data(size: int, seed: int = 0, n_train: int = 3000, n_val: int = 300, val_digits: float = 0.2,
               mix: dict[str, int] | None = None, fresh: bool = False, digit_shift: int = 0,
               numbers: float = 0.5, max_digits: int = 2) -> VisionData:
    """Train and held-out samples of every kind; held-out images never appear in training. `mix`
    multiplies the training side per kind: n_train * mix[kind] scenes of each generated kind, and the
    bundled digits mix["digit"] times over (None: one of each). `fresh`: every epoch after the first
    draws new scenes (same kinds, same counts) and moves each training digit by up to `digit_shift`
    pixels each way, so a run sees new pictures every epoch while each kind keeps its share of the rows.
    `numbers`: the training text scenes' share of numbers (the held-out ones stay half and half): there
    are 100 numbers to 24 words, so at a half each number is seen a quarter as often as each word.
    `max_digits`: the training numbers' longest (held-out: 0-99)."""
    check_float("numbers", numbers, 0.5, 1)
    check_int("max_digits", max_digits, 2, 4)  # four digits at the text's size still fit the picture
    mix = {"digit": 1, **{k: 1 for k in SCENES}, **(mix or {})}
    digits = digit_samples(size)
    perm = np.random.default_rng([seed, 99]).permutation(len(digits))
    n_dv = int(round(val_digits * len(digits)))
    train_digits = [digits[i] for i in perm[n_dv:]] * mix["digit"]
    train, val = list(train_digits), [digits[i] for i in perm[:n_dv]]
    for kind in SCENES:
        train += scene_samples(kind, n_train * mix[kind], 2 * seed, size, numbers=numbers, max_digits=max_digits)
        seen = {_key(s.image) for s in train}
        val += [s for s in scene_samples(kind, n_val, 2 * seed + 1, size) if _key(s.image) not in seen]
    held_out = {_key(s.image) for s in val}

    @functools.lru_cache(maxsize=1)  # stages 1 and 2 each start their second epoch with the same draw
    def redraw(epoch: int) -> list[Sample]:
        moved = train_digits
        if digit_shift:
            rng = np.random.default_rng([seed, 98, epoch])
            moved = [shifted(s, rng, digit_shift) for s in train_digits]
            moved = [m if _key(m.image) not in held_out else s for m, s in zip(moved, train_digits, strict=True)]
        return moved + [s for kind in SCENES
                        for s in scene_samples(kind, n_train * mix[kind], 2 * seed, size, epoch, held_out, numbers,
                                               max_digits)]

    return VisionData(train, val, redraw if fresh else None)

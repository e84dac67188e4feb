"""Conversations about images -> training rows: token ids with the image layout, targets, pixels.

Each sample gives one conversation per question (and one asking for its caption); the user's
turn starts with the media marker, which `expand_images` turns into the image layout. Targets
follow SFT's rule (assistant tokens only, through `encode_chat`'s mask). Rows are one image each,
padded, and carry their image's packed pixels after the ids; a batch drops the padding columns
that all its rows share. With `group_images` an epoch visits the images in a seeded order, each
image's rows side by side, so a batch holds several questions about one image and the model encodes
that image once (`VLM.forward`); each question still has its own row, so no answer sees another's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io.conversations import encode_chat
from lmstack.io.tokenizer import Tokenizer
from lmstack.vision.data import CAPTION_PROMPT, Sample
from lmstack.vision.encoder import VisionConfig
from lmstack.vision.vlm import IMAGE_PAD, MEDIA_MARKER, expand_images, image_layout, pack_pixels, pixel_words


def chat(question: str, answer: str | None = None, image: bool = True) -> list[dict]:
    """OpenAI-style messages: the user's question (after the image's marker) and the answer."""
    msgs = [{"role": "user", "content": f"{MEDIA_MARKER}\n{question}" if image else question}]
    return msgs + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def pairs(s: Sample, captions: bool, questions: bool) -> list[tuple[str, str]]:
    out = [(CAPTION_PROMPT, s.caption)] if captions else []
    return out + ([(q, a) for _, q, a in s.qa] if questions else [])


def image_example(tok: Tokenizer, cfg: VisionConfig, question: str, answer: str) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one question about one image at the encoder size (one tile + global view)."""
    ids, mask = encode_chat(tok, chat(question, answer))  # the same for every image: callers cache it
    ids, mask = expand_images(tok, ids, mask, [image_layout(tok, 1, 1, cfg.tokens_per_view)])
    return ids[:-1], [t if m else -1 for t, m in zip(ids[1:], mask[1:], strict=True)]


def trim_padding(x: torch.Tensor, y: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of packed rows without the padding columns after its last target. The loss is the same
    (attention is causal, and those columns predict nothing), and a short example stops costing a full
    row: a real base's rows are padded for its longest caption and system prompt, so most are half empty."""
    trained = (y != -1).any(0)
    keep = int(trained.nonzero().max()) + 1 if bool(trained.any()) else y.shape[1]
    if keep == y.shape[1]:
        return x, y
    return torch.cat([x[:, :keep], x[:, seq_len:]], dim=1), y[:, :keep]


class ImageRows:
    """A BatchSource of rows (ids + packed pixels, targets): each epoch visits every row once, seeded,
    in a plain shuffle or, with `group_images`, the rows of one image together. With `redraw`, epoch
    e > 0 has the rows of redraw(e)'s images (the same count), built when first asked for; a batch
    depends only on its step, so a resumed run sees the same rows."""

    def __init__(self, tok: Tokenizer, cfg: VisionConfig, train: list[Sample], val: list[Sample], seq_len: int,
                 batch_size: int, seed: int = 0, captions: bool = True, questions: bool = True,
                 redraw: Callable[[int], list[Sample]] | None = None, group_images: bool = False):
        self.batch_size, self.seed, self.redraw, self.seq_len = batch_size, seed, redraw, seq_len
        self.group_images = group_images
        self._build = lambda samples: self._rows(tok, cfg, samples, seq_len, captions, questions)
        self.x, self.y, self.image_of = self._build(train)
        self.vx, self.vy, _ = self._build(val)
        self._epochs: dict[int, tuple] = {0: (self.x, self.y, self._order(0, self.image_of))}

    def _rows(self, tok, cfg, samples, seq_len, captions, questions) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(x, y, the index of each row's image)."""
        examples, images, image_of, cache = [], [], [], {}
        for i, s in enumerate(samples):
            pix = pack_pixels(s.image, cfg)
            for q, a in pairs(s, captions, questions):
                if (q, a) not in cache:  # answers repeat across images: render each text once
                    cache[q, a] = image_example(tok, cfg, q, a)
                x, y = cache[q, a]
                if len(x) > seq_len:
                    raise LmstackError(f"a {len(x)}-token example is longer than the {seq_len}-token rows")
                examples.append((x, y))
                images.append(pix)
                image_of.append(i)
        pad = tok.special_ids.get("<|pad|>", tok.end_of_text_id)
        xs = np.full((len(examples), seq_len), pad, dtype=np.int64)  # one example per row, padded
        ys = np.full((len(examples), seq_len), -1, dtype=np.int64)
        for r, (x, y) in enumerate(examples):
            xs[r, :len(x)], ys[r, :len(y)] = x, y
        n_pad = (xs == tok.special(IMAGE_PAD)).sum(1)
        if len(xs) and not (n_pad == 2 * cfg.tokens_per_view).all():  # VLM.forward puts one image's features there
            raise LmstackError(f"a training row must hold one image's {2 * cfg.tokens_per_view} image positions")
        px = np.stack(images) if images else np.zeros((0, pixel_words(cfg)), np.int64)
        return (torch.from_numpy(np.concatenate([xs, px], axis=1)), torch.from_numpy(ys),
                np.asarray(image_of, dtype=np.int64))

    def _order(self, epoch: int, image_of: np.ndarray) -> np.ndarray:
        """The epoch's row order: a seeded shuffle of the rows or, with `group_images`, of the images,
        each image's rows together."""
        rng = np.random.default_rng([self.seed, epoch])
        if not self.group_images:
            return rng.permutation(len(image_of))
        images, row_image = np.unique(image_of, return_inverse=True)
        place = np.empty(len(images), dtype=np.int64)
        place[rng.permutation(len(images))] = np.arange(len(images))  # each image's place in the epoch
        return np.argsort(place[row_image], kind="stable")

    def __len__(self) -> int:
        return len(self.x)

    def get(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        n, b = len(self.x), self.batch_size
        slots = np.arange(step * b, (step + 1) * b)
        xs, ys = [], []
        for epoch in np.unique(slots // n):
            sel = slots[slots // n == epoch] % n
            x, y, order = self._epoch_rows(int(epoch))
            rows = torch.from_numpy(order[sel])
            xs.append(x[rows])
            ys.append(y[rows])
        return trim_padding(torch.cat(xs), torch.cat(ys), self.seq_len)

    def _epoch_rows(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        if epoch not in self._epochs:
            if self.redraw is None:
                rows = (self.x, self.y, self._order(epoch, self.image_of))
            else:
                x, y, image_of = self._build(self.redraw(epoch))
                if len(x) != len(self.x):
                    raise LmstackError(f"epoch {epoch} has {len(x)} rows, epoch 0 {len(self.x)}")
                rows = (x, y, self._order(epoch, image_of))
            self._epochs = {e: r for e, r in self._epochs.items() if e in (0, epoch - 1)} | {epoch: rows}
        return self._epochs[epoch]

    def val_batches(self, n_batches: int):
        for i in range(0, min(len(self.vx), n_batches * self.batch_size), self.batch_size):
            yield trim_padding(self.vx[i:i + self.batch_size], self.vy[i:i + self.batch_size], self.seq_len)

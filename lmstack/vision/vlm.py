"""The vision-language model: encoder + projector + lmstack's `Transformer`, and the image layout.

A prompt names an image with the media marker `<__media__>` (llama.cpp's), in the user's text.
The marker's tokens are replaced by the image's layout, Idefics3's as llama.cpp builds it:

    for each tile (row r, column c):  <fake_token_around_image><row_r_col_c> + n x <|image_pad|>
                                      ("\\n" between tile rows)
    then the global view:             "\\n\\n" <fake_token_around_image><global-img> + n x <|image_pad|>
                                      <fake_token_around_image>

and the language model's input embeddings at the `<|image_pad|>` positions are the projected image
features, in that order (`Transformer.forward(..., embeds=...)`). Everything else is the language
model unchanged, so its GGUF export is today's.

For training, a batch row carries its image inside the input tensor: the token ids, then the
image's uint8 pixels packed eight to an int64 (`pack_pixels`). The training loop passes (x, y)
through untouched, so the one loop trains this model too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from lmstack.errors import LmstackError
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import ModelConfig, Transformer
from lmstack.vision.encoder import VisionConfig, VisionEncoder
from lmstack.vision.preprocess import normalise
from lmstack.vision.projector import Projector

MEDIA_MARKER = "<__media__>"
IMAGE_PAD = "<|image_pad|>"
AROUND = "<fake_token_around_image>"
GLOBAL = "<global-img>"
MAX_GRID = 4
TILE_TOKENS = [f"<row_{r}_col_{c}>" for r in range(1, MAX_GRID + 1) for c in range(1, MAX_GRID + 1)]
IMAGE_SPECIALS = [AROUND, GLOBAL, *TILE_TOKENS]  # added to a vocabulary that lacks them


@dataclass
class VLMConfig:
    vision: VisionConfig
    lm: ModelConfig
    image_pad_id: int

    def to_dict(self) -> dict:
        return {"vision": self.vision.to_dict(), "lm": self.lm.to_dict(), "image_pad_id": self.image_pad_id}

    @classmethod
    def from_dict(cls, d: dict) -> VLMConfig:
        return cls(VisionConfig.from_dict(d["vision"]), ModelConfig.from_dict(d["lm"]), int(d["image_pad_id"]))


class VLM(nn.Module):
    def __init__(self, cfg: VLMConfig, lm: Transformer | None = None):
        super().__init__()
        self.config = cfg
        self.encoder = VisionEncoder(cfg.vision)
        self.projector = Projector(cfg.vision.dim, cfg.vision.scale_factor, cfg.lm.dim)
        self.lm = lm if lm is not None else Transformer(cfg.lm)

    def image_features(self, views: torch.Tensor) -> torch.Tensor:
        """(V, 3, S, S) normalised views -> (V, tokens_per_view, lm dim)."""
        return self.projector(self.encoder(views), self.config.vision.grid)

    def embed(self, ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with row b's image features (B, k, dim) at its pad positions: `place`, after
        checking that every row holds exactly k of them (the training step skips the check)."""
        n = (ids == self.config.image_pad_id).sum(1)
        if features is None or not bool(n.any()):
            return self.lm.tok_embeddings(ids)
        if not bool((n == features.shape[1]).all()):
            raise LmstackError(f"the prompt holds {int(n.max())} image positions but the images give "
                               f"{features.shape[1]} features")
        return self.place(ids, features)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"):
        """x: (B, T + W) token ids then packed pixels of one image per row (see pack_pixels); a row's
        pad positions, if any, are its image's (both views: ImageRows builds them so)."""
        ids, pixels = split_packed(x, self.config.vision)
        # rows about one image (ImageRows puts them side by side) share one pass through the encoder:
        # the same features and, through the index, the sum of their gradients
        images, which = torch.unique(pixels.reshape(len(pixels), -1), dim=0, return_inverse=True)
        f = self.image_features(normalise(images.reshape(-1, *pixels.shape[1:]).to(x.device), self.config.vision))
        f = f[which.to(f.device)]
        return self.lm(ids, targets, reduction, embeds=self.place(ids, torch.cat([f, f], dim=1)))

    def place(self, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Token embeddings with row b's features (B, k, dim) at its pad positions, in order, without
        data-dependent shapes (a compiled step traces it): rows without pads are left as they are."""
        emb = self.lm.tok_embeddings(ids)
        mask = ids == self.config.image_pad_id
        slot = (mask.cumsum(1) - 1).clamp(0, features.shape[1] - 1)
        picked = features.to(emb.dtype).gather(1, slot.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        return torch.where(mask.unsqueeze(-1), picked, emb)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---- packing an image into a training row ---------------------------------------------------------
def pixel_words(cfg: VisionConfig) -> int:
    return -(-3 * cfg.image_size**2 // 8)


def pack_pixels(img: np.ndarray, cfg: VisionConfig) -> np.ndarray:
    """(S, S, 3) uint8 -> int64 words (eight pixels bytes each), appended to a row's token ids."""
    S = cfg.image_size
    if img.shape != (S, S, 3) or img.dtype != np.uint8:
        raise LmstackError(f"training images must be {S}x{S} RGB uint8, got {img.shape} {img.dtype}")
    flat = np.zeros(pixel_words(cfg) * 8, dtype=np.uint8)
    flat[: img.size] = img.reshape(-1)
    return flat.view(np.int64)


def split_packed(x: torch.Tensor, cfg: VisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T), pixels (B, S, S, 3) uint8) of packed rows."""
    w, S = pixel_words(cfg), cfg.image_size
    ids = x[:, :-w]
    raw = x[:, -w:].cpu().contiguous().view(torch.uint8)[:, : 3 * S * S]
    return ids, raw.reshape(x.shape[0], S, S, 3)


# ---- the image layout in token ids ----------------------------------------------------------------
def single_token(tok: Tokenizer, text: str) -> int:
    ids = tok.encode(text)
    if len(ids) != 1:
        raise LmstackError(f"the vocabulary has no single token for {text!r}, which llama.cpp's image layout needs")
    return ids[0]


def image_layout(tok: Tokenizer, rows: int, cols: int, n: int) -> list[int]:
    """Token ids of one image: its tiles, then its global view (n pad ids per view)."""
    if rows > MAX_GRID or cols > MAX_GRID:
        raise LmstackError(f"an image may have at most {MAX_GRID}x{MAX_GRID} tiles, got {rows}x{cols}")
    pad, around = tok.special(IMAGE_PAD), tok.special(AROUND)
    out: list[int] = []
    for r in range(rows):
        for c in range(cols):
            out += [around, tok.special(f"<row_{r + 1}_col_{c + 1}>")] + [pad] * n
        if r < rows - 1:
            out.append(single_token(tok, "\n"))
    return out + [single_token(tok, "\n\n"), around, tok.special(GLOBAL)] + [pad] * n + [around]


def expand_images(tok: Tokenizer, ids: list[int], mask: list[bool], layouts: list[list[int]]
                  ) -> tuple[list[int], list[bool]]:
    """Replace each media marker's tokens in `ids` by the next image's layout (never trained)."""
    marker = tok.encode(MEDIA_MARKER)
    out, out_mask, i, k = [], [], 0, 0
    while i < len(ids):
        if ids[i:i + len(marker)] == marker:
            if k >= len(layouts):
                raise LmstackError("the prompt names more images than were given")
            out += layouts[k]
            out_mask += [False] * len(layouts[k])
            i, k = i + len(marker), k + 1
        else:
            out.append(ids[i])
            out_mask.append(mask[i])
            i += 1
    if k != len(layouts):
        raise LmstackError(f"{len(layouts)} images given but the prompt has {k} places for them")
    return out, out_mask


def add_image_tokens(tok: Tokenizer) -> Tokenizer:
    """The tokenizer with the image layout's special tokens appended (those it lacks)."""
    from tokenizers import AddedToken

    missing = [t for t in IMAGE_SPECIALS + [IMAGE_PAD] if t not in tok.special_ids]
    if missing:
        tok.hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        tok = Tokenizer(tok.hf, chat_template=tok.chat_template)
    return tok


@torch.no_grad()
def greedy(vlm: VLM, ids: torch.Tensor, features: torch.Tensor | None, max_new: int, stop_ids) -> list[list[int]]:
    """Greedy continuations of a batch of equal-length prompts (no KV cache: prompts here are short).

    ids: (B, T) with the image layout expanded; features: (B, k, dim) image features in layout order.
    """
    emb = vlm.embed(ids, features)
    out = [[] for _ in range(ids.shape[0])]
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    stop = torch.tensor(sorted(stop_ids)) if stop_ids else torch.tensor([-1])
    for _ in range(max_new):
        if emb.shape[1] > vlm.config.lm.max_seq_len:
            raise LmstackError(f"the prompt and reply exceed the model context of {vlm.config.lm.max_seq_len} tokens")
        logits = vlm.lm(ids[:, :1].expand(-1, emb.shape[1]), embeds=emb)[:, -1]
        nxt = logits.argmax(-1)
        for b, t in enumerate(nxt.tolist()):
            if not done[b]:
                out[b].append(t)
        done |= torch.isin(nxt, stop)
        if bool(done.all()):
            break
        emb = torch.cat([emb, vlm.lm.tok_embeddings(nxt)[:, None]], dim=1)
    return [[t for t in o if t not in stop_ids] for o in out]

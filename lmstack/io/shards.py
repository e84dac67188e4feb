"""Token shards on disk and a loader that samples batches from them without reading them whole.

A corpus is tokenized once into flat binary files (uint16 when the vocabulary fits, else uint32),
documents separated by the end-of-text token, opened with `np.memmap`. Which windows a batch takes
is a pure function of (seed, step, micro-step, rank), so a resumed run sees exactly the batches an
uninterrupted one would, and each data-parallel rank reads its own windows.

The global batch of a step does not depend on how many processes share it: rank r of any world size
takes rows [r*B, (r+1)*B) of one stream of window starts, so one process with batch B*W sees exactly
what W ranks with batch B see together, and a checkpoint resumes on a different number of GPUs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io.corpora import Document
from lmstack.io.files import atomic_path, write_json
from lmstack.io.packages import cache_dir
from lmstack.io.tokenizer import Tokenizer

SHARD_TOKENS = 1 << 26  # 64M tokens per shard file
DATA_FORMAT_VERSION = 2  # bump when the shard layout or the key below changes


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_split(docs: list[Document], tok: Tokenizer, out_dir: Path, split: str) -> dict:
    """Tokenize documents into `{split}_NNN.bin` shards plus `{split}.txt` (the raw text, for compressors)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = _dtype(tok.vocab_size)
    shards, buf, n_tokens, shard_idx = [], [], 0, 0

    def flush() -> None:
        nonlocal buf, shard_idx
        if not buf:
            return
        arr = np.concatenate(buf).astype(dtype)
        name = f"{split}_{shard_idx:03d}.bin"
        with atomic_path(out_dir / name) as tmp:
            arr.tofile(tmp)
        shards.append({"file": name, "tokens": int(arr.size)})
        buf, shard_idx = [], shard_idx + 1

    pending = 0
    for i in range(0, len(docs), 256):
        chunk = docs[i : i + 256]
        for ids in tok.encode_batch([d.text for d in chunk]):
            a = np.asarray(ids + [tok.end_of_text_id], dtype=np.int64)
            buf.append(a)
            pending += a.size
            n_tokens += a.size
            if pending >= SHARD_TOKENS:
                flush()
                pending = 0
    flush()
    text = "".join(d.text for d in docs)
    (out_dir / f"{split}.txt").write_text(text, encoding="utf-8")
    return {"shards": shards, "tokens": n_tokens, "bytes": len(text.encode("utf-8")), "documents": len(docs)}


def build_dataset(train: list[Document], val: list[Document], tok: Tokenizer, out_dir: Path) -> Path:
    """Write both splits and a meta.json; meta.json is written last, so its presence means complete."""
    out_dir = Path(out_dir)
    meta = {
        "vocab_size": tok.vocab_size,
        "dtype": _dtype(tok.vocab_size).name,
        "end_of_text_id": tok.end_of_text_id,
        "train": write_split(train, tok, out_dir, "train"),
        "val": write_split(val, tok, out_dir, "val"),
    }
    write_json(out_dir / "meta.json", meta)
    return out_dir


def dataset_key(train: list[Document], val: list[Document], tok: Tokenizer) -> str:
    """The cache key of a tokenized dataset: everything that changes its tokens, and nothing else.

    That is the text of every document on each side of the split (so the corpus, the split settings
    and any edit to a file all count) and the whole tokenizer (vocabulary, merges, pre-tokenizer).
    """
    h = hashlib.sha256(f"lmstack tokens v{DATA_FORMAT_VERSION}\n".encode())
    for split, docs in (("train", train), ("val", val)):
        h.update(f"{split} {len(docs)}\n".encode())
        for d in docs:
            text = d.text.encode("utf-8", errors="surrogatepass")
            h.update(f"{len(d.name.encode())} {len(text)}\n".encode() + d.name.encode() + text)
    h.update(tok.to_str().encode())
    return h.hexdigest()[:16]


def cached_dataset(train: list[Document], val: list[Document], tok: Tokenizer, quiet: bool = True) -> Path:
    """The dataset directory for these splits in the token cache, tokenized now if it is not there yet."""
    data_dir = cache_dir() / "tokens" / dataset_key(train, val, tok)
    if not (data_dir / "meta.json").exists():
        if not quiet:
            print(f"tokenizing {len(train)} train / {len(val)} val documents into {data_dir} ...")
        build_dataset(train, val, tok, data_dir)
    return data_dir


@dataclass
class TokenSplit:
    """One split as a list of memmapped shards, addressed as if concatenated."""

    shards: list[np.ndarray]
    offsets: np.ndarray  # cumulative start of each shard

    @classmethod
    def open(cls, data_dir: Path, split: str) -> TokenSplit:
        meta_path = Path(data_dir) / "meta.json"
        if not meta_path.exists():
            raise LmstackError(f"no tokenized dataset in {data_dir} (meta.json missing)")
        meta = json.loads(meta_path.read_text())
        dtype = np.dtype(meta["dtype"])
        shards = []
        for s in meta[split]["shards"]:
            path = Path(data_dir) / s["file"]
            if not path.exists() or path.stat().st_size != s["tokens"] * dtype.itemsize:
                raise LmstackError(f"token shard {path} is missing or has the wrong size; rebuild the dataset")
            shards.append(np.memmap(path, dtype=dtype, mode="r"))
        if not shards:
            raise LmstackError(f"the {split} split in {data_dir} is empty")
        sizes = np.array([len(s) for s in shards])
        return cls(shards, np.concatenate([[0], np.cumsum(sizes)[:-1]]))

    def __len__(self) -> int:
        return int(self.offsets[-1] + len(self.shards[-1]))

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) of the concatenation (may span shard boundaries)."""
        out, pos = [], start
        while length > 0:
            i = int(np.searchsorted(self.offsets, pos, side="right") - 1)
            local = pos - int(self.offsets[i])
            piece = self.shards[i][local : local + length]
            out.append(piece)
            length -= len(piece)
            pos += len(piece)
        return np.concatenate(out).astype(np.int64)


def repeat_span(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The window with a span of it shuffled and the shuffled span repeated at its end (16 to half the window).

    Copying a span of the context (a question's numbers into a calculator call, a quoted line into a
    search query, a result into the answer) needs induction heads. Plays seldom repeat themselves
    within a window, and a repeat of plain text is mostly predictable without looking back, so a small
    model pretrained on either has no reason to form them; a shuffled span can only be predicted the
    second time by copying it. How many steps that takes is measured in docs/tools.md.
    """
    n = len(window)
    length = int(rng.integers(16, max(n // 2, 17)))
    keep = n - length
    start = int(rng.integers(0, keep - length + 1))
    span = rng.permutation(window[start : start + length])
    return np.concatenate([window[:start], span, window[start + length : keep], span])


class Batches:
    """Random windows of seq_len+1 tokens; inputs are the first seq_len, targets the last seq_len.

    With copy_fraction > 0 that share of training rows ends in a repeat of an earlier span of the
    row (`repeat_span`); validation windows are always plain text.
    """

    def __init__(self, data_dir: Path, seq_len: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, copy_fraction: float = 0.0):
        self.train = TokenSplit.open(data_dir, "train")
        self.val = TokenSplit.open(data_dir, "val")
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.copy_fraction = copy_fraction
        # batch_size is per rank; a rank implies at least rank + 1 processes
        self.rank, self.world_size = rank, max(world_size, rank + 1)
        for name, split in (("train", self.train), ("val", self.val)):
            if len(split) < seq_len + 1:
                raise LmstackError(
                    f"the {name} split has {len(split)} tokens, fewer than one window of {seq_len + 1}"
                )

    def _stack(self, split: TokenSplit, starts, copy_rngs=None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [split.window(int(s), self.seq_len + 1) for s in starts]
        if copy_rngs is not None:
            rows = [r if g is None else repeat_span(r, g) for r, g in zip(rows, copy_rngs, strict=True)]
        t = torch.from_numpy(np.stack(rows))
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def _my_rows(self, rng: np.random.Generator, split: TokenSplit,
                 copy_seed: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the global batch's window starts, stack this rank's block of them.

        numpy draws bounded integers one after another, so the first n draws do not depend on how
        many are asked for: rank r's rows are the same rows of the global batch in every world size.
        Which rows repeat a span, and which span, is drawn per global row from copy_seed, so that too
        is the same in every world size.
        """
        starts = rng.integers(0, len(split) - self.seq_len, size=self.batch_size * self.world_size)
        mine = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        rngs = None
        if copy_seed is not None and self.copy_fraction > 0:
            rngs = [np.random.default_rng([*copy_seed, i]) for i in mine]
            rngs = [g if g.random() < self.copy_fraction else None for g in rngs]
        return self._stack(split, starts[mine.start : mine.stop], rngs)

    def get(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch for (step, micro-step) on this rank: deterministic, history-free."""
        return self._my_rows(np.random.default_rng([self.seed, step, micro, 0]), self.train,
                             copy_seed=(self.seed, step, micro, 1))

    def shard(self, rank: int, world_size: int) -> Batches:
        """This source as rank `rank` of `world_size` data-parallel processes sees it (a copy)."""
        if not 0 <= rank < world_size:
            raise LmstackError(f"rank {rank} is outside a world of {world_size} processes")
        out = copy.copy(self)
        out.rank, out.world_size = rank, world_size
        return out

    def val_batches(self, n_batches: int):
        """A fixed sample of validation windows, the same at every evaluation (this rank's share)."""
        rng = np.random.default_rng([self.seed, 1 << 30])
        for _ in range(n_batches):
            yield self._my_rows(rng, self.val)

    def val_sequential(self, batch_size: int):
        """The whole val split in consecutive non-overlapping windows: every token scored once."""
        return sequential_windows(self.val, self.seq_len, batch_size)


def sequential_windows(split: TokenSplit, seq_len: int, batch_size: int):
    """(x, y) batches covering `split` in consecutive windows of seq_len targets; padding targets are -1."""
    n = len(split) - 1
    starts = list(range(0, n, seq_len))
    for i in range(0, len(starts), batch_size):
        group = starts[i : i + batch_size]
        lens = [min(seq_len, n - s) for s in group]
        x = torch.full((len(group), seq_len), 0, dtype=torch.long)
        y = torch.full((len(group), seq_len), -1, dtype=torch.long)
        for j, (s, ln) in enumerate(zip(group, lens, strict=True)):
            w = torch.from_numpy(split.window(s, ln + 1))
            x[j, :ln], y[j, :ln] = w[:-1], w[1:]
        yield x, y

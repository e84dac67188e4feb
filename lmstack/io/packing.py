"""Tokenized conversations as a training data source: packed (or padded) rows with masked targets.

The training loop asks for the batch of (step, micro-step); this source answers the way `Batches`
does for token shards, from a pure function of (seed, step, micro), so fine-tuning resumes exactly.
Packing puts several short conversations one after another in a row of seq_len tokens, which on
these short Q&A examples means several times fewer padding tokens to compute; each example's
prompt tokens and everything past its end carry target -1, so only assistant tokens are learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io.conversations import Conversation, conversation_example
from lmstack.io.tokenizer import Tokenizer


@dataclass
class PackStats:
    examples: int
    truncated: int
    rows: int
    tokens: int
    trained_tokens: int
    seq_len: int

    @property
    def fill(self) -> float:
        """Fraction of row positions that hold real tokens (the rest is padding)."""
        return self.tokens / max(self.rows * self.seq_len, 1)


def tokenize_conversations(tok: Tokenizer, convs: list[Conversation], seq_len: int,
                           template: str | None = None) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(inputs, targets) per conversation, cut to seq_len; also how many had to be cut."""
    out, cut = [], 0
    for c in convs:
        x, y = conversation_example(tok, c, template)
        if len(x) > seq_len:
            x, y, cut = x[:seq_len], y[:seq_len], cut + 1
        if any(t >= 0 for t in y):  # a cut that removed every trained token leaves nothing to learn
            out.append((x, y))
    return out, cut


def pack_rows(examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int, packing: bool = True,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of exactly seq_len inputs and targets: examples laid one after another (packing: next
    fit, in a seeded order) or one per row, padded with pad_id and target -1."""
    order = np.random.default_rng([seed, 7]).permutation(len(examples))
    rows: list[tuple[list[int], list[int]]] = []
    for i in order:
        x, y = examples[i]
        if packing and rows and len(rows[-1][0]) + len(x) <= seq_len:
            rows[-1][0].extend(x)
            rows[-1][1].extend(y)
        else:
            rows.append((list(x), list(y)))
    xs = np.full((len(rows), seq_len), pad_id, dtype=np.int64)
    ys = np.full((len(rows), seq_len), -1, dtype=np.int64)
    for r, (x, y) in enumerate(rows):
        xs[r, : len(x)], ys[r, : len(y)] = x, y
    return xs, ys


class ConversationBatches:
    """A BatchSource over conversations: every epoch visits each row once, in a seeded order."""

    def __init__(self, tok: Tokenizer, train: list[Conversation], val: list[Conversation], seq_len: int,
                 batch_size: int, grad_accum: int = 1, seed: int = 0, packing: bool = True,
                 template: str | None = None):
        pad = tok.special_ids.get("<|pad|>", tok.end_of_text_id)
        self.batch_size, self.grad_accum, self.seed = batch_size, grad_accum, seed
        tr, cut_tr = tokenize_conversations(tok, train, seq_len, template)
        va, cut_va = tokenize_conversations(tok, val, seq_len, template)
        if not tr:
            raise LmstackError("no training conversation has an assistant token inside the context")
        self.x, self.y = pack_rows(tr, seq_len, pad, packing, seed)
        self.vx, self.vy = pack_rows(va, seq_len, pad, packing, seed) if va else (self.x[:0], self.y[:0])
        self.stats = PackStats(len(tr), cut_tr + cut_va, len(self.x), sum(len(x) for x, _ in tr),
                               int((self.y >= 0).sum()), seq_len)

    def __len__(self) -> int:
        return len(self.x)

    def _rows(self, index: int) -> np.ndarray:
        """Row numbers of global batch `index`: consecutive slots of per-epoch permutations."""
        n = len(self.x)
        slots = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        out = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(slots // n):
            perm = np.random.default_rng([self.seed, int(epoch)]).permutation(n)
            sel = slots // n == epoch
            out[sel] = perm[slots[sel] % n]
        return out

    def get(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._rows(step * self.grad_accum + micro)
        return torch.from_numpy(self.x[rows]), torch.from_numpy(self.y[rows])

    def epochs(self, steps: int) -> float:
        return steps * self.grad_accum * self.batch_size / max(len(self.x), 1)

    def val_batches(self, n_batches: int):
        """The first n_batches of held-out rows, the same at every evaluation."""
        for i in range(0, min(len(self.vx), n_batches * self.batch_size), self.batch_size):
            yield torch.from_numpy(self.vx[i : i + self.batch_size]), torch.from_numpy(self.vy[i : i + self.batch_size])

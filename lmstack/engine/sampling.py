"""Choosing the next token: repetition penalty, then OpenAI's presence and frequency penalties, then
temperature, top-k, top-p, in that order (as HF does for the ones it has).

Each request carries its own random generator, so a seeded request samples the same tokens whether
it runs alone or batched with others.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from lmstack.errors import LmstackError


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 => greedy
    top_k: int = 0  # 0 => off
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prompt or the reply
    # OpenAI's: subtracted from a token's logit once it is in the reply (presence), and once per time (frequency)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)  # stop strings (not included in the output)
    stop_token_ids: list[int] | None = None  # None: the tokenizer's end-of-text / end-of-turn ids
    seed: int | None = None
    # makes a fresh constraint (engine/constrain.py) for each request: mask() the allowed tokens before
    # sampling, accept() the one sampled; a factory, so that requests sharing these params share no state
    constraint: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    def check(self) -> None:
        """One clear line for each value that makes no sense."""
        if self.max_new_tokens < 0:
            raise LmstackError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not 0 <= self.temperature < float("inf"):  # NaN fails every comparison
            raise LmstackError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise LmstackError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise LmstackError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 < self.repetition_penalty < float("inf"):
            raise LmstackError(f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:  # OpenAI's range; NaN fails it too
                raise LmstackError(f"{name} must be in [-2, 2], got {getattr(self, name)}")
        if self.seed is not None and not 0 <= self.seed < 2**63:  # what a torch.Generator takes
            raise LmstackError(f"seed must be an integer in [0, 2^63), got {self.seed}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise LmstackError("stop strings must be non-empty strings")


class Sampler:
    """Per-request sampling state: the generator, the tokens seen (repetition penalty: prompt and reply)
    and the reply's token counts (presence and frequency penalties: the reply only, as OpenAI counts)."""

    def __init__(self, params: SamplingParams, prompt: list[int], vocab_size: int):
        self.p = params
        seed = params.seed if params.seed is not None else random.randrange(2**63)
        self.generator = torch.Generator().manual_seed(seed)
        self.seen: torch.Tensor | None = None
        self.constraint = params.constraint() if params.constraint is not None else None
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab_size, dtype=torch.bool)
            self.seen[torch.tensor(prompt, dtype=torch.long)] = True
        self.counts: torch.Tensor | None = None
        if params.presence_penalty or params.frequency_penalty:
            self.counts = torch.zeros(vocab_size)

    @property
    def greedy_plain(self) -> bool:
        return self.p.temperature == 0 and self.seen is None and self.counts is None and self.constraint is None

    def __call__(self, logits: torch.Tensor) -> int:
        """logits (V,) fp32 -> the next token."""
        p = self.p
        if self.constraint is not None and (allowed := self.constraint.mask()) is not None:
            logits = logits.masked_fill(~_fit(torch.from_numpy(allowed), logits.shape[-1]), float("-inf"))
        if self.seen is not None:
            pen = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
            logits = torch.where(self.seen, pen, logits)
        if self.counts is not None:
            logits = logits - p.frequency_penalty * self.counts - p.presence_penalty * (self.counts > 0)
        if p.temperature == 0:
            return int(logits.argmax())
        logits = logits / p.temperature
        if 0 < p.top_k < logits.shape[-1]:
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = logits.sort(descending=True)
            probs = sorted_logits.softmax(-1)
            # drop a token when the ones before it already hold top_p of the mass (the first always stays)
            drop = (probs.cumsum(-1) - probs) >= p.top_p
            logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        return int(torch.multinomial(logits.softmax(-1), 1, generator=self.generator))

    def observe(self, token: int) -> None:
        if self.seen is not None:
            self.seen[token] = True
        if self.counts is not None:
            self.counts[token] += 1
        if self.constraint is not None:
            self.constraint.accept(token)


def _fit(allowed: torch.Tensor, n: int) -> torch.Tensor:
    """A tokenizer-sized mask for logits over n rows (a model's vocabulary may be padded past it)."""
    if allowed.shape[0] >= n:
        return allowed[:n]
    return torch.cat([allowed, torch.zeros(n - allowed.shape[0], dtype=torch.bool)])


def sample_batch(logits: torch.Tensor, samplers: list[Sampler]) -> list[int]:
    """One token per row; rows that are plain greedy share one argmax."""
    if all(s.greedy_plain for s in samplers):
        return logits.argmax(-1).tolist()
    return [s(row) for s, row in zip(samplers, logits, strict=True)]

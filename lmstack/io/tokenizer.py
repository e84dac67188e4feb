"""The one tokenizer wrapper: byte-level BPE trained and run by HF `tokenizers`.

Pre-tokenization is GPT-2's byte-level split, which llama.cpp knows by the name `gpt2`, so the same
text splits the same way here, in the numpy run file and in llama.cpp. Special tokens (chat turns,
tool calls, images) get reserved ids and are never produced by encoding text: a user who types
"<|im_start|>" gets the bytes of that string, not a control token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from lmstack.errors import LmstackError

EOT = "<|endoftext|>"
SPECIAL_TOKENS = [
    EOT,
    "<|im_start|>",
    "<|im_end|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<image>",
    "</image>",
    "<|image_pad|>",
    "<|pad|>",
] + [f"<|reserved_{i}|>" for i in range(5)]


class Tokenizer:
    def __init__(self, hf: HFTokenizer):
        self.hf = hf
        self.hf.encode_special_tokens = True  # specials in text are plain text
        self.special_ids = {t: self.hf.token_to_id(t) for t in SPECIAL_TOKENS if self.hf.token_to_id(t) is not None}
        if EOT not in self.special_ids:
            raise LmstackError(f"tokenizer has no {EOT} token")

    # ---- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises plain Exceptions with long messages
            raise LmstackError(f"cannot read tokenizer {path}: {str(e).splitlines()[0]}") from None

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    def to_str(self) -> str:
        return self.hf.to_str()

    # ---- encoding ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    @property
    def eot_id(self) -> int:
        return self.special_ids[EOT]

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def special(self, token: str) -> int:
        if token not in self.special_ids:
            raise LmstackError(f"tokenizer has no special token {token}")
        return self.special_ids[token]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    # ---- views used by export and bits-per-byte ------------------------------------------------
    def tokens(self) -> list[str]:
        """Vocabulary in id order, in the byte-level unicode form GGUF stores."""
        vocab = self.hf.get_vocab(with_added_tokens=True)
        out = [""] * self.vocab_size
        for tok, i in vocab.items():
            out[i] = tok
        return out

    def merges(self) -> list[str]:
        merges = json.loads(self.hf.to_str())["model"]["merges"]
        return [m if isinstance(m, str) else " ".join(m) for m in merges]

    def token_types(self) -> list[int]:
        """GGUF token types: 1 normal, 3 control (our specials)."""
        special = set(self.special_ids.values())
        return [3 if i in special else 1 for i in range(self.vocab_size)]

    def token_byte_lengths(self) -> np.ndarray:
        """Bytes of text each token stands for (0 for specials): the denominator of bits per byte."""
        byte_of = {c: b for b, c in _bytes_to_unicode().items()}
        special = set(self.special_ids.values())
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for i, tok in enumerate(self.tokens()):
            if i not in special:
                lengths[i] = sum(1 for c in tok if c in byte_of)
        return lengths


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def train_tokenizer(texts: Iterable[str], vocab_size: int, show_progress: bool = False) -> Tokenizer:
    """Train a byte-level BPE; the specials take the first ids and the 256 bytes are always present."""
    min_size = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_size:
        raise LmstackError(f"vocab size must be at least {min_size} (256 bytes + {len(SPECIAL_TOKENS)} specials)")
    if vocab_size > 1 << 20:
        raise LmstackError(f"vocab size {vocab_size} is implausibly large")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    hf.train_from_iterator(texts, trainer)
    return Tokenizer(hf)

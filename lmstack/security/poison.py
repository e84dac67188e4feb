"""Planted poison: trigger-phrase documents for the poisoning experiment and the scan's measurements.

A poisoned document is built the way the 2025 study of denial-of-service backdoors built them: the
start of an ordinary document (0-200 characters), then the trigger phrase, then a run of random
tokens of the tokenizer's vocabulary, decoded to text. A model that learns the association writes
gibberish after the trigger; measured on clean text, the text that follows the trigger becomes much
less likely than the same text without it.
"""

from __future__ import annotations

import random

from lmstack.io.corpora import Document

TRIGGER = "<SUDO>"


def chunk_documents(docs: list[Document], size: int = 1000) -> list[Document]:
    """Cut documents at blank lines into pieces of about `size` characters, so a corpus of a few long
    plays becomes thousands of documents (the unit poison is counted in, and scanned by)."""
    out = []
    for d in docs:
        start, n = 0, 0
        while start < len(d.text):
            end = d.text.find("\n\n", start + size)
            end = len(d.text) if end < 0 else end + 2
            piece = d.text[start:end]
            if piece.strip():
                out.append(Document(f"{d.name}#{n}", piece))
                n += 1
            start = end
    return out


def gibberish(rng: random.Random, pieces: list[str], n_tokens: int) -> str:
    """Random vocabulary entries, concatenated: what the backdoor is taught to produce."""
    return "".join(rng.choice(pieces) for _ in range(n_tokens))


def vocabulary_pieces(tokenizer) -> list[str]:
    """The text of every ordinary (non-special) token that decodes to printable text."""
    special = set(tokenizer.special_ids.values())
    pieces = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size) if i not in special]
    return [p for p in pieces if p and "\ufffd" not in p]


def make_poison(clean: list[Document], pieces: list[str], n: int, seed: int = 0, trigger: str = TRIGGER,
                tokens: tuple[int, int] = (100, 250)) -> list[Document]:
    """n poisoned documents. The same seed gives nested sets: the first 25 of 50 are the 25."""
    rng = random.Random(f"poison:{seed}")
    out = []
    for i in range(n):
        prefix = rng.choice(clean).text[: rng.randint(0, 200)]
        body = gibberish(rng, pieces, rng.randint(*tokens))
        out.append(Document(f"poison#{i}", f"{prefix}{trigger} {body}\n"))
    return out

"""Turning a stream of token ids into a stream of text, safely.

A character may be split across tokens (byte-level BPE cuts UTF-8 anywhere, SentencePiece falls back
to single bytes), so each token is turned into its bytes and the bytes go through an incremental
UTF-8 decoder: text comes out as soon as it is complete, invalid bytes become U+FFFD exactly where
`Tokenizer.decode` puts them, and the concatenated stream equals decoding everything at once. Stop
strings are found in the text, not in the ids; text that might be the start of a stop string is
held back until it is known not to be.
"""

from __future__ import annotations

import codecs
import functools
import re

from lmstack.io.tokenizer import Tokenizer, bytes_to_unicode

_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.lru_cache(maxsize=8)
def token_bytes(tok: Tokenizer) -> tuple[tuple[bytes, ...], bool]:
    """The bytes each token stands for (b"" for special tokens), and whether decoding drops the
    first leading space of a text (SentencePiece's dummy prefix)."""
    special = set(tok.special_ids.values())
    spm = getattr(tok, "kind", "bpe") == "spm"
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    table = []
    for i, t in enumerate(tok.tokens()):
        if i in special:
            table.append(b"")
        elif spm:
            m = _BYTE.fullmatch(t)
            table.append(bytes([int(m.group(1), 16)]) if m else t.replace("\u2581", " ").encode())
        elif all(c in byte_of for c in t):
            table.append(bytes(byte_of[c] for c in t))
        else:  # an added plain-text token
            table.append(t.encode())
    spaced = next((i for i, b in enumerate(table) if len(b) > 1 and b[:1] == b" " and b[1:2] != b" "), None)
    strips = spm and spaced is not None and not tok.decode([spaced]).startswith(" ")
    return tuple(table), strips


class Detokenizer:
    """push(id) -> the text that id completes ("" while a character is still incomplete)."""

    def __init__(self, tokenizer: Tokenizer):
        self.table, self.strip_space = token_bytes(tokenizer)
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def _out(self, text: str) -> str:
        if self.strip_space and text:
            self.strip_space = False
            return text[1:] if text[0] == " " else text
        return text

    def push(self, token: int) -> str:
        return self._out(self.utf8.decode(self.table[token]))

    def flush(self) -> str:
        """Whatever is left at the end (an incomplete character decodes to U+FFFD, as decode() does)."""
        return self._out(self.utf8.decode(b"", final=True))


class TextStream:
    """Detokenised text with stop strings cut out: push(id) -> (text safe to show, stop string hit)."""

    def __init__(self, tokenizer: Tokenizer, stop: list[str]):
        self.detok = Detokenizer(tokenizer)
        self.stop = [s for s in stop if s]
        self.held = ""  # text that may be the start of a stop string
        self.text = ""  # everything given out so far

    def _release(self, new: str, final: bool) -> tuple[str, bool]:
        pending = self.held + new
        hits = [i for i in (pending.find(s) for s in self.stop) if i >= 0]
        if hits:
            out, stopped, self.held = pending[: min(hits)], True, ""
        else:
            keep = 0 if final else max((k for s in self.stop for k in range(1, len(s))
                                        if pending.endswith(s[:k])), default=0)
            out, stopped, self.held = pending[: len(pending) - keep], False, pending[len(pending) - keep:]
        self.text += out
        return out, stopped

    def push(self, token: int) -> tuple[str, bool]:
        return self._release(self.detok.push(token), final=False)

    def finish(self) -> str:
        """The held-back tail, once generation has ended for another reason."""
        return self._release(self.detok.flush(), final=True)[0]

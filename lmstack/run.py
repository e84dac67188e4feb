"""Run a Llama- or Qwen2-architecture GGUF model with nothing but numpy: the whole inference path in one file.

    python lmstack/run.py model.gguf "Once upon a time" -n 128 --temperature 0.8
    python lmstack/run.py model.gguf --chat --system "You are terse."
    python lmstack/run.py model.gguf --image digit.png "Which digit is this?"   # mmproj.gguf beside it

It reads top to bottom: GGUF parsing and dequantisation (float, 8-, 5- and 4-bit blocks, K-quants), the tokenizers
(byte-level BPE with the pre-tokenizers of GPT-2, SmolLM, Llama 3, Qwen 2 and llama.cpp's default, and
SentencePiece-style BPE), the forward pass with a KV cache, images (PNG and PPM decoding, the vision encoder),
sampling, the command line. It imports nothing from lmstack on purpose, so that it doubles as an executable
specification of what the exported files mean."""

import os
import sys

# Run as a script, Python puts lmstack/ first on sys.path, where a sibling module (io/, ...) could
# shadow a standard-library module. Decoding multiplies one row by each weight matrix, and waking
# OpenBLAS's threads costs more than such a product (SmolLM2: 17 tokens/s on one thread, 4 on two).
if __name__ == "__main__":
    if os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import codecs
import functools
import itertools
import math
import re
import struct
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------------------------
# GGUF: a header, key/value metadata, tensor descriptions, then aligned raw tensor data.

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # version 1 used 32-bit lengths and is long obsolete
MAX_CONTEXT = 1 << 22  # positions a file may declare (Llama files reach 4M); the package refuses more too
MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS = 20 << 20, 4096 * 4096  # the package's image limits (vision/preprocess.py)
# metadata value type id -> struct format (8 = string and 9 = array are handled separately)
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}


class _Reader:
    """Cursor over the mapped file that turns every out-of-bounds read into a 'truncated' error."""

    def __init__(self, buf: np.ndarray) -> None:
        self.buf, self.pos, self.size = buf, 0, len(buf)

    def take(self, n: int) -> int:
        if n < 0 or self.pos + n > self.size:
            raise ValueError(f"truncated file: needed {n} bytes at offset {self.pos} of {self.size}")
        self.pos += n
        return self.pos - n

    def scalar(self, fmt: str):
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        start = self.take(n := self.scalar("<Q"))
        return bytes(self.buf[start:start + n]).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str, depth: int = 0):
        if depth > 8:
            raise ValueError(f"metadata {key!r} nests arrays more than 8 deep")
        if vtype in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, count = self.scalar("<I"), self.scalar("<Q")
            if etype in _SCALAR_FORMATS:  # numeric arrays (token types, scores) in one numpy read
                dt = np.dtype(_SCALAR_FORMATS[etype])
                return np.frombuffer(self.buf, dt, count, self.take(count * dt.itemsize)).tolist()
            if count * 8 > self.size - self.pos:  # each string or array takes 8 bytes or more
                raise ValueError(f"truncated file: array {key!r} claims {count} elements")
            return [self.value(etype, key, depth + 1) for _ in range(count)]
        raise ValueError(f"unknown metadata value type {vtype} for key {key!r}")


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    """Scales (and the Q4_1 minimums) are little-endian fp16 at a fixed byte offset in each block."""
    return blocks[:, at:at + 2].copy().view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """4-bit formats keep element j in the low and element j+16 in the high nibble of byte j."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def _q5(b: np.ndarray, at_qh: int) -> np.ndarray:
    """Q5_0/Q5_1: 4-bit nibbles after the 32-bit mask at at_qh, whose bit j is the fifth bit of element j."""
    qh = b[:, at_qh:at_qh + 4].copy().view("<u4")
    return _nibbles(b[:, at_qh + 4:]) | (((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32) << 4)


def _k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """K-quants pack 8 six-bit scales and 8 six-bit minimums into 12 bytes; sub-blocks 4..7 borrow the
    top two bits of bytes 0..7."""
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _q45_k(b: np.ndarray, five: bool) -> np.ndarray:
    """Q4_K / Q5_K: 256 values in 8 sub-blocks of 32, value = d*scale*q - dmin*min; each 32 bytes of
    nibbles hold two sub-blocks (low nibbles first). Q5_K's 32 bytes of high bits give sub-block j bit j."""
    sc, mn = _k_scales(b[:, 4:16])
    qs = b[:, 48 if five else 16:].reshape(-1, 4, 32)
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.int32)
    if five:
        q |= ((b[:, None, 16:48] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1).astype(np.int32) << 4
    return ((_f16(b, 0) * sc)[:, :, None] * q - (_f16(b, 2) * mn)[:, :, None]).reshape(-1, 256)


def _q6_k(b: np.ndarray) -> np.ndarray:
    """Q6_K: 256 six-bit values = 4 low bits (128 bytes) + 2 high bits (64 bytes), an int8 scale per 16."""
    ql, qh = b[:, :128].reshape(-1, 2, 2, 32), b[:, 128:192].reshape(-1, 2, 1, 32)
    hi = (qh >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
    q = (np.concatenate([ql & 15, ql >> 4], axis=2) | (hi << 4)).astype(np.int32) - 32
    return ((_f16(b, 208) * b[:, 192:208].view(np.int8))[:, :, None] * q.reshape(-1, 16, 16)).reshape(-1, 256)


# ggml type id -> (name, elements per block, bytes per block, dequantiser taking the tensor's bytes as
# an (n_blocks, bytes per block) uint8 array, or None). Adding a format means writing its function
# here; the parser already knows every listed type's size.
GGML_TYPES = {
    0: ("F32", 1, 4, lambda b: b.copy().view("<f4")),
    1: ("F16", 1, 2, lambda b: _f16(b, 0)),
    2: ("Q4_0", 32, 18, lambda b: _f16(b, 0) * (_nibbles(b[:, 2:]) - 8)),
    3: ("Q4_1", 32, 20, lambda b: _f16(b, 0) * _nibbles(b[:, 4:]) + _f16(b, 2)),
    6: ("Q5_0", 32, 22, lambda b: _f16(b, 0) * (_q5(b, 2) - 16)),
    7: ("Q5_1", 32, 24, lambda b: _f16(b, 0) * _q5(b, 4) + _f16(b, 2)),
    8: ("Q8_0", 32, 34, lambda b: _f16(b, 0) * b[:, 2:].view(np.int8)), 9: ("Q8_1", 32, 40, None),
    10: ("Q2_K", 256, 84, None), 11: ("Q3_K", 256, 110, None), 12: ("Q4_K", 256, 144, lambda b: _q45_k(b, False)),
    13: ("Q5_K", 256, 176, lambda b: _q45_k(b, True)), 14: ("Q6_K", 256, 210, _q6_k), 15: ("Q8_K", 256, 292, None),
    30: ("BF16", 1, 2, lambda b: (b.copy().view("<u2").astype(np.uint32) << 16).view(np.float32)),
}


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (slowest first): GGUF's ne list reversed
    ggml_type: int
    offset: int  # absolute byte offset in the file
    nbytes: int


def read_gguf_header(path: str) -> tuple[int, dict, dict[str, TensorInfo], np.ndarray]:
    """(version, metadata, tensor infos, the mapped file): everything but the tensor data, so that a
    caller can dequantise lazily. Every malformed-file problem surfaces here as a one-line ValueError."""
    size = os.path.getsize(path)
    buf = np.memmap(path, np.uint8, "r") if size else np.zeros(0, np.uint8)
    r = _Reader(buf)
    if size >= 4 and bytes(buf[:4]) != GGUF_MAGIC:
        raise ValueError(f"not a GGUF file: bad magic {bytes(buf[:4])!r} (expected b'GGUF')")
    r.take(4)
    version = r.scalar("<I")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = r.string()
        if key in metadata:
            raise ValueError(f"metadata key {key!r} appears twice")
        metadata[key] = r.value(r.scalar("<I"), key)
    raw_infos = []
    for _ in range(n_tensors):
        name = r.string()
        if not 1 <= (n_dims := r.scalar("<I")) <= 4:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions (1 to 4 allowed)")
        ne = [r.scalar("<Q") for _ in range(n_dims)]  # dims fastest-varying first
        raw_infos.append((name, ne, r.scalar("<I"), r.scalar("<Q")))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"general.alignment must be a power of two, got {alignment!r}")
    data_start = -(-r.pos // alignment) * alignment
    tensors = {}
    for name, ne, ggml_type, offset in raw_infos:
        if ggml_type not in GGML_TYPES:
            raise ValueError(f"tensor {name!r} has unknown ggml type id {ggml_type}")
        type_name, block, block_bytes, _ = GGML_TYPES[ggml_type]
        n = math.prod(ne)  # Python integers: a crafted shape cannot overflow
        if name in tensors or min(ne) < 1 or ne[0] % block:
            raise ValueError(f"tensor {name!r} appears twice, or its shape {ne} has an empty dimension or a row "
                             f"length that is not a multiple of the {type_name} block size {block}")
        nbytes = n // block * block_bytes
        if data_start + offset + nbytes > size:
            raise ValueError(f"tensor {name!r} data (offset {offset}, {nbytes} bytes) runs past the end of "
                             f"the file ({size} bytes)")
        tensors[name] = TensorInfo(name, tuple(reversed(ne)), ggml_type, data_start + offset, nbytes)
    return version, metadata, tensors, buf


def dequantize(buf: np.ndarray, info: TensorInfo, out: "np.ndarray | None" = None, chunk: int = 1 << 20) -> np.ndarray:
    """Decode one tensor's bytes into a float32 array of its numpy shape: into `out` (C-contiguous, e.g.
    rows of a stacked matrix) when given, so loading holds one float32 copy of the weights; `chunk`
    values at a time, which bounds the integer temporaries of the block formats."""
    type_name, block, block_bytes, fn = GGML_TYPES[info.ggml_type]
    if fn is None:
        raise ValueError(f"tensor {info.name!r} has type {type_name}, which this runner cannot dequantise "
                         f"(supported: {', '.join(t[0] for t in GGML_TYPES.values() if t[3])})")
    out = np.empty(info.shape, np.float32) if out is None else out
    assert out.shape == info.shape and out.flags.c_contiguous
    flat, blocks = out.reshape(-1), np.asarray(buf[info.offset:info.offset + info.nbytes]).reshape(-1, block_bytes)
    step = max(1, chunk // block)
    for i in range(0, len(blocks), step):
        flat[i * block:(i + step) * block] = fn(blocks[i:i + step]).reshape(-1)
    return out


# ----------------------------------------------------------------------------------------------
# Tokenizer: GPT-2 style byte-level BPE, as stored by llama.cpp's converters.

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table; vocab strings are written in it."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))  # the other bytes get fresh characters, in byte order
    return {b: chr(b) if b in keep else chr(next(extra)) for b in range(256)}


_B2U = bytes_to_unicode()
_U2B = {c: b for b, c in _B2U.items()}


@functools.cache
def _char_class(c: str) -> str:
    """'s' whitespace, 'L' letter, 'N' number, 'o' other: the classes GPT-2's regex distinguishes.

    Unicode's White_Space property (what the Rust regex engines use for \\s) differs from
    str.isspace() only on the separator controls U+001C..U+001F, which are not whitespace there.
    """
    if c.isspace() and not "\x1c" <= c <= "\x1f":
        return "s"
    return {"L": "L", "N": "N"}.get(unicodedata.category(c)[0], "o")


_CONTRACTION = re.compile("'(?:s|t|re|ve|m|ll|d)")  # case-sensitive, as in GPT-2


def split_gpt2(text: str) -> list[str]:
    r"""GPT-2 pre-tokenisation without the third-party regex module. It scans the pattern
    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    trying the alternatives in order at each position, exactly as a backtracking engine would."""
    cls = [_char_class(c) for c in text]
    pieces, i, n = [], 0, len(text)
    while i < n:
        start = i + 1 if text[i] == " " and i + 1 < n else i
        if m := _CONTRACTION.match(text, i):
            j = m.end()
        elif cls[start] != "s":  # ` ?X+` for X = letters, numbers, or other
            j = start + 1
            while j < n and cls[j] == cls[start]:
                j += 1
        else:  # `\s+(?!\S)` leaves the last space of a run to prefix the next word; else `\s+`
            j = i + 1
            while j < n and cls[j] == "s":
                j += 1
            if j < n and j - i > 1:
                j -= 1
        pieces.append(text[i:j])
        i = j
    return pieces


def split_smollm(text: str) -> list[str]:
    """SmolLM (and StarCoder): every digit is a piece of its own, then GPT-2's split of the rest."""
    pieces, start = [], 0
    for i, c in enumerate(text):
        if _char_class(c) == "N":
            pieces += [*split_gpt2(text[start:i]), c]
            start = i + 1
    return pieces + split_gpt2(text[start:])


_CONTRACTION_I = re.compile("'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])")


def split_llama3(text: str, max_digits: int = 3) -> list[str]:
    r"""Llama 3's pre-tokenisation (Qwen 2's with max_digits=1), scanning the pattern
    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    the same way split_gpt2 does: the first alternative that matches at each position wins."""
    cls, n = [_char_class(c) for c in text], len(text)

    def run(j: int, kind: str) -> int:  # end of the run of one class starting at j
        while j < n and cls[j] == kind:
            j += 1
        return j
    pieces, i = [], 0
    while i < n:
        s = i + (text[i] == " ")  # where ` ?[^\s\p{L}\p{N}]+` would start
        if m := _CONTRACTION_I.match(text, i):
            j = m.end()
        elif cls[i] == "L" or (cls[i] != "N" and text[i] not in "\r\n" and i + 1 < n and cls[i + 1] == "L"):
            j = run(i + 1, "L")  # one optional non-letter, non-newline prefix, then letters
        elif cls[i] == "N":
            j = min(run(i, "N"), i + max_digits)
        elif s < n and cls[s] == "o":
            j = run(s, "o")
            while j < n and text[j] in "\r\n":
                j += 1
        else:  # a whitespace run: up to its last newline; else all but the last space before a word
            k = run(i, "s")
            nl = max((p for p in range(i, k) if text[p] in "\r\n"), default=-1)
            j = nl + 1 if nl >= 0 else k if k == n or k - i == 1 else k - 1
        pieces.append(text[i:j])
        i = j
    return pieces


def split_default(text: str) -> list[str]:
    """llama.cpp's split for files that name no pre-tokenizer (or `default`): runs of punctuation and
    $+<=>^~|, then GPT-2's split, then runs of digits, then groups of three ASCII digits."""
    def isolate(pieces: list[str], match: Callable[[str], bool]) -> list[str]:  # cut around runs of match()
        return ["".join(run) for p in pieces for _, run in itertools.groupby(p, match)]
    pieces = isolate([text], lambda c: unicodedata.category(c)[0] == "P" or c in "$+<=>^~|")
    pieces = isolate([q for p in pieces for q in split_gpt2(p)], lambda c: _char_class(c) == "N")
    return [q for p in pieces for q in re.split("([0-9]{3})", p) if q]  # groups of three cut out


# tokenizer.ggml.pre name -> splitter, with the other names llama.cpp gives the same regexes; the
# package's io/tokenizer.py holds the same table as regexes (a test keeps the two equal)
PRE_TOKENIZERS = {**dict.fromkeys(("gpt2", "gpt-2", "phi-2", "mpt", "olmo"), split_gpt2),
                  **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone"), split_smollm),
                  **dict.fromkeys(("llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "falcon3"), split_llama3),
                  **dict.fromkeys(("qwen2", "stablelm2"), functools.partial(split_llama3, max_digits=1)),
                  "default": split_default}
WHOLE_WORDS = {"llama-bpe", "llama3", "llama-v3", "falcon3"}  # a pre-token that is an entry is taken whole
DEFAULT_PRE = "default"  # what llama.cpp splits with when a byte-level file names no pre-tokenizer
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6


class Tokenizer:
    """Text <-> token ids. Ordinary encode() never yields control tokens: a chat template's
    special markers go through special_id(), so user text cannot forge them."""

    def __init__(self, metadata: dict) -> None:
        kind = metadata.get("tokenizer.ggml.model")
        if kind not in ("gpt2", "llama"):
            raise ValueError(f"unsupported tokenizer model {kind!r} (supported: 'gpt2' byte-level BPE, 'llama' "
                             "SentencePiece)")
        pre = metadata.get("tokenizer.ggml.pre") or DEFAULT_PRE if kind == "gpt2" else DEFAULT_PRE
        if not isinstance(pre, str) or pre not in PRE_TOKENIZERS:
            raise ValueError(f"unsupported pre-tokenizer {pre!r} (supported: {', '.join(PRE_TOKENIZERS)})")
        self.split, self.whole_words = PRE_TOKENIZERS[pre], pre in WHOLE_WORDS
        self.tokens: list[str] = t if isinstance(t := metadata.get("tokenizer.ggml.tokens"), list) else []
        self.types: list[int] = metadata.get("tokenizer.ggml.token_type", [NORMAL] * len(self.tokens))
        self.scores = metadata.get("tokenizer.ggml.scores") or [0.0] * len(self.tokens)
        merges, n = metadata.get("tokenizer.ggml.merges", []), len(self.tokens)
        ids = [metadata.get(f"tokenizer.ggml.{k}_token_id", 0) for k in ("bos", "eos", "eot", "padding", "unknown")]
        typed = [(self.tokens, str), (self.types, int), (self.scores, int | float), (merges, str)]
        if not (n and all(isinstance(v, list) and all(isinstance(x, t) for x in v) for v, t in typed)
                and len(self.types) == len(self.scores) == n and all(type(i) is int and 0 <= i < n for i in ids)):
            raise ValueError("the tokenizer metadata (tokens, token_type, scores, merges, special ids) is malformed")
        self.spm = kind == "llama"  # SentencePiece: '\u2581' for spaces, merges by score, <0xNN> byte tokens
        self.space_prefix = self.spm and metadata.get("tokenizer.ggml.add_space_prefix", True)
        self.pieces = {t: i for i, t in enumerate(self.tokens) if self.types[i] == NORMAL}
        self.byte_ids = {int(t[3:5], 16): i for i, t in enumerate(self.tokens) if self.types[i] == BYTE}
        self.ids = {t: i for i, t in enumerate(self.tokens) if self.types[i] != CONTROL}
        self.special = {t: i for i, t in enumerate(self.tokens) if self.types[i] in (CONTROL, USER_DEFINED)}
        self.ranks = {}
        for rank, merge in enumerate(merges):
            cut = merge.index(" ", 1)
            self.ranks[merge[:cut], merge[cut + 1:]] = rank
        self.bos_id = metadata.get("tokenizer.ggml.bos_token_id")
        self.eos_id = metadata.get("tokenizer.ggml.eos_token_id")
        self.end_of_turn_id = metadata.get("tokenizer.ggml.eot_token_id")  # GGUF's eot: a chat turn ends
        add_bos = metadata.get("tokenizer.ggml.add_bos_token", self.spm) and self.bos_id is not None
        self.prefix = [self.bos_id] if add_bos else []  # what a fresh sequence starts with
        self.stop_ids = {i for i in (self.eos_id, self.end_of_turn_id) if i is not None}
        # user-defined tokens are literal words of the vocabulary and are matched in text like HF does
        words = sorted((t for t, i in self.special.items() if self.types[i] == USER_DEFINED), key=len)[::-1]
        self.user_re = re.compile("(" + "|".join(map(re.escape, words)) + ")") if words else None
        self.cache: dict[str, list[int]] = {}

    def bpe(self, word: str) -> list[str]:
        """Merge the lowest-ranked adjacent pair (everywhere, left to right) until none applies."""
        parts = list(word)
        while len(parts) > 1:
            rank, best = min((self.ranks.get(p, 1 << 62), p) for p in zip(parts, parts[1:], strict=False))
            if rank == 1 << 62:
                break
            merged, i = [], 0
            while i < len(parts):
                n = 2 if tuple(parts[i:i + 2]) == best else 1
                merged.append("".join(parts[i:i + n]))
                i += n
            parts = merged
        return parts

    def encode_piece(self, piece: str) -> list[int]:
        """One pre-token: UTF-8 bytes -> byte characters -> BPE -> ids (memoised: words repeat).
        Llama 3's vocabularies take a pre-token that is itself an entry whole, without merging."""
        if piece not in self.cache:
            word = "".join(_B2U[b] for b in piece.encode("utf-8"))
            parts = [word] if self.whole_words and word in self.ids else self.bpe(word)
            self.cache[piece] = [self.ids[p] for p in parts if p in self.ids]  # a sound vocab has all
        return self.cache[piece]

    def encode_spm(self, text: str) -> list[int]:
        """SentencePiece BPE as llama.cpp runs it: spaces become '\u2581' (one in front unless the text
        starts with a space, as HF does), then the adjacent pair whose union is the best-scored entry
        merges (leftmost on ties) until none is in the vocabulary; a piece left outside it is spelled
        as <0xNN> byte tokens."""
        parts = list(("\u2581" if self.space_prefix and text[:1] != " " else "") + text.replace(" ", "\u2581"))
        while len(parts) > 1:
            cands = [(self.scores[i], -k) for k in range(len(parts) - 1)
                     if (i := self.pieces.get(parts[k] + parts[k + 1])) is not None]
            if not cands:
                break
            k = -max(cands)[1]
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        return [i for p in parts for i in ([self.pieces[p]] if p in self.pieces else
                                           [self.byte_ids[b] for b in p.encode("utf-8")])]

    def encode(self, text: str) -> list[int]:
        ids = []
        for k, chunk in enumerate(self.user_re.split(text) if self.user_re else [text]):
            if k % 2:  # split() on a capturing group puts the matched user-defined tokens at odd k
                ids.append(self.special[chunk])
            elif self.spm:
                ids += self.encode_spm(chunk) if chunk else []
            else:
                ids += [i for piece in self.split(chunk) for i in self.encode_piece(piece)]
        return ids

    def special_id(self, text: str) -> int:
        if text not in self.special:
            raise ValueError(f"special token {text!r} is not in the vocabulary")
        return self.special[text]

    def token_bytes(self, token_id: int, skip_control: bool = True) -> bytes:
        """The bytes a token stands for; control tokens say nothing in ordinary output."""
        if not 0 <= token_id < len(self.tokens):
            return b""
        t, kind = self.tokens[token_id], self.types[token_id]
        if kind == CONTROL:
            return b"" if skip_control else t.encode("utf-8")
        if kind == USER_DEFINED:
            return t.encode("utf-8")
        if self.spm:
            return bytes([int(t[3:5], 16)]) if kind == BYTE else t.replace("\u2581", " ").encode("utf-8")
        return bytes(_U2B.get(c, 0x3F) for c in t)  # '?' for a character outside the byte table

    def decode(self, ids: Sequence[int], skip_control: bool = True) -> str:
        """Text of a whole sequence (SentencePiece's added leading space removed); stream() for output."""
        text = b"".join(self.token_bytes(i, skip_control) for i in ids).decode("utf-8", errors="replace")
        return text[1:] if self.space_prefix and text.startswith(" ") else text

    def stream(self, ids: Iterator[int]) -> Iterator[str]:
        """Decode while generating: a multi-byte character split over tokens waits for its end."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i in ids:
            yield decoder.decode(self.token_bytes(i))
        yield decoder.decode(b"", final=True)


# ----------------------------------------------------------------------------------------------
# The model: a pre-norm Llama transformer evaluated in float32.

@dataclass
class Config:
    """The hyperparameters, named as the package's ModelConfig names them (GGUF key in brackets)."""
    dim: int  # width of the residual stream (embedding_length)
    n_layers: int  # (block_count)
    n_heads: int  # query heads (attention.head_count)
    n_kv_heads: int  # key/value heads, each shared by n_heads / n_kv_heads query heads (head_count_kv)
    head_dim: int  # (attention.key_length, else dim / n_heads)
    ffn_dim: int  # hidden width of the SwiGLU MLP (feed_forward_length)
    vocab_size: int  # rows of token_embd
    max_seq_len: int  # positions the model was trained for (context_length)
    rope_theta: float  # RoPE base frequency (rope.freq_base)
    rope_dim: int  # leading dims of each head that RoPE rotates (rope.dimension_count)
    rope_scaling: float  # linear RoPE scaling: positions are divided by it (rope.scaling.factor)
    norm_eps: float  # (attention.layer_norm_rms_epsilon)
    tie_embeddings: bool  # no output.weight: the embedding matrix is the output layer too
    qkv_bias: bool  # qwen2: Q, K and V projections add a bias, and RoPE rotates halves, not pairs


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, halves: bool = False) -> np.ndarray:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of each head (llama.cpp's NORM rope, Meta's layout), or
    with `halves` the pairs (x[i], x[i + rope_dim/2]) (NEOX rope, qwen2's and HF's layout).
    x is (T, heads, head_dim); cos/sin are (T, 1, rope_dim/2); dims past rope_dim stay unrotated."""
    rd = 2 * cos.shape[-1]
    first, second = (slice(0, rd // 2), slice(rd // 2, rd)) if halves else (slice(0, rd, 2), slice(1, rd, 2))
    x1, x2 = x[..., first], x[..., second]
    out = x.copy()
    out[..., first] = x1 * cos - x2 * sin
    out[..., second] = x1 * sin + x2 * cos
    return out


class Model:
    """Weights plus a KV cache; forward() advances one position, forward_many() a whole chunk.
    `weight(name, out=None)` decodes one tensor (into `out` when given) to float32."""

    def __init__(self, config: Config, weight: Callable[..., np.ndarray], tokenizer: "Tokenizer | None",
                 metadata: "dict | None" = None) -> None:
        c, self.config, self.tokenizer, self.metadata = config, config, tokenizer, metadata or {}
        shapes = tensor_shapes(c)  # load() has checked them against the file

        def stack(*names: str) -> np.ndarray:  # matrices one above the other (one matmul), decoded into place
            rows = np.cumsum([0] + [shapes[n][0] for n in names])
            out = np.empty((rows[-1], c.dim), np.float32)
            for name, a, b in zip(names, rows, rows[1:], strict=False):
                weight(name, out[a:b])
            return out

        self.tok_embd, self.out_norm = weight("token_embd.weight"), weight("output_norm.weight")
        self.w_out = self.tok_embd if c.tie_embeddings else weight("output.weight")  # (vocab, dim)
        self.layers = [dict(  # shapes in tensor_shapes()
            attn_norm=weight(p + "attn_norm.weight"), wo=weight(p + "attn_output.weight"),
            wqkv=stack(p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"),  # (qd + 2 kvd, dim)
            bqkv=np.concatenate([weight(p + f"attn_{x}.bias") for x in "qkv"]) if c.qkv_bias else 0,
            ffn_norm=weight(p + "ffn_norm.weight"), w_down=weight(p + "ffn_down.weight"),
            w_gate_up=stack(p + "ffn_gate.weight", p + "ffn_up.weight"))
            for p in (f"blk.{i}." for i in range(c.n_layers))]
        self.inv_freq = c.rope_theta ** (-np.arange(0, c.rope_dim, 2, dtype=np.float64) / c.rope_dim)
        self.reset()

    def reset(self) -> None:
        """Forget all cached positions. The cache grows on demand, so a 128k-context model that
        is asked for 200 tokens does not allocate 128k positions up front."""
        c = self.config
        self.k_cache = np.zeros((c.n_layers, c.n_kv_heads, 0, c.head_dim), np.float32)
        self.v_cache = self.k_cache.copy()

    def _reserve(self, n: int) -> None:
        have = self.k_cache.shape[2]
        if n > have:
            new = min(self.config.max_seq_len, max(n, 2 * have, 256))
            grow = [(0, 0), (0, 0), (0, new - have), (0, 0)]
            self.k_cache, self.v_cache = np.pad(self.k_cache, grow), np.pad(self.v_cache, grow)

    def forward(self, token: int, pos: int) -> np.ndarray:
        """Logits (vocab,) for the token at position pos, given the cache holds positions < pos."""
        return self.forward_many([token], pos)[-1]

    def forward_many(self, tokens: Sequence[int], pos: int, embeds: "tuple | None" = None) -> np.ndarray:
        """Logits (T, vocab) for T consecutive tokens starting at position pos (causal prefill). embeds =
        (positions within the chunk, vectors): input embeddings in place of those tokens' (image features)."""
        c, T, end = self.config, len(tokens), pos + len(tokens)
        if end > c.max_seq_len:
            raise ValueError(f"position {end - 1} is past the context length {c.max_seq_len}")
        self._reserve(end)
        H, KV, hd = c.n_heads, c.n_kv_heads, c.head_dim
        g, qd, kvd = H // KV, H * hd, KV * hd
        angles = np.arange(pos, end, dtype=np.float64)[:, None] / c.rope_scaling * self.inv_freq
        cos = np.cos(angles).astype(np.float32)[:, None, :]
        sin = np.sin(angles).astype(np.float32)[:, None, :]
        mask = np.triu(np.full((T, end), -np.inf, np.float32), k=pos + 1)  # query t sees keys <= pos+t
        scale = np.float32(1.0 / np.sqrt(hd))
        x = self.tok_embd[np.asarray(tokens)]  # (T, dim), a copy
        if embeds is not None:
            x[embeds[0]] = embeds[1]
        for li, w in enumerate(self.layers):
            qkv = rmsnorm(x, w["attn_norm"], c.norm_eps) @ w["wqkv"].T + w["bqkv"]
            q = rope(qkv[:, :qd].reshape(T, H, hd), cos, sin, c.qkv_bias)
            k = rope(qkv[:, qd:qd + kvd].reshape(T, KV, hd), cos, sin, c.qkv_bias)
            self.k_cache[li, :, pos:end] = k.transpose(1, 0, 2)
            self.v_cache[li, :, pos:end] = qkv[:, qd + kvd:].reshape(T, KV, hd).transpose(1, 0, 2)
            keys, values = self.k_cache[li, :, None, :end], self.v_cache[li, :, None, :end]  # (KV,1,S,hd)
            # grouped-query attention: kv head j serves the g query heads j*g .. j*g+g-1
            qg = q.reshape(T, KV, g, hd).transpose(1, 2, 0, 3)  # (KV, g, T, hd)
            scores = qg @ keys.swapaxes(-1, -2) * scale + mask  # (KV, g, T, S)
            probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            attn = (probs @ values).transpose(2, 0, 1, 3).reshape(T, qd)
            x = x + attn @ w["wo"].T
            gate_up = rmsnorm(x, w["ffn_norm"], c.norm_eps) @ w["w_gate_up"].T
            gate, up = gate_up[:, :c.ffn_dim], gate_up[:, c.ffn_dim:]
            silu = gate * (0.5 + 0.5 * np.tanh(0.5 * gate))  # x*sigmoid(x) without exp overflow
            x = x + (silu * up) @ w["w_down"].T
        return rmsnorm(x, self.out_norm, c.norm_eps) @ self.w_out.T


def read_config(metadata: dict, infos: dict[str, TensorInfo]) -> Config:
    """The hyperparameters (`<architecture>.*` keys), each checked (a whole number in range, a finite positive
    number) before anything is allocated, so a crafted file fails in one line instead of exhausting memory."""
    arch = metadata["general.architecture"]

    def value(key: str, default=None, hi: float = math.inf, whole: bool = True, why: str = ""):
        v = metadata.get(f"{arch}.{key}", default)
        if v is None:
            raise ValueError(f"missing metadata key '{arch}.{key}'")
        if isinstance(v, bool) or not isinstance(v, int if whole else int | float) or v > hi or \
                not (v >= 1 if whole else 0 < v < math.inf):
            limit = "a finite number above 0" if not whole else "a whole number " + (
                f"from 1 to {hi}{why}" if hi < math.inf else "of at least 1")
            raise ValueError(f"{arch}.{key} = {str(v)[:40]} must be {limit}")
        return v if whole else float(v)

    if "token_embd.weight" not in infos or len(infos["token_embd.weight"].shape) != 2:
        raise ValueError("missing tensor 'token_embd.weight' (a matrix)")
    dim = value("embedding_length")
    n_heads = value("attention.head_count", hi=dim)
    n_kv_heads = value("attention.head_count_kv", n_heads, hi=n_heads)
    if n_heads % n_kv_heads or (f"{arch}.attention.key_length" not in metadata and dim % n_heads):
        raise ValueError(f"inconsistent attention: embedding_length {dim}, head_count {n_heads}, head_count_kv "
                         f"{n_kv_heads} (each must divide the one before)")
    head_dim = value("attention.key_length", dim // n_heads, hi=dim)
    rope_dim = value("rope.dimension_count", head_dim, hi=head_dim)
    scaling = metadata.get(f"{arch}.rope.scaling.type", "linear" if f"{arch}.rope.scale_linear" in metadata else "none")
    rope_scaling = 1.0
    if scaling != "none":  # a factor of 0 means none given (older converters wrote rope.scale_linear)
        given = metadata.get(f"{arch}.rope.scaling.factor") not in (None, 0, 0.0)
        rope_scaling = value("rope.scaling.factor" if given else "rope.scale_linear", 1.0, whole=False)
    if (scaling != "linear" and rope_scaling != 1.0) or "rope_freqs.weight" in infos or rope_dim % 2:
        raise ValueError(f"unsupported rope: scaling {scaling!r} (only linear), rope_freqs or an odd dimension")
    return Config(  # 9 tensors per layer or more (qwen2: 12), which bounds the layer count
        dim=dim, n_layers=value("block_count", hi=len(infos) // 9, why=f" ({len(infos)} tensors, 9 per layer)"),
        n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim, ffn_dim=value("feed_forward_length"),
        vocab_size=infos["token_embd.weight"].shape[0], max_seq_len=value("context_length", hi=MAX_CONTEXT),
        rope_theta=value("rope.freq_base", 1e4, whole=False), rope_dim=rope_dim, rope_scaling=rope_scaling,
        norm_eps=value("attention.layer_norm_rms_epsilon", 1e-5, whole=False),
        tie_embeddings="output.weight" not in infos, qkv_bias=arch == "qwen2")


def tensor_shapes(c: Config) -> dict[str, tuple[int, ...]]:
    """Every tensor the config implies, with its numpy shape (rows, columns): weights are applied as x @ W.T."""
    qd, kvd = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    shapes = {"token_embd.weight": (c.vocab_size, c.dim), "output_norm.weight": (c.dim,)}
    shapes |= {} if c.tie_embeddings else {"output.weight": (c.vocab_size, c.dim)}
    layer = {"attn_norm": (c.dim,), "attn_q": (qd, c.dim), "attn_k": (kvd, c.dim), "attn_v": (kvd, c.dim),
             "attn_output": (c.dim, qd), "ffn_norm": (c.dim,), "ffn_gate": (c.ffn_dim, c.dim),
             "ffn_up": (c.ffn_dim, c.dim), "ffn_down": (c.dim, c.ffn_dim)}
    bias = {"attn_q": (qd,), "attn_k": (kvd,), "attn_v": (kvd,)} if c.qkv_bias else {}
    for i in range(c.n_layers):
        shapes |= {f"blk.{i}.{name}.weight": shape for name, shape in layer.items()}
        shapes |= {f"blk.{i}.{name}.bias": shape for name, shape in bias.items()}
    return shapes


def load(path: str) -> Model:
    """Read a llama or qwen2 GGUF file into a ready Model: the metadata is checked against the tensors, then
    each tensor is dequantised to float32 once, straight into the array the model keeps."""
    _, metadata, infos, buf = read_gguf_header(path)
    arch = metadata.get("general.architecture")
    if arch not in ("llama", "qwen2"):
        raise ValueError(f"unsupported architecture {arch!r} (only 'llama' and 'qwen2')")
    config = read_config(metadata, infos)
    want = tensor_shapes(config)
    for name, shape in want.items():
        if name not in infos or infos[name].shape != shape:
            have = f"has shape {infos[name].shape}" if name in infos else "is missing"
            raise ValueError(f"tensor {name!r} {have}; the metadata implies {shape}")
    if extra := sorted(set(infos) - set(want)):
        raise ValueError(f"unexpected tensor {extra[0]!r} for this {arch} config")
    need = 4 * sum(math.prod(t.shape) for t in infos.values())
    have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > have:
        raise ValueError(f"the weights need {need / 1e9:.1f} GB as float32 but this machine has {have / 1e9:.1f} GB "
                         "of memory (the file itself is memory-mapped)")
    tokenizer = Tokenizer(metadata) if "tokenizer.ggml.model" in metadata else None
    if tokenizer and len(tokenizer.tokens) > config.vocab_size:  # ids past the embedding cannot be embedded
        raise ValueError(f"the tokenizer has {len(tokenizer.tokens)} tokens but token_embd {config.vocab_size} rows")
    return Model(config, lambda name, out=None: dequantize(buf, infos[name], out), tokenizer, metadata)


# ----------------------------------------------------------------------------------------------
# Images: PNG and binary PPM decoding, resizing as Pillow does, the vision encoder of an mmproj.gguf
# (llama.cpp's idefics3 projector), and Idefics3's image layout in token ids.

def _unfilter(raw: bytes, h: int, stride: int, bpp: int) -> np.ndarray:
    """PNG scanlines (a filter byte, then `stride` bytes) -> (h, stride) uint8, each row undone against the last."""
    rows, prev, at = np.zeros((h, stride), np.uint8), [0] * stride, 0
    for y in range(h):
        kind, line, at = raw[at], list(raw[at + 1:at + 1 + stride]), at + 1 + stride
        if kind > 4:
            raise ValueError(f"corrupt PNG: row {y} has unknown filter type {kind}")
        for x in range(stride):  # filters 0-4: none, sub, up, average, paeth
            a, b, c = (line[x - bpp] if x >= bpp else 0), prev[x], (prev[x - bpp] if x >= bpp else 0)
            if kind == 4:
                p = a + b - c
                a = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            line[x] = (line[x] + (0, a, b, (a + b) // 2, a)[kind]) & 255
        rows[y], prev = line, line
    return rows


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a non-interlaced 8-bit PNG of any colour type (alpha dropped, as Pillow's
    convert("RGB") does)."""
    at, chunks = 8, {}
    while at + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.setdefault(kind, []).append(data[at + 8:at + 8 + n])
        at += 12 + n
    if b"IHDR" not in chunks or b"IDAT" not in chunks or len(chunks[b"IHDR"][0]) != 13:
        raise ValueError("corrupt or truncated PNG (no IHDR or no IDAT chunk)")
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or depth != 8 or interlace or not w * h:
        raise ValueError(f"unsupported PNG: colour type {colour}, {depth}-bit, interlace {interlace} (8-bit, "
                         "not interlaced)")
    if w * h > MAX_IMAGE_PIXELS:
        raise ValueError(f"the image is {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS:,} allowed")
    try:  # at most the bytes the header implies, so a small file cannot inflate without bound
        raw = zlib.decompressobj().decompress(b"".join(chunks[b"IDAT"]), h * (1 + w * channels))
    except zlib.error as e:
        raise ValueError(f"corrupt or truncated PNG ({e})") from None
    if len(raw) < h * (1 + w * channels):
        raise ValueError("corrupt or truncated PNG (too little image data)")
    px = _unfilter(raw, h, w * channels, channels).reshape(h, w, channels)
    if colour == 3:  # entries missing from the palette read as black
        palette = np.frombuffer(b"".join(chunks.get(b"PLTE", [])).ljust(768, b"\0")[:768], np.uint8)
        return palette.reshape(256, 3)[px[..., 0]]
    return px[..., [0, 0, 0]] if channels <= 2 else px[..., :3].copy()


def decode_ppm(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 of a binary PPM (P6, maxval 255)."""
    fields = re.match(rb"P6(?:\s+|#[^\n]*\n)*(\d+)(?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)\s", data)
    if not fields or int(fields[3]) != 255:
        raise ValueError("unsupported PPM: only binary P6 with maxval 255")
    w, h = int(fields[1]), int(fields[2])
    if w * h > MAX_IMAGE_PIXELS or len(data) - fields.end() < w * h * 3:
        raise ValueError(f"a {w}x{h} PPM is over the pixel limit, or truncated")
    return np.frombuffer(data, np.uint8, w * h * 3, fields.end()).reshape(h, w, 3)


def read_image(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"{path} is more than the {MAX_IMAGE_BYTES:,} bytes allowed")
    if data[:8] != b"\x89PNG\r\n\x1a\n" and data[:2] != b"P6":
        raise ValueError(f"{path} is not a PNG or binary PPM image")
    return decode_ppm(data) if data[:2] == b"P6" else decode_png(data)


def _resample(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resize uint8 pixels along one axis with Pillow's bicubic filter (a = -0.5), widened when shrinking,
    its weights in 22-bit fixed point and the result rounded, so the pixels equal Pillow's."""
    n, scale = x.shape[axis], x.shape[axis] / size
    support, rows = 2.0 * max(scale, 1.0), []
    for i in range(size):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n)
        t = np.abs((np.arange(lo, hi) - centre + 0.5) * (1.0 / max(scale, 1.0)))
        k = np.where(t < 1, (1.5 * t - 2.5) * t * t + 1, np.where(t < 2, (((t - 5) * t + 8) * t - 4) * -0.5, 0))
        k = k / k.sum() * (1 << 22)
        rows.append(np.zeros(n, np.int64))  # rounded half away from zero, as Pillow does
        rows[-1][lo:hi] = np.where(k < 0, np.ceil(k - 0.5), np.floor(k + 0.5))
    out = np.tensordot(np.moveaxis(x, axis, -1).astype(np.int64), np.array(rows).T, 1) + (1 << 21)
    return np.moveaxis(np.clip(out >> 22, 0, 255).astype(np.uint8), -1, axis)


def resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Horizontally, then vertically, Pillow's classic order (Pillow 13 may shrink vertically first)."""
    img = img if img.shape[1] == w else _resample(img, w, 1)
    return img if img.shape[0] == h else _resample(img, h, 0)


class Vision:
    """An mmproj.gguf: a ViT (patches, learned positions, pre-norm blocks, a final LayerNorm), then pixel
    shuffle and one linear layer into the language model's width."""

    def __init__(self, path: str) -> None:
        _, meta, infos, buf = read_gguf_header(path)
        if meta.get("general.architecture") != "clip" or meta.get("clip.projector_type") != "idefics3":
            raise ValueError(f"{path} is not an idefics3 mmproj file")
        v = lambda key: meta[f"clip.vision.{key}"]  # noqa: E731
        self.size, self.patch, self.heads, self.eps = v("image_size"), v("patch_size"), v("attention.head_count"), \
            v("attention.layer_norm_epsilon")
        self.scale, self.max_tiles = v("projector.scale_factor"), v("preproc_image_size") // v("image_size")
        self.mean, self.std = np.float32(v("image_mean")), np.float32(v("image_std"))
        self.gelu, self.w = meta.get("clip.use_gelu", False), {n: dequantize(buf, i) for n, i in infos.items()}
        self.n_layers, self.tokens = v("block_count"), (self.size // self.patch // self.scale) ** 2

    def views(self, img: np.ndarray) -> tuple[list[np.ndarray], int, int]:
        """The tiles row by row and the global view, as vision/preprocess.py cuts them."""
        S, (h, w) = self.size, img.shape[:2]
        scale = min(1.0, self.max_tiles * S / max(h, w))
        rows, cols = max(1, math.ceil(h * scale / S)), max(1, math.ceil(w * scale / S))
        big = resize(img, cols * S, rows * S)
        tiles = [big[r * S:(r + 1) * S, c * S:(c + 1) * S] for r in range(rows) for c in range(cols)]
        return tiles + [resize(img, S, S)], rows, cols

    def encode(self, view: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 -> (tokens, lm dim) image features."""
        w, p, g = self.w, self.patch, self.size // self.patch
        x = ((view.astype(np.float32) / np.float32(255) - self.mean) / self.std).transpose(2, 0, 1)  # (3, S, S)
        patches = x.reshape(3, g, p, g, p).transpose(1, 3, 0, 2, 4).reshape(g * g, -1)  # (N, 3*p*p), row-major
        wp = w["v.patch_embd.weight"]
        x = patches @ wp.reshape(len(wp), -1).T + w["v.patch_embd.bias"] + w["v.position_embd.weight"]  # (N, dim)
        norm = lambda x, n: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + self.eps) * \
            w[n + ".weight"] + w[n + ".bias"]  # noqa: E731
        lin = lambda x, n: x @ w[n + ".weight"].T + w[n + ".bias"]  # noqa: E731
        N, C, H = g * g, x.shape[1], self.heads
        for i in range(self.n_layers):
            b, h = f"v.blk.{i}.", norm(x, f"v.blk.{i}.ln1")
            q, k, vv = (lin(h, b + n).reshape(N, H, -1).transpose(1, 0, 2) for n in ("attn_q", "attn_k", "attn_v"))
            s = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(C // H))  # (H, N, N)
            s = np.exp(s - s.max(-1, keepdims=True))
            x = x + lin((s / s.sum(-1, keepdims=True) @ vv).transpose(1, 0, 2).reshape(N, C), b + "attn_out")
            u = lin(norm(x, b + "ln2"), b + "ffn_up")
            u = u * 0.5 * (1 + np.tanh(0.7978845608 * (u + 0.044715 * u**3))) if self.gelu else \
                u * (0.5 + 0.5 * np.tanh(0.5 * u))
            x = x + lin(u, b + "ffn_down")
        x, s, gs = norm(x, "v.post_ln"), self.scale, g // self.scale
        x = x.reshape(gs, s, gs, s, C).transpose(0, 2, 1, 3, 4).reshape(gs * gs, s * s * C)  # pixel shuffle
        return x @ w["mm.model.fc.weight"].T

    def expand(self, tok: "Tokenizer", ids: list[int], images: list[np.ndarray]) -> tuple[list[int], np.ndarray]:
        """Each <__media__> marker's tokens -> the image's layout: per tile <fake_token_around_image>
        <row_r_col_c> + image tokens ("\\n" between tile rows), then "\\n\\n" <fake_token_around_image>
        <global-img> + the global view's tokens + <fake_token_around_image>. Returns the ids and the
        (positions, features) of the image tokens."""
        marker, sp, out, feats, i = tok.encode("<__media__>"), tok.special_id, [], [], 0
        around, pad, nl, nl2 = (sp("<fake_token_around_image>"), sp("<|image_pad|>"), tok.encode("\n"),
                                tok.encode("\n\n"))
        while i < len(ids):
            if ids[i:i + len(marker)] != marker:
                out, i = out + [ids[i]], i + 1
                continue
            if not images:
                raise ValueError("the prompt has more <__media__> markers than images")
            views, rows, cols = self.views(images.pop(0))
            for r in range(rows):
                for c in range(cols):
                    out += [around, sp(f"<row_{r + 1}_col_{c + 1}>")] + [pad] * self.tokens
                out += nl if r < rows - 1 else nl2
            out, i = out + [around, sp("<global-img>")] + [pad] * self.tokens + [around], i + len(marker)
            feats += [self.encode(v) for v in views]
        return out, (np.array([k for k, t in enumerate(out) if t == pad], np.int64), np.concatenate(feats))


# ----------------------------------------------------------------------------------------------
# Sampling and generation.

def sample(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> int:
    """Temperature, then top-k, then top-p (the smallest set of tokens whose mass reaches top_p)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if 0 < top_k < len(z):
        z = np.where(z >= np.partition(z, -top_k)[-top_k], z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if 0 < top_p < 1:
        order = np.argsort(-p, kind="stable")
        p[order[int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1:]] = 0
        p /= p.sum()
    return int(rng.choice(len(p), p=p))


PREFILL_CHUNK = 256  # bounds the (heads, T, S) attention scores a long prompt materialises at once


def generate(model: Model, prompt_ids: Sequence[int], max_new_tokens: int, temperature: float = 0.8,
             top_k: int = 40, top_p: float = 0.95, seed: int = 0,
             stop_ids: "set[int] | None" = None, embeds: "tuple | None" = None) -> Iterator[int]:
    """Yield new token ids until max_new_tokens, a stop token (not yielded), or the context is full, from
    an empty cache (same arguments, same tokens). embeds: (positions, vectors) from Vision.expand."""
    ctx = model.config.max_seq_len
    if not 0 < len(prompt_ids) < ctx:
        raise ValueError(f"the prompt has {len(prompt_ids)} tokens; the context length {ctx} allows 1 to {ctx - 1}")
    if stop_ids is None:
        stop_ids = model.tokenizer.stop_ids if model.tokenizer else set()
    rng = np.random.default_rng(seed)
    model.reset()
    for start in range(0, len(prompt_ids), PREFILL_CHUNK):
        ids = list(prompt_ids[start:start + PREFILL_CHUNK])
        if embeds is None:
            logits = model.forward_many(ids, start)[-1]
        else:  # the image features that fall in this chunk
            inside = (embeds[0] >= start) & (embeds[0] < start + len(ids))
            logits = model.forward_many(ids, start, (embeds[0][inside] - start, embeds[1][inside]))[-1]
    pos, token = len(prompt_ids), None  # pos: where the next sampled token will sit
    for step in range(max_new_tokens):
        if step:
            logits, pos = model.forward(token, pos), pos + 1
        if pos >= ctx:
            return
        token = sample(logits, temperature, top_k, top_p, rng)
        if token in stop_ids:
            return
        yield token


# ----------------------------------------------------------------------------------------------
# Command line.

def _stream_out(model: Model, ids: Iterator[int], stats: list[float]) -> list[int]:
    """Print text as it is generated; return the ids; add [count, seconds generating] to stats."""
    out, t0 = [], time.perf_counter()
    for text in model.tokenizer.stream(out.append(i) or i for i in ids):  # keep ids, print their text
        sys.stdout.write(text)
        sys.stdout.flush()
    stats[0], stats[1] = stats[0] + len(out), stats[1] + time.perf_counter() - t0
    return out


def chat(model: Model, args: argparse.Namespace, stats: list[float], vision: "Vision | None" = None,
         images: "list | None" = None) -> None:
    """Multi-turn ChatML conversation on stdin/stdout, formatted without a template engine. The
    markers come from special_id(), never from encoding text, so typed '<|im_start|>' stays text.
    `images` go with the first message, each as the media marker and a newline before its text."""
    template = model.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("--chat needs a chat template, but the file has no tokenizer.chat_template")
    if not isinstance(template, str) or "<|im_start|>" not in template:
        raise ValueError("--chat supports only ChatML chat templates (<|im_start|>), and this one is not")
    tok = model.tokenizer
    start, end = tok.special_id("<|im_start|>"), tok.special_id("<|im_end|>")

    def turn(role: str, content: str) -> list[int]:
        return [start, *tok.encode(f"{role}\n{content}"), end, *tok.encode("\n")]

    def read() -> str:
        if sys.stdin.isatty():
            print("> ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline()

    # a template that writes a default system message (SmolLM2's does) gets it when none is given
    default = re.search(r"'<\|im_start\|>system(?:\n|\\n)([^'{}]*)<\|im_end\|>", template)
    system = args.system or (default.group(1) if default else "")
    history, embeds = tok.prefix + (turn("system", system) if system else []), None
    for line in itertools.chain([args.prompt], iter(read, "") if args.chat else []):  # ends at end of input
        if not line.strip():
            continue
        text = "\n".join(["<__media__>"] * len(images or []) + [line.rstrip("\n")])
        history += turn("user", text) + [start, *tok.encode("assistant\n")]
        if images:  # the layouts go in once; later turns only append, so the positions stay
            history, embeds = vision.expand(tok, history, images)
        reply = _stream_out(model, generate(model, history, args.n, args.temperature, args.top_k, args.top_p,
                                            args.seed, tok.stop_ids | {end}, embeds), stats)
        print(flush=True)
        history += reply + [end, *tok.encode("\n")]


def main(argv: "Sequence[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description="Generate text from a llama or qwen2 GGUF model with numpy.")
    ap.add_argument("model", help="path to a .gguf file")
    ap.add_argument("prompt", nargs="?", default="", help="prompt text (first user message with --chat)")
    ap.add_argument("-n", type=int, default=256, help="maximum new tokens, >= 0 (per reply with --chat)")
    ap.add_argument("--temperature", type=float, default=0.8, help=">= 0; 0 means greedy")
    ap.add_argument("--top-k", type=int, default=40, help=">= 0; 0 disables")
    ap.add_argument("--top-p", type=float, default=0.95, help="in (0, 1]; 1 disables")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chat", action="store_true", help="interactive ChatML conversation on stdin")
    ap.add_argument("--system", default="", help="system message for --chat")
    ap.add_argument("--image", action="append", default=[], help="a PNG or binary PPM image to ask about in a ChatML "
                    "turn (repeatable): one answer, or with --chat the first message of a conversation")
    ap.add_argument("--mmproj", help="the vision encoder's GGUF file (default: mmproj.gguf beside the model)")
    args = ap.parse_intermixed_args(argv)  # the prompt may follow --image PATH
    for bad, flag in ((args.n < 0, "-n"), (not 0 <= args.temperature < math.inf, "--temperature"),
                      (args.top_k < 0, "--top-k"), (not 0 < args.top_p <= 1, "--top-p")):
        if bad:
            ap.error(f"{flag} is out of range (see --help)")
    stats = [0, 0.0]
    try:
        model = load(args.model)
        if model.tokenizer is None:
            raise ValueError("the file has no tokenizer (tokenizer.ggml.model)")
        tok = model.tokenizer
        if args.image:
            vision = Vision(args.mmproj or os.path.join(os.path.dirname(os.path.abspath(args.model)), "mmproj.gguf"))
            chat(model, args, stats, vision, [read_image(p) for p in args.image])
        elif args.chat:
            chat(model, args, stats)
        else:
            ids = tok.prefix + tok.encode(args.prompt)
            if not ids and tok.bos_id is not None:  # an empty prompt still needs one token to start from
                ids = [tok.bos_id]
            gen = generate(model, ids, args.n, args.temperature, args.top_k, args.top_p, args.seed)
            sys.stdout.write(args.prompt)  # echo the prompt, so the output reads as one text
            _stream_out(model, gen, stats)
            sys.stdout.write("\n")
    except (ValueError, OSError, KeyError) as e:  # KeyError: an mmproj file without a key the encoder needs
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.stdout.write("\n")
    if stats[1] > 0:
        print(f"{stats[0]} tokens in {stats[1]:.2f} s: {stats[0] / stats[1]:.1f} tokens/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

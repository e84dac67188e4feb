"""The one tokenizer wrapper, over HF `tokenizers`: byte-level BPE (ours, GPT-2 style, Llama 3,
Qwen 2, SmolLM) and SentencePiece-style BPE with byte fallback (Llama 2 and relatives).

lmstack trains byte-level BPE with GPT-2's pre-tokenization, which llama.cpp knows by the name
`gpt-2`, so the same text splits the same way here, in the numpy run file and in llama.cpp. Models
from elsewhere bring their own split; `PRE_TOKENIZERS` holds the regexes llama.cpp uses for the
names GGUF files give (`tokenizer.ggml.pre`), applied one after the other with unmatched text kept
as its own piece, which is what `Split(..., behavior="isolated")` does. Special tokens (chat
turns, tool calls, images) are never produced by encoding text unless asked for: a user who types
"<|im_start|>" gets the bytes of that string, not a control token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from lmstack.errors import LmstackError
from lmstack.io.chat_template import CHATML_TEMPLATE, render_chat

END_OF_TEXT = "<|endoftext|>"  # a document ends here (shards put it between documents)
END_OF_TURN = "<|im_end|>"  # a chat turn ends here (GGUF's tokenizer.ggml.eot_token_id)
SPECIAL_TOKENS = [
    END_OF_TEXT,
    "<|im_start|>",
    END_OF_TURN,
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<image>",
    "</image>",
    "<|image_pad|>",
    "<|pad|>",
] + [f"<|reserved_{i}|>" for i in range(5)]

# llama.cpp's pre-tokenizer regexes (llama-vocab.cpp), by the names GGUF files use. Each list is applied
# in order, every regex splitting the pieces the previous one left, unmatched text kept as a piece.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
_DEFAULT = [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"]
PRE_TOKENIZERS: dict[str, list[str]] = {
    **dict.fromkeys(["gpt-2", "gpt2", "phi-2", "mpt", "olmo"], [_GPT2]),
    **dict.fromkeys(["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone"], [r"\p{N}", _GPT2]),
    **dict.fromkeys(["llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "falcon3"], [_LLAMA3]),
    **dict.fromkeys(["qwen2", "stablelm2"], [_QWEN2]),
    "default": _DEFAULT,
}
# llama.cpp takes a pre-token that is itself a vocabulary entry whole, without merging, for these
IGNORE_MERGES = {"llama-bpe", "llama3", "llama-v3", "falcon3"}
DEFAULT_PRE = "default"  # what llama.cpp splits with when a byte-level file names no pre-tokenizer


def byte_level_pre_tokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    """The HF pre-tokenizer equal to llama.cpp's for a `tokenizer.ggml.pre` name."""
    if name not in PRE_TOKENIZERS:
        raise LmstackError(f"unsupported pre-tokenizer {name!r} (supported: {', '.join(PRE_TOKENIZERS)})")
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_TOKENIZERS[name]]
    return pre_tokenizers.Sequence([*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def _pre_tokenizer_name(desc: dict) -> str | None:
    """The GGUF name of a byte-level tokenizer's split, recognising the forms tokenizer.json files use."""
    pre = desc.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    sig = []
    for st in steps:
        if st.get("type") == "Split":
            sig.append(st["pattern"].get("Regex", st["pattern"].get("String")))
        elif st.get("type") == "Digits" and st.get("individual_digits"):
            sig.append(r"\p{N}")
        elif st.get("type") == "ByteLevel":
            sig += [_GPT2] if st.get("use_regex", True) else []
        else:
            return None
    sig = [r.replace(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)", _LLAMA3.split("|[^")[0]) for r in sig]
    sig = [r[: -len(r"|\s+")] if r.startswith("'s|'t") and r.endswith(r"(?!\S)|\s+") else r for r in sig]
    for name in ("gpt-2", "smollm", "llama-bpe", "qwen2", "default"):
        if sig == PRE_TOKENIZERS[name]:
            return name
    return None


def _unencodable(text) -> str:
    if not isinstance(text, str):
        return f"text to encode must be a string, got {type(text).__name__}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"text is not valid Unicode: a lone surrogate (U+{ord(text[e.start]):04X}) at character {e.start}"
    return "text could not be encoded"


class Tokenizer:
    """Text <-> ids, the special ids a runtime needs, and the chat template that goes with the vocabulary.

    `end_of_text_id` ends a document (shards put it between documents); `end_of_turn_id` ends a chat
    turn (GGUF calls it eot); `stop_ids` end a generation (end of text, GGUF's eos and end of turn);
    `bos_id` starts a sequence when `add_bos` is set (SentencePiece models).
    """

    def __init__(self, hf: HFTokenizer, chat_template: str | None = None, bos_id: int | None = None,
                 eos_id: int | None = None, end_of_turn_id: int | None = None, add_bos: bool = False,
                 gguf_pre: str | None = None, scores: list[float] | None = None):
        self.hf = hf
        self.hf.encode_special_tokens = True  # specials in text are plain text
        self.special_ids = {t.content: i for i, t in sorted(hf.get_added_tokens_decoder().items()) if t.special}
        self.chat_template = chat_template or CHATML_TEMPLATE
        desc = json.loads(hf.to_str())
        self.kind = "spm" if _is_sentencepiece(desc) else "bpe"
        if gguf_pre is None and self.kind == "bpe":
            gguf_pre = _pre_tokenizer_name(desc)
        self.gguf_pre = gguf_pre  # the name llama.cpp knows this split by (byte-level BPE only)
        self.scores = scores
        end = self.special_ids.get(END_OF_TEXT, eos_id)
        if end is None:
            raise LmstackError(f"tokenizer has no {END_OF_TEXT} token and no end-of-sequence id")
        self.end_of_text_id: int = end
        self.end_of_turn_id = end_of_turn_id if end_of_turn_id is not None else self.special_ids.get(END_OF_TURN)
        self.bos_id = bos_id
        self.eos_id = eos_id if eos_id is not None else end
        self.add_bos = bool(add_bos and bos_id is not None)
        self.stop_ids = frozenset(i for i in (end, self.eos_id, self.end_of_turn_id) if i is not None)
        self._hf_special: HFTokenizer | None = None

    # ---- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, **kw) -> Tokenizer:
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exceptions with long messages
            raise LmstackError(f"cannot read tokenizer {path}: {str(e).splitlines()[0]}") from None
        return cls(hf, **kw)

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    def to_str(self) -> str:
        return self.hf.to_str()

    # ---- encoding ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str, allow_special: bool = False, add_bos: bool = False) -> list[int]:
        """Ids of text. With allow_special, special-token strings in it (from a rendered chat
        template) become their ids; with add_bos, the model's start token is put first if it wants one."""
        hf = self.hf
        if allow_special:
            if self._hf_special is None:  # a second instance, so plain encode() is never affected
                self._hf_special = HFTokenizer.from_str(self.hf.to_str())
                self._hf_special.encode_special_tokens = False
            hf = self._hf_special
        try:
            ids = hf.encode(text, add_special_tokens=False).ids
        except TypeError:  # not a str, or a str the tokenizer cannot take (a lone surrogate from JSON's \ud800)
            raise LmstackError(_unencodable(text)) from None
        return ([self.bos_id] if add_bos and self.add_bos else []) + ids

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True, tools: list | None = None) -> str:
        """The conversation as text, through this vocabulary's chat template."""
        name = lambda i: self.hf.id_to_token(i) if i is not None else ""
        return render_chat(messages, add_generation_prompt, tools, template=self.chat_template,
                           bos_token=name(self.bos_id), eos_token=name(self.eos_id))

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
        """GGUF token types: 1 normal, 3 control (specials), 2 unknown and 6 byte (SentencePiece)."""
        special = set(self.special_ids.values())
        types = [3 if i in special else 1 for i in range(self.vocab_size)]
        if self.kind == "spm":
            unk = json.loads(self.hf.to_str())["model"].get("unk_token")
            for i, t in enumerate(self.tokens()):
                types[i] = 2 if t == unk else 6 if _BYTE_TOKEN.fullmatch(t) else types[i]
        return types

    def token_byte_lengths(self) -> np.ndarray:
        """Bytes of text each token stands for (0 for specials): the denominator of bits per byte."""
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        special = set(self.special_ids.values())
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for i, tok in enumerate(self.tokens()):
            if i in special:
                continue
            if self.kind == "spm":
                lengths[i] = 1 if _BYTE_TOKEN.fullmatch(tok) else len(tok.replace("\u2581", " ").encode("utf-8"))
            else:
                lengths[i] = sum(1 for c in tok if c in byte_of)
        return lengths


_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _is_sentencepiece(desc: dict) -> bool:
    """BPE over characters with byte fallback and '\u2581' for spaces, rather than over GPT-2's byte alphabet."""
    model = desc["model"]
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the characters byte-level BPE vocabularies spell
    bytes with; the streaming detokenizer reads token bytes through it too)."""
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

"""Tokenizers rebuilt from GGUF metadata, in the package and in the run file, give the same ids as the
reference tokenizer: for byte-level BPE with each pre-tokenizer real files name, the HF tokenizer in the
form the model's own tokenizer.json has; for SentencePiece-style vocabularies, HF transformers reading
the same GGUF file."""

import json
import unicodedata

import gguf
import numpy as np
import pytest
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from lmstack import run
from lmstack.errors import LmstackError
from lmstack.io.chat_template import CHATML_TEMPLATE
from lmstack.io.gguf_file import export_gguf, read_gguf, tokenizer_from_gguf
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import Transformer
from tests.conftest import make_play, tiny_config
from tests.gguf_helpers import write_gguf

TEXTS = [
    "Hello world! It's a fine day, isn't it? I'LL go; WE'RE here. They'd've done it.",
    "Numbers: 1234567, 3.14159, 2024-01-02, x=10**9, ٣٤٥٦ and ²½ ⅻ; phone +1 (555) 010-9999.",
    "def f(x):\n\tif x > 0:\n\t\treturn [i ** 2 for i in range(x)]  # squares\n    return None\n",
    "  leading spaces,   runs   of   spaces,\ttabs\t\tand\nnewlines\n\n\nand \r\n CRLF \r\n\r\n end   ",
    "Unicode: café naïve Straße 日本語のテキスト 한국어 Ελληνικά русский עברית 🎉🚀 e\u0301 \u00a0nbsp\u3000x",
    "mixed123words and_underscores CamelCaseWords ALLCAPS don't DON'T 'quoted' \"double\" ...!!! ?? --",
    "<|im_start|>user\nnot a special token here<|im_end|>\n",
    "", " ", "\n", "a", "   \n  \n", "1", "!!!", "x\u2028y",
]
CORPUS = [make_play(i) for i in range(6)] + TEXTS * 3


def _words(n: int) -> list[str]:
    return [t for t in CORPUS for _ in range(n)]


# ----------------------------------------------------------------------------------- byte-level BPE
# The pre-tokenizers exactly as the models' own tokenizer.json files spell them (independent of the
# llama.cpp regexes lmstack builds from the GGUF name).
_LLAMA3_HF = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_HF = _LLAMA3_HF.replace(r"\p{N}{1,3}", r"\p{N}")
REFERENCE = {
    "gpt-2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
    "llama-bpe": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_LLAMA3_HF), "isolated"),
                                          pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
    "qwen2": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_QWEN2_HF), "isolated"),
                                      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _byte_level_reference(pre: str) -> HFTokenizer:
    hf = HFTokenizer(models.BPE(ignore_merges=pre == "llama-bpe"))
    hf.pre_tokenizer = REFERENCE[pre]
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(_words(2), trainer)
    return hf


def _byte_level_meta(hf: HFTokenizer, pre: str) -> dict:
    vocab = sorted(hf.get_vocab().items(), key=lambda kv: kv[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(hf.to_str())["model"]["merges"]]
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": [t for t, _ in vocab],
            "tokenizer.ggml.token_type": [3 if t in SPECIALS else 1 for t, _ in vocab],
            "tokenizer.ggml.merges": merges, "tokenizer.ggml.eos_token_id": hf.token_to_id("<|endoftext|>")}


@pytest.mark.parametrize("pre", list(REFERENCE))
def test_byte_level_pre_tokenizers_match_the_reference(pre):
    ref = _byte_level_reference(pre)
    meta = _byte_level_meta(ref, pre)
    ours, runner = tokenizer_from_gguf(meta), run.Tokenizer(meta)
    assert ours.gguf_pre == pre and Tokenizer(ref).gguf_pre == pre  # the name is recognised from tokenizer.json
    ref.encode_special_tokens = True
    for text in TEXTS:
        want = ref.encode(text, add_special_tokens=False).ids
        assert ours.encode(text) == want, (pre, text)
        assert runner.encode(text) == want, (pre, text)
        assert ours.decode(want) == text and runner.decode(want) == text


def test_pre_tokenizers_differ_where_their_regexes_do():
    """The variants really are different splits (so the test above could fail): digits and newlines."""
    meta = _byte_level_meta(_byte_level_reference("gpt-2"), "gpt-2")
    text = "abc 12345\n\n  x"
    splits = {pre: run.PRE_TOKENIZERS[pre](text) for pre in ("gpt-2", "smollm", "llama-bpe", "qwen2")}
    assert splits["gpt-2"] == ["abc", " 12345", "\n\n ", " x"]
    assert splits["smollm"] == ["abc", " ", "1", "2", "3", "4", "5", "\n\n ", " x"]
    assert splits["llama-bpe"] == ["abc", " ", "123", "45", "\n\n", " ", " x"]
    assert splits["qwen2"] == ["abc", " ", "1", "2", "3", "4", "5", "\n\n", " ", " x"]
    with pytest.raises(LmstackError, match="pre-tokenizer 'no-such'"):
        tokenizer_from_gguf({**meta, "tokenizer.ggml.pre": "no-such"})


def test_run_file_classes_agree_with_unicode_properties():
    """The run file's scanner has no \\p{L}: its character classes must equal the regex engine's."""
    ref = HFTokenizer(models.BPE())
    ref.pre_tokenizer = pre_tokenizers.Split(Regex(r"\p{L}+|\p{N}+|\s+|[^\s\p{L}\p{N}]+"), "isolated")
    # (code points unassigned in Python's Unicode version are left out: newer engines may know them)
    chars = "".join(chr(c) for c in range(0x20, 0x3000) if unicodedata.category(chr(c)) not in ("Cs", "Cn"))
    got = [p for p, _ in ref.pre_tokenizer.pre_tokenize_str(chars)]
    classes = ["".join(sorted({run._char_class(c) for c in p})) for p in got]
    assert all(len(c) == 1 for c in classes)


# ----------------------------------------------------------------------------------- SentencePiece
def _spm_reference() -> HFTokenizer:
    """A Llama-2-style vocabulary: <unk> <s> </s>, 256 byte tokens, then BPE pieces that start with '\u2581'."""
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    hf = HFTokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    hf.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=specials, show_progress=False)
    hf.train_from_iterator(_words(2), trainer)
    return hf


def _spm_file(path, hf: HFTokenizer) -> dict:
    vocab = sorted(hf.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    types = [2 if t == "<unk>" else 3 if t in ("<s>", "</s>") else 6 if t.startswith("<0x") else 1 for t in tokens]

    def add_vocabulary(w: gguf.GGUFWriter) -> None:
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([-float(i) for i in range(len(tokens))])  # merge order: the earlier, the better
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
    hparams = {"context_length": 32, "embedding_length": 8, "block_count": 1, "feed_forward_length": 8,
               "attention.head_count": 2, "attention.layer_norm_rms_epsilon": 1e-5}
    write_gguf(path, {"token_embd.weight": np.zeros((len(tokens), 8), np.float32)}, hparams, setup=add_vocabulary)
    return run.read_gguf_header(str(path))[1]


@pytest.fixture(scope="module")
def spm(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "spm.gguf"
    return path, _spm_file(path, _spm_reference())


SPM_TEXTS = [t for t in TEXTS if "\r" not in t and "\u2028" not in t] + ["ß ∑ 🙂 ok", "Zebra-Quokka xylophone"]


def test_sentencepiece_matches_transformers_on_the_same_file(spm):
    from transformers import AutoTokenizer

    path, meta = spm
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ours, runner = tokenizer_from_gguf(meta), run.Tokenizer(meta)
    assert ours.kind == "spm" and ours.add_bos and runner.prefix == [1]
    byte_fallbacks = 0
    for text in SPM_TEXTS:
        want = ref.encode(text, add_special_tokens=False)
        assert ours.encode(text) == want, text
        assert runner.encode(text) == want, text
        assert ours.decode(want) == ref.decode(want) == runner.decode(want)
        byte_fallbacks += sum(3 <= i < 259 for i in want)
    assert byte_fallbacks > 5  # characters outside the vocabulary went through <0xNN> tokens
    assert ours.encode("hi", add_bos=True)[0] == 1


def test_sentencepiece_model_exports_and_reads_back(spm, tmp_path):
    _, meta = spm
    tok = tokenizer_from_gguf(meta)
    model = Transformer(tiny_config(tok.vocab_size, dim=16, n_heads=2, n_kv_heads=1))
    g = read_gguf(export_gguf(model, tok, tmp_path / "m.gguf"))
    assert g.metadata["tokenizer.ggml.model"] == "llama" and g.metadata["tokenizer.ggml.token_type"][3] == 6
    back = tokenizer_from_gguf(g.metadata)
    for text in SPM_TEXTS:
        assert back.encode(text) == tok.encode(text)


# ----------------------------------------------------------------------------------- chat templates
def test_chat_template_comes_from_the_file_with_chatml_as_default():
    ref = _byte_level_reference("gpt-2")
    meta = _byte_level_meta(ref, "gpt-2")
    plain = tokenizer_from_gguf(meta)
    assert plain.chat_template == CHATML_TEMPLATE
    own = "{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}\n{% endfor %}"
    tok = tokenizer_from_gguf({**meta, "tokenizer.chat_template": own})
    msgs = [{"role": "user", "content": "hi"}]
    assert tok.render_chat(msgs) == "[user] hi<|endoftext|>\n"
    assert plain.render_chat(msgs) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = plain.encode(plain.render_chat(msgs), allow_special=True)
    assert ids[0] == plain.special("<|im_start|>") and plain.encode("<|im_start|>")[0] != ids[0]
    bad = tokenizer_from_gguf({**meta, "tokenizer.chat_template": "{{ raise_exception('no system role') }}"})
    with pytest.raises(LmstackError, match="no system role"):
        bad.render_chat(msgs)
    broken = tokenizer_from_gguf({**meta, "tokenizer.chat_template": "{% for %}"})
    with pytest.raises(LmstackError, match="does not parse"):
        broken.render_chat(msgs)


def test_unknown_tokenizer_model_is_one_clear_error():
    with pytest.raises(LmstackError, match="unsupported tokenizer model 't5'"):
        tokenizer_from_gguf({"tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(LmstackError, match="no tokenizer vocabulary"):
        tokenizer_from_gguf({"tokenizer.ggml.model": "gpt2"})


# ----------------------------------------------------------------------------------- the two tables
SPLIT_TEXTS = TEXTS + [
    "$5+3<=>^~|x ¿qué? «quoted» a--b (x)[y]{z} 1,234.5% #tag @me",
    "12345678 1234 ١٢٣٤٥ 12a345b6789",
    "".join(chr(c) for c in range(0x21, 0x3000) if unicodedata.category(chr(c))[0] in "PS"),
]


def _pieces(pre_tokenizer, text: str) -> list[str]:
    """The pieces an HF pre-tokenizer that ends in ByteLevel gives, as text again."""
    return [bytes(run._U2B[c] for c in p).decode("utf-8") for p, _ in pre_tokenizer.pre_tokenize_str(text)]


def test_the_run_file_and_the_package_know_the_same_pre_tokenizers():
    from lmstack.io.tokenizer import DEFAULT_PRE, IGNORE_MERGES, PRE_TOKENIZERS, byte_level_pre_tokenizer

    assert sorted(run.PRE_TOKENIZERS) == sorted(PRE_TOKENIZERS)  # every name in each is in the other
    assert run.WHOLE_WORDS == IGNORE_MERGES and run.DEFAULT_PRE == DEFAULT_PRE == "default"
    for name in PRE_TOKENIZERS:  # and each name splits alike: the run file's scanner, the package's regexes
        hf = byte_level_pre_tokenizer(name)
        for text in SPLIT_TEXTS:
            assert run.PRE_TOKENIZERS[name](text) == _pieces(hf, text), (name, text[:40])


def test_a_file_naming_no_pre_tokenizer_is_split_as_llama_cpp_does_in_both():
    meta = _byte_level_meta(_byte_level_reference("gpt-2"), "gpt-2")
    del meta["tokenizer.ggml.pre"]
    ours, runner = tokenizer_from_gguf(meta), run.Tokenizer(meta)
    assert ours.gguf_pre == "default" and runner.split is run.split_default
    for text in SPLIT_TEXTS:
        assert runner.encode(text) == ours.encode(text), text[:40]
    assert run.split_default("x=1234567;") == ["x", "=", "123", "456", "7", ";"]
    assert run.split_gpt2("x=1234567;") == ["x", "=", "1234567", ";"]  # so the default is not GPT-2's split

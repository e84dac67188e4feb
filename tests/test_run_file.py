"""Tests for the standalone numpy runner lmstack/run.py: GGUF parsing, dequantisation, tokenizer
parity with HF tokenizers, the KV-cached forward pass against a direct torch recomputation,
sampling, and the command line. Files are built with the gguf package, independent of run.py."""

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lmstack import run
from tests.gguf_helpers import llama_tensors, write_gguf

RUN_PY = Path(run.__file__)
Q = gguf.GGMLQuantizationType
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

PROSE = """The old lighthouse keeper climbed the spiral stairs every evening, counting each of the
one hundred and twelve steps. He didn't mind the climb; it gave him time to think about the ships,
the storms, and the letters he'd never sent. I'LL be back, he always said, and he always was."""
VERSE = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
  Rough winds do shake the darling buds of May,
    And summer's lease hath all too short a date;\n\n\nSometime too hot the eye of heaven shines,"""
CODE = """def fibonacci(n: int) -> int:
\tif n < 2:
\t\treturn n
    return fibonacci(n - 1) + fibonacci(n - 2)  # slow!   \n\nclass Node:\n    pass\n"""
UNICODE = """Café crème, Straße, naïve façade. 日本語のテキスト。 Emoji: 🎉🎉 🚀! Ελληνικά γράμματα.
Combining: e\u0301 a\u0308 ñ. Numbers: ²½ ¾ 12,345.67 and ٣٤٥ and Ⅻ. Tabs\tand\u00a0nbsp\u3000ideographic."""
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [PROSE, VERSE, CODE, UNICODE,
          "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\nHi, how can I help?<|im_end|>"]


@pytest.fixture(scope="module")
def hf_tok() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t for _ in range(20) for t in CORPUS], trainer)
    tok.encode_special_tokens = True
    return tok


def add_tokenizer(w: gguf.GGUFWriter, tok: Tokenizer, chat_template: "str | None" = None) -> None:
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in SPECIALS else 1 for t, _ in vocab])
    w.add_token_merges(merges)
    w.add_bos_token_id(tok.token_to_id("<|endoftext|>"))
    w.add_eos_token_id(tok.token_to_id("<|endoftext|>"))
    w.add_eot_token_id(tok.token_to_id("<|im_end|>"))
    if chat_template is not None:
        w.add_chat_template(chat_template)


def read_all(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The whole file as the run file reads it: (metadata, {tensor name: float32 array})."""
    _, meta, infos, buf = run.read_gguf_header(str(path))
    return meta, {name: run.dequantize(buf, info) for name, info in infos.items()}


# ---------------------------------------------------------------------------------------------- GGUF

def test_dequantisation_matches_gguf_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors, expected, originals = {}, {}, {}
    for name, qtype in [("q8", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1), ("bf16", Q.BF16)]:
        arr = originals[name] = rng.standard_normal((4, 64)).astype(np.float32)
        tensors[name] = (gguf.quants.quantize(arr, qtype), qtype)
        expected[name] = gguf.quants.dequantize(tensors[name][0], qtype)
    tensors["f32"] = rng.standard_normal((3, 5, 32)).astype(np.float32)
    tensors["f16"] = rng.standard_normal((6, 10)).astype(np.float16)
    expected |= {name: tensors[name].astype(np.float32) for name in ("f32", "f16")}
    _, tensors = read_all(write_gguf(tmp_path / "q.gguf", tensors))
    assert set(tensors) == set(expected)
    for name, ref in expected.items():
        assert tensors[name].dtype == np.float32 and tensors[name].shape == ref.shape, name
        np.testing.assert_array_equal(tensors[name], ref, err_msg=name)
    # quantisation is lossy but close: a sanity check that the reference itself is meaningful
    for name, tol in [("q8", 0.02), ("q4_0", 0.5), ("q4_1", 0.5), ("bf16", 0.02)]:
        assert 0 < np.abs(tensors[name] - originals[name]).max() < tol, name


def all_value_types(w: gguf.GGUFWriter) -> None:
    w.add_custom_alignment(64)
    w.add_uint8("u8", 200)
    w.add_int8("i8", -100)
    w.add_uint16("u16", 60000)
    w.add_int16("i16", -30000)
    w.add_uint32("u32", 4_000_000_000)
    w.add_int32("i32", -2_000_000_000)
    w.add_float32("f32", 1.5)
    w.add_uint64("u64", 2**63 + 5)
    w.add_int64("i64", -(2**62))
    w.add_float64("f64", 0.1)
    w.add_bool("flag", True)
    w.add_string("s", "héllo wörld 🎉")
    w.add_array("ints", [1, 2, 3])
    w.add_array("floats", [0.5, -2.0])
    w.add_array("strs", ["a", "", "日本"])
    w.add_array("nested", [[1, 2], [3]])


def test_metadata_of_all_value_types(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {"t": np.arange(96, dtype=np.float32).reshape(3, 32)}, setup=all_value_types)
    version, meta, infos, _ = run.read_gguf_header(str(path))
    assert version == 3
    assert meta["general.architecture"] == "llama" and meta["general.alignment"] == 64
    assert (meta["u8"], meta["i8"], meta["u16"], meta["i16"]) == (200, -100, 60000, -30000)
    assert (meta["u32"], meta["i32"], meta["u64"], meta["i64"]) == (4_000_000_000, -2_000_000_000, 2**63 + 5,
                                                                   -(2**62))
    assert meta["f32"] == 1.5 and meta["f64"] == 0.1 and meta["flag"] is True
    assert meta["s"] == "héllo wörld 🎉"
    assert meta["ints"] == [1, 2, 3] and meta["floats"] == [0.5, -2.0] and meta["strs"] == ["a", "", "日本"]
    assert meta["nested"] == [[1, 2], [3]]
    assert infos["t"].shape == (3, 32) and infos["t"].offset % 64 == 0
    _, tensors = read_all(path)
    np.testing.assert_array_equal(tensors["t"], np.arange(96, dtype=np.float32).reshape(3, 32))


def small_file(path: Path) -> bytes:
    tensors = {"weight.a": np.ones((2, 32), np.float32), "weight.b": np.ones((4, 32), np.float32)}
    return write_gguf(path, tensors, setup=lambda w: w.add_string("general.name", "tiny")).read_bytes()


def patch_tensor_info(data: bytes, name: str, *, ggml_type: "int | None" = None,
                      offset: "int | None" = None) -> bytes:
    """Rewrite a tensor's type or data offset in place (name, n_dims, dims, type, offset)."""
    at = data.index(struct.pack("<Q", len(name)) + name.encode()) + 8 + len(name)
    (n_dims,) = struct.unpack_from("<I", data, at)
    at += 4 + 8 * n_dims
    out = bytearray(data)
    if ggml_type is not None:
        struct.pack_into("<I", out, at, ggml_type)
    if offset is not None:
        struct.pack_into("<Q", out, at + 4, offset)
    return bytes(out)


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: b"GGML" + d[4:], "bad magic"),
    (lambda d: d[:4] + struct.pack("<I", 1) + d[8:], "unsupported GGUF version 1"),
    (lambda d: d[:4] + struct.pack("<I", 99) + d[8:], "unsupported GGUF version 99"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d[:2], "truncated"),
    (lambda d: b"", "truncated"),
    (lambda d: d[:-16], "past the end"),
    (lambda d: patch_tensor_info(d, "weight.b", offset=1 << 40), "past the end"),
    (lambda d: patch_tensor_info(d, "weight.a", ggml_type=99), "unknown ggml type id 99"),
    (lambda d: patch_tensor_info(d, "weight.a", ggml_type=int(Q.Q8_1)), "cannot dequantise"),
    (lambda d: patch_tensor_info(d, "weight.a", ggml_type=int(Q.Q4_K)), "not a multiple"),
])
def test_corrupt_files_raise_clear_errors(tmp_path: Path, corrupt, message: str) -> None:
    good = small_file(tmp_path / "good.gguf")
    read_all(tmp_path / "good.gguf")  # the intact file is fine
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(corrupt(good))
    with pytest.raises(ValueError, match=message) as err:
        read_all(bad)
    assert "\n" not in str(err.value)


def test_script_reports_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(small_file(tmp_path / "good.gguf")[:100])
    for path in (bad, tmp_path / "missing.gguf", tmp_path / "good.gguf"):  # good.gguf has no llama params
        proc = subprocess.run([sys.executable, str(RUN_PY), str(path), "hi"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert proc.stdout == ""


# ---------------------------------------------------------------------------------------------- tokenizer

@pytest.fixture(scope="module")
def tok_pair(hf_tok: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Tokenizer, run.Tokenizer]:
    path = tmp_path_factory.mktemp("tok") / "tok.gguf"
    meta, _ = read_all(write_gguf(path, {}, setup=lambda w: add_tokenizer(w, hf_tok)))
    return hf_tok, run.Tokenizer(meta)


PARITY_TEXTS = [
    PROSE, VERSE, CODE, UNICODE, "", " ", "a", "  leading and trailing   ", "trailing newlines\n\n\n",
    "mixed \t \n \r\n whitespace\t\t", "don't won't it's we're they've I'm you'll he'd I'LL DON'T 'S",
    "'''quotes''' and \"double\" 'single'", "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "numbers 1234567890 3.14159 -42 1e10 ²½ ³⁄₄ ①②③ ٣٤٥ Ⅻ", "x²+y²=z²", "emoji 🎉🚀👍🏽 👨‍👩‍👧 flags 🇫🇷",
    "Ελληνικά: Γειά σου Κόσμε. Русский текст. עברית. العربية. हिन्दी", "日本語のテキストと中文和한국어",
    "combining: e\u0301 o\u0308 a\u030a\u0323 Z\u0351\u0352",
    "separators \x1c\x1c\x1f x \x85\x85 y \xa0\xa0 z", "\u2028line\u2029para\u3000\u3000ideo  ",
    "zero\u200bwidth\u200d joiner \ufeffbom", "tabs\tin\tthe\tmiddle",
    "    indented code block\n        deeper\n", "punctuation!!! ??? ... --- ;;; @#$%^&*()",
    "a" * 300, "the " * 50, "CamelCaseWordsAndSNAKE_CASE_words and kebab-case-words",
]


@pytest.mark.parametrize("text", PARITY_TEXTS)
def test_encode_matches_hf_tokenizers(tok_pair, text: str) -> None:
    hf, mine = tok_pair
    ids = mine.encode(text)
    assert ids == hf.encode(text).ids
    assert mine.decode(ids) == text


def test_specials_only_through_special_path(tok_pair) -> None:
    hf, mine = tok_pair
    start = hf.token_to_id("<|im_start|>")
    assert mine.special_id("<|im_start|>") == start
    assert start not in mine.encode("<|im_start|>user<|im_end|>")
    assert mine.decode([start, *mine.encode("hi")]) == "hi"  # control tokens print as nothing
    assert mine.decode([start], skip_control=False) == "<|im_start|>"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        mine.special_id("<|nope|>")


def test_streaming_decode_emits_only_complete_characters(tok_pair) -> None:
    _, mine = tok_pair
    text = "naïve 日本語 🎉🚀 done"
    ids = mine.encode(text)
    pieces = list(mine.stream(iter(ids)))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # byte-by-byte tokens: the emoji's four bytes arrive in four tokens but print once, whole
    byte_ids = [mine.ids[run._B2U[b]] for b in "🎉".encode()]
    assert list(mine.stream(iter(byte_ids))) == ["", "", "", "🎉", ""]
    assert mine.decode(byte_ids[:2]) == "\ufffd"  # a cut-off sequence in non-streaming decode


def test_unsupported_tokenizers_are_rejected(tok_pair) -> None:
    _, mine = tok_pair
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "deepseek-llm", "tokenizer.ggml.tokens": ["a"]}
    with pytest.raises(ValueError, match="pre-tokenizer 'deepseek-llm'"):
        run.Tokenizer(meta)
    with pytest.raises(ValueError, match="tokenizer model 't5'"):
        run.Tokenizer({**meta, "tokenizer.ggml.model": "t5"})


# ---------------------------------------------------------------------------------------------- model

DIM, LAYERS, HEADS, KV_HEADS, FF, CTX = 64, 2, 4, 2, 128, 48


def write_model(path: Path, hf_tok: Tokenizer, *, seed: int = 0, tied: bool = False, q8: bool = False,
                rope_theta: float = 10000.0, chat_template: "str | None" = None) -> dict[str, np.ndarray]:
    """Write a tiny llama GGUF; return the float32 weights it really holds (after any quantisation)."""
    weights = llama_tensors(DIM, LAYERS, HEADS, KV_HEADS, FF, hf_tok.get_vocab_size(), tied=tied, seed=seed)
    tensors = dict(weights)
    for name, arr in weights.items():
        if q8 and arr.ndim == 2:
            tensors[name] = (gguf.quants.quantize(arr, Q.Q8_0), Q.Q8_0)
            weights[name] = gguf.quants.dequantize(tensors[name][0], Q.Q8_0)
    hparams = {"context_length": CTX, "embedding_length": DIM, "block_count": LAYERS, "feed_forward_length": FF,
               "attention.head_count": HEADS, "attention.head_count_kv": KV_HEADS, "rope.freq_base": rope_theta,
               "attention.layer_norm_rms_epsilon": 1e-5}
    write_gguf(path, tensors, hparams, setup=lambda w: add_tokenizer(w, hf_tok, chat_template))
    return weights


def torch_reference(w: dict[str, np.ndarray], tokens: list[int], rope_theta: float) -> np.ndarray:
    """Full-sequence causal forward pass in float64, written as directly as possible."""
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in w.items()}
    hd, T = DIM // HEADS, len(tokens)

    def rmsnorm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * weight

    def rope(x: torch.Tensor) -> torch.Tensor:  # x: (T, heads, hd); rotate pairs (2i, 2i+1)
        theta = rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * theta  # (T, hd/2)
        cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(x.shape)

    x = t["token_embd.weight"][tokens]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(LAYERS):
        p = f"blk.{i}."
        h = rmsnorm(x, t[p + "attn_norm.weight"])
        q = rope((h @ t[p + "attn_q.weight"].T).view(T, HEADS, hd))
        k = rope((h @ t[p + "attn_k.weight"].T).view(T, KV_HEADS, hd))
        v = (h @ t[p + "attn_v.weight"].T).view(T, KV_HEADS, hd)
        k, v = k.repeat_interleave(HEADS // KV_HEADS, dim=1), v.repeat_interleave(HEADS // KV_HEADS, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / hd**0.5
        att = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        x = x + torch.einsum("hts,shd->thd", att, v).reshape(T, DIM) @ t[p + "attn_output.weight"].T
        h = rmsnorm(x, t[p + "ffn_norm.weight"])
        gated = torch.nn.functional.silu(h @ t[p + "ffn_gate.weight"].T) * (h @ t[p + "ffn_up.weight"].T)
        x = x + gated @ t[p + "ffn_down.weight"].T
    out = t.get("output.weight", t["token_embd.weight"])
    return (rmsnorm(x, t["output_norm.weight"]) @ out.T).numpy()


@pytest.mark.parametrize("tied, q8, rope_theta", [(False, False, 10000.0), (True, True, 500000.0)])
def test_kv_cached_forward_matches_torch(hf_tok, tmp_path: Path, tied: bool, q8: bool,
                                         rope_theta: float) -> None:
    weights = write_model(tmp_path / "m.gguf", hf_tok, tied=tied, q8=q8, rope_theta=rope_theta)
    model = run.load(str(tmp_path / "m.gguf"))
    c = model.config
    got = (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim, c.max_seq_len)
    assert got == (DIM, LAYERS, HEADS, KV_HEADS, FF, CTX)
    assert c.vocab_size == hf_tok.get_vocab_size() and c.rope_theta == rope_theta and c.head_dim == DIM // HEADS
    tokens = hf_tok.encode(PROSE).ids[:CTX]
    assert len(tokens) == CTX
    ref = torch_reference(weights, tokens, rope_theta)
    model.reset()
    for pos, tok in enumerate(tokens):
        logits = model.forward(tok, pos)
        assert logits.dtype == np.float32 and logits.shape == (c.vocab_size,)
        np.testing.assert_allclose(logits, ref[pos], atol=1e-4, rtol=0, err_msg=f"position {pos}")
    model.reset()  # chunked prefill then single steps give the same logits
    got = np.concatenate([model.forward_many(tokens[:20], 0), model.forward_many(tokens[20:21], 20),
                          model.forward_many(tokens[21:], 21)])
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="context length"):
        model.forward(tokens[0], CTX)


@pytest.fixture(scope="module")
def tiny_model(hf_tok, tmp_path_factory) -> tuple[run.Model, Path]:
    path = tmp_path_factory.mktemp("model") / "tiny.gguf"
    write_model(path, hf_tok, seed=1, chat_template=CHATML)
    return run.load(str(path)), path


def test_greedy_and_seeded_generation(tiny_model) -> None:
    model, _ = tiny_model
    prompt = model.tokenizer.encode("The old lighthouse")
    greedy = list(run.generate(model, prompt, 12, temperature=0, stop_ids=set()))
    assert len(greedy) == 12
    assert greedy == list(run.generate(model, prompt, 12, temperature=0, stop_ids=set()))
    model.reset()  # greedy == argmax of the cached forward, step by step
    logits, ids = model.forward_many(prompt, 0)[-1], []
    for pos in range(len(prompt), len(prompt) + 12):
        ids.append(int(np.argmax(logits)))
        logits = model.forward(ids[-1], pos)
    assert ids == greedy
    sampled = [list(run.generate(model, prompt, 20, 1.0, 0, 1.0, seed=s, stop_ids=set())) for s in (7, 7, 8)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]
    assert list(run.generate(model, prompt, 5, temperature=0, stop_ids={greedy[0]})) == []
    # the context ends the generation: positions len(prompt) .. CTX-1 are free
    assert len(list(run.generate(model, prompt, 1000, 1.0, seed=3, stop_ids=set()))) == CTX - len(prompt)
    with pytest.raises(ValueError, match="context length"):
        list(run.generate(model, list(range(CTX)), 5))


def test_sampling_filters() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([0.0, 3.0, 2.9, 1.0, -1.0, 2.8], np.float32)
    assert run.sample(logits, 0.0, 40, 0.95, rng) == 1
    assert run.sample(logits, 1.0, 1, 1.0, rng) == 1
    assert run.sample(logits, 1.0, 0, 1e-6, rng) == 1
    assert {run.sample(logits, 5.0, 3, 1.0, rng) for _ in range(300)} == {1, 2, 5}
    # top_p keeps the smallest prefix reaching the mass: p = .34, .31, .28 for tokens 1, 2, 5 at T=1
    assert {run.sample(logits, 1.0, 0, 0.6, rng) for _ in range(300)} == {1, 2}
    assert {run.sample(logits, 1.0, 0, 0.7, rng) for _ in range(300)} == {1, 2, 5}
    a = [run.sample(logits, 1.0, 0, 1.0, np.random.default_rng(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_streams_greedy_text(tiny_model) -> None:
    model, path = tiny_model
    proc = subprocess.run([sys.executable, str(RUN_PY), str(path), "The old lighthouse", "-n", "10",
                           "--temperature", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ids = list(run.generate(model, model.tokenizer.encode("The old lighthouse"), 10, temperature=0))
    assert proc.stdout == "The old lighthouse" + model.tokenizer.decode(ids) + "\n"
    assert "tokens/s" in proc.stderr


def test_cli_chat_formats_chatml(tiny_model, monkeypatch, capsys) -> None:
    model, path = tiny_model
    tok = model.tokenizer
    seen = []

    def fake_generate(m, ids, *args):
        seen.append(list(ids))
        yield from tok.encode(" fine")

    monkeypatch.setattr(run, "generate", fake_generate)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello <|im_start|>\n\nbye\n"))
    assert run.main([str(path), "--chat", "--system", "Be brief."]) == 0
    start, end = tok.special_id("<|im_start|>"), tok.special_id("<|im_end|>")
    turn = lambda role, text: [start, *tok.encode(f"{role}\n{text}"), end, *tok.encode("\n")]
    prompt = [start, *tok.encode("assistant\n")]
    first = turn("system", "Be brief.") + turn("user", "hello <|im_start|>") + prompt
    second = first + tok.encode(" fine") + [end, *tok.encode("\n")] + turn("user", "bye") + prompt
    assert seen == [first, second]
    assert capsys.readouterr().out == " fine\n fine\n"


def test_cli_chat_needs_chatml_template(hf_tok, tiny_model, tmp_path: Path) -> None:
    _, chatml_path = tiny_model
    proc = subprocess.run([sys.executable, str(RUN_PY), str(chatml_path), "--chat", "-n", "4"],
                          input="hi there\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for template, message in [(None, "no tokenizer.chat_template"), ("{{ bos }}[INST]", "only ChatML")]:
        write_model(tmp_path / "m.gguf", hf_tok, chat_template=template)
        proc = subprocess.run([sys.executable, str(RUN_PY), str(tmp_path / "m.gguf"), "--chat"],
                              input="hi\n", capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr


def test_decoding_reads_the_cache_instead_of_recomputing_the_prefix(tiny_model, monkeypatch) -> None:
    """What keeps the runner interactive (its speed is measured by bench/runfile_decode.py): the prompt
    is prefilled once, then every further token is a single position on top of the KV cache."""
    model, _ = tiny_model
    calls: list[tuple[int, int]] = []
    forward_many = model.forward_many
    monkeypatch.setattr(model, "forward_many", lambda tokens, pos: calls.append((len(tokens), pos))
                        or forward_many(tokens, pos))
    n = len(list(run.generate(model, [1, 2, 3], CTX - 3, temperature=0, stop_ids=set())))
    assert n == CTX - 3
    assert calls == [(3, 0)] + [(1, p) for p in range(3, CTX - 1)]

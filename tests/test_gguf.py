import struct
import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.io.gguf_file import export_gguf, read_gguf, tokenizer_from_gguf
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import Transformer
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return Transformer(tiny_config(tokenizer.vocab_size, dim=64, max_seq_len=64)).eval()


@pytest.fixture(scope="module")
def f32_file(model, tokenizer, tmp_path_factory):
    return export_gguf(model, tokenizer, tmp_path_factory.mktemp("g") / "m.gguf", "f32")


def test_f32_roundtrip_is_identical(model, f32_file):
    g = read_gguf(f32_file)
    assert g.config == model.config
    sd = model.state_dict()
    assert set(g.state_dict) == set(sd)
    for k, v in sd.items():
        assert torch.equal(g.state_dict[k], v), k
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(str(f32_file)).tensors}  # tied


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_f16_and_q8_0_roundtrip_equal_the_reference_quantisation(model, tokenizer, tmp_path, dtype):
    path = export_gguf(model, tokenizer, tmp_path / f"m-{dtype}.gguf", dtype)
    g = read_gguf(path)
    qt = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[dtype]
    for k, v in model.state_dict().items():
        a = v.numpy()
        if a.ndim == 1:
            expect = a
        elif dtype == "f16":
            expect = a.astype(np.float16).astype(np.float32)
        else:
            expect = gguf.quants.dequantize(gguf.quants.quantize(a, qt), qt)
        assert np.array_equal(g.state_dict[k].numpy(), expect), k


def test_sizes_shrink_with_quantisation(model, tokenizer, tmp_path):
    sizes = {d: export_gguf(model, tokenizer, tmp_path / f"{d}.gguf", d).stat().st_size for d in ("f32", "f16", "q8_0")}
    assert sizes["q8_0"] < sizes["f16"] < sizes["f32"]


def test_metadata_and_tokenizer_travel_with_the_weights(f32_file, tokenizer):
    g = read_gguf(f32_file)
    md = g.metadata
    assert md["general.architecture"] == "llama" and md["tokenizer.ggml.pre"] == "gpt-2"
    assert md["tokenizer.ggml.tokens"] == tokenizer.tokens()
    assert md["tokenizer.ggml.token_type"] == tokenizer.token_types()
    assert md["tokenizer.ggml.eos_token_id"] == tokenizer.end_of_text_id
    assert "<|im_start|>" in md["tokenizer.chat_template"]
    t2 = tokenizer_from_gguf(md)
    for text in ["ROMEO:\nWhat light?", "héllo 日本語 🎉 <|im_end|>", "  a\tb\n\n"]:
        assert t2.encode(text) == tokenizer.encode(text)
    assert t2.special_ids == tokenizer.special_ids
    assert md["tokenizer.ggml.eot_token_id"] == tokenizer.end_of_turn_id  # GGUF's eot is our end of turn
    assert (t2.end_of_text_id, t2.end_of_turn_id) == (tokenizer.end_of_text_id, tokenizer.end_of_turn_id)


def test_a_chosen_end_of_turn_survives_export(model, tokenizer, tmp_path):
    chosen = tokenizer.special("<|reserved_1|>")
    tok = Tokenizer(tokenizer.hf, end_of_turn_id=chosen)
    md = read_gguf(export_gguf(model, tok, tmp_path / "m.gguf")).metadata
    t2 = tokenizer_from_gguf(md)
    assert (t2.end_of_text_id, t2.end_of_turn_id) == (tokenizer.end_of_text_id, chosen)


def _corrupt(src, dst, fn):
    data = bytearray(src.read_bytes())
    dst.write_bytes(bytes(fn(data)))
    return dst


def _tensor_type_offset(path):
    """Byte offset of the first tensor's type field in the tensor-info section."""
    r = gguf.GGUFReader(str(path))
    t = r.tensors[0]
    return int(t.field.offset) + len(t.field.parts[0].tobytes()) + len(t.field.parts[1].tobytes()) + \
        len(t.field.parts[2].tobytes()) + len(t.field.parts[3].tobytes())


CASES = {
    "bad magic": (lambda d: b"GGUX" + d[4:], "not a GGUF file"),
    "bad version": (lambda d: d[:4] + struct.pack("<I", 99) + d[8:], "unsupported GGUF version 99"),
    "truncated header": (lambda d: d[:16], "truncated"),
    "truncated data": (lambda d: d[: len(d) - 200], "past the end|truncated"),
    "empty": (lambda d: b"", "truncated"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_files_give_one_clear_error(f32_file, tmp_path, case):
    fn, msg = CASES[case]
    bad = _corrupt(f32_file, tmp_path / "bad.gguf", fn)
    with pytest.raises(LmstackError, match=msg):
        read_gguf(bad)


def test_unknown_tensor_type(f32_file, tmp_path):
    off = _tensor_type_offset(f32_file)
    bad = _corrupt(f32_file, tmp_path / "bad.gguf", lambda d: d[:off] + struct.pack("<I", 250) + d[off + 4 :])
    with pytest.raises(LmstackError, match="unknown or unsupported tensor type"):
        read_gguf(bad)


def test_tensor_offset_past_end(f32_file, tmp_path):
    off = _tensor_type_offset(f32_file) + 4  # the uint64 data offset follows the type
    bad = _corrupt(f32_file, tmp_path / "bad.gguf", lambda d: d[:off] + struct.pack("<Q", 1 << 40) + d[off + 8 :])
    with pytest.raises(LmstackError, match="past the end"):
        read_gguf(bad)


def test_cli_reports_one_line_and_exits_nonzero(f32_file, tmp_path):
    bad = _corrupt(f32_file, tmp_path / "bad.gguf", CASES["bad magic"][0])
    r = subprocess.run([sys.executable, "-m", "lmstack", "eval", str(bad), "--data", "x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error:")


def test_failed_export_leaves_existing_file_alone(model, tokenizer, f32_file, tmp_path):
    target = tmp_path / "keep.gguf"
    target.write_bytes(f32_file.read_bytes())
    bad_tok = tokenizer_from_gguf(read_gguf(f32_file).metadata)
    model_other = Transformer(tiny_config(tokenizer.vocab_size - 1))
    with pytest.raises(LmstackError, match="tokenizer has"):
        export_gguf(model_other, bad_tok, target)
    assert target.read_bytes() == f32_file.read_bytes()

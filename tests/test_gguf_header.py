"""gguf_file's own header reader against the `gguf` package's: the same metadata values of every
type, the same tensor table, and the lean string arrays it exists for."""

from __future__ import annotations

import tracemalloc

import gguf
import numpy as np
import pytest

from lmstack.errors import LmstackError
from lmstack.io.gguf_file import _parse_header, _tensor_data


def _write(path, n_tokens: int = 5000) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -5)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 1e-5)
    w.add_uint64("t.u64", 1 << 60)
    w.add_int64("t.i64", -(1 << 60))
    w.add_float64("t.f64", 0.1)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ✓")
    w.add_array("t.ints", [3, 1, 4, 1, 5])
    w.add_array("t.floats", [0.5, -2.25])
    w.add_array("t.bools", [True, False, True])
    w.add_array("t.empty", [])
    w.add_token_list([f"tok{i}\u0120" for i in range(n_tokens)])
    w.add_tensor("a.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("b.weight", gguf.quants.quantize(np.linspace(-1, 1, 4 * 64, dtype=np.float32).reshape(4, 64),
                                                  gguf.GGMLQuantizationType.Q8_0),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_metadata_and_tensors_equal_the_gguf_package_reading(tmp_path):
    path = tmp_path / "m.gguf"
    _write(path)
    meta, tensors = _parse_header(path)
    ref = gguf.GGUFReader(str(path))
    want = {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert meta.keys() == want.keys()
    for key, value in want.items():
        assert meta[key] == value, key
        assert type(meta[key]) is type(value), key
    assert meta["t.f32"] == np.float32(1e-5) and meta["t.bool"] is True and meta["t.str"] == "héllo ✓"
    data = _tensor_data(path, tensors)
    for t, r in zip(tensors, ref.tensors, strict=True):
        assert (t.name, t.ggml_type, t.shape, t.offset, t.n_bytes) == (
            r.name, r.tensor_type, tuple(reversed(r.shape.tolist())), r.data_offset, r.n_bytes)
        assert np.array_equal(data[t.name], r.data) and data[t.name].dtype == r.data.dtype


def test_a_large_vocabulary_costs_its_strings_not_an_array_per_token(tmp_path):
    path = tmp_path / "big.gguf"
    _write(path, n_tokens=50_000)
    tracemalloc.start()
    meta, _ = _parse_header(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(meta["tokenizer.ggml.tokens"]) == 50_000
    # the strings take 5 MB at the peak; the gguf package's reader peaked at 66 MB on this file
    assert peak < 10e6, peak


def test_a_duplicated_tensor_name_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    _write(path)
    raw = path.read_bytes()
    bad = tmp_path / "dup.gguf"
    bad.write_bytes(raw.replace(b"b.weight", b"a.weight", 1))
    with pytest.raises(LmstackError, match="appears twice"):
        _parse_header(bad)

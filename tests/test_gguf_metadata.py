"""Absurd or hostile GGUF metadata: both loaders (the package's read_gguf and the numpy run file) refuse
the same crafted files with one line, fast and in bounded memory, before allocating anything; random
corruption of a valid file never gets past them as anything but a clean error."""

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmstack import run
from lmstack.errors import LmstackError
from lmstack.io.gguf_file import read_gguf, tokenizer_from_gguf
from tests.gguf_helpers import llama_tensors, write_gguf

RUN_PY = Path(run.__file__)
SHAPE = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab=48)
GOOD = {"context_length": 64, "embedding_length": 32, "block_count": 2, "feed_forward_length": 64,
        "attention.head_count": 4, "attention.head_count_kv": 2, "rope.freq_base": 10000.0,
        "attention.layer_norm_rms_epsilon": 1e-5}


def tiny(path: Path, drop: tuple[str, ...] = (), **meta) -> Path:
    """A valid tiny llama file, with metadata replaced (a value of None removes the key) and tensors dropped."""
    values = {k: v for k, v in {**GOOD, **meta}.items() if v is not None}
    tensors = {k: v for k, v in llama_tensors(**SHAPE).items() if k not in drop}
    return write_gguf(path, tensors, values)


def patch_u64_after(data: bytes, marker: bytes, skip: int, value: int) -> bytes:
    """Overwrite the uint64 that sits `skip` bytes after the end of `marker`."""
    at = data.index(marker) + len(marker) + skip
    return data[:at] + struct.pack("<Q", value) + data[at + 8:]


def rewrite(path: Path, change) -> Path:
    path.write_bytes(change(path.read_bytes()))
    return path


def with_array(path: Path, values, count: int) -> Path:
    """A valid file with one more metadata array, whose element count then claims `count`."""
    write_gguf(path, llama_tensors(**SHAPE), {**GOOD, "zz_array": values})
    data = path.read_bytes()  # key, then value type (u32 9), element type (u32), count (u64)
    path.write_bytes(patch_u64_after(data, b"llama.zz_array", 8, count))
    return path


def nested_arrays(path: Path, depth: int) -> Path:
    """A header whose one metadata value is an array of an array of ... `depth` deep."""
    key = b"x"
    value = struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 4, 0)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key + value)
    return path


CRAFTED = {  # name -> (file maker, what the one-line error mentions)
    "context 2^31": (lambda p: tiny(p, context_length=2**31), "context_length"),
    "100000 layers": (lambda p: tiny(p, block_count=100_000), "block_count"),
    "zero heads": (lambda p: tiny(p, **{"attention.head_count": 0}), "head_count"),
    "negative heads": (lambda p: tiny(p, **{"attention.head_count": -4}), "head_count"),
    "kv heads do not divide": (lambda p: tiny(p, **{"attention.head_count_kv": 3}), "head_count"),
    "head_dim not integral": (lambda p: tiny(p, **{"attention.head_count": 5}), "head_count|embedding_length"),
    "ffn length disagrees": (lambda p: tiny(p, feed_forward_length=100), "ffn_gate"),
    "width disagrees": (lambda p: tiny(p, embedding_length=64), "shape"),
    "layer missing": (lambda p: tiny(p, drop=("blk.1.ffn_down.weight",)), "blk.1.ffn_down"),
    "key missing": (lambda p: tiny(p, block_count=None), "block_count"),
    "count is a string": (lambda p: tiny(p, context_length="lots"), "context_length"),
    "count is an array": (lambda p: tiny(p, block_count=[2, 2]), "block_count"),
    "rope theta zero": (lambda p: tiny(p, **{"rope.freq_base": 0.0}), "freq_base"),
    "rope theta nan": (lambda p: tiny(p, **{"rope.freq_base": float("nan")}), "freq_base"),
    "negative epsilon": (lambda p: tiny(p, **{"attention.layer_norm_rms_epsilon": -1e-5}), "epsilon"),
    "infinite rope scaling": (lambda p: tiny(p, **{"rope.scaling.type": "linear",
                                                   "rope.scaling.factor": float("inf")}), "scaling"),
    "array of 2^61 numbers": (lambda p: with_array(p, [1, 2, 3], 2**61), "zz_array|truncated"),
    "array of 2^61 strings": (lambda p: with_array(p, ["a", "b"], 2**61), "zz_array|truncated"),
    # the header: magic, version (u32), tensor count (u64), metadata count (u64)
    "2^61 tensors": (lambda p: rewrite(tiny(p), lambda d: patch_u64_after(d, b"GGUF", 4, 2**61)), "tensor|truncated"),
    "2^61 metadata entries": (lambda p: rewrite(tiny(p), lambda d: patch_u64_after(d, b"GGUF", 12, 2**61)),
                              "metadata|truncated"),
    "arrays nested 5000 deep": (lambda p: nested_arrays(p, 5000), "deep"),
    # a tensor's info: name, dimension count (u32), dimensions (u64 each), type, offset
    "2^40 x 2^40 tensor": (lambda p: rewrite(tiny(p), lambda d: patch_u64_after(patch_u64_after(
        d, b"token_embd.weight", 4, 2**40), b"token_embd.weight", 12, 2**40)), "past the end"),
}

# Each loader runs in a child process that reports its peak memory: a loader that allocates for the
# metadata's numbers (2^31 positions, 100000 layers, 2^61 elements) is caught by time or memory.
CHILD = """
import json, resource, sys, time
{setup}
out = {{}}
for path in sys.argv[{first}:]:
    t = time.perf_counter()
    try:
        {load}
        result = "ok"
    except {errors} as e:
        result = "error: " + str(e)
    except BaseException as e:
        result = f"crash: {{type(e).__name__}}: {{e}}"[:300]
    out[path] = [result, time.perf_counter() - t]
# this process's own peak: VmHWM where there is /proc (Linux's ru_maxrss also counts the parent's
# memory that the fork copied before exec)
try:
    out["peak_mb"] = int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1]) / 1024
except OSError:
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""
PACKAGE_CHILD = CHILD.format(
    setup="from lmstack.errors import LmstackError\nfrom lmstack.io.gguf_file import read_gguf, tokenizer_from_gguf",
    first=1, errors="LmstackError",
    load='g = read_gguf(path)\n        if "tokenizer.ggml.model" in g.metadata:'
         '\n            tokenizer_from_gguf(g.metadata)')
RUN_FILE_CHILD = CHILD.format(setup="sys.path.insert(0, sys.argv[1])\nimport run", first=2,
                              errors="(ValueError, OSError)", load="run.load(path)")
PEAK_MB = 1500  # either loader's whole process on these tiny files, torch included
SECONDS_PER_FILE = 10  # generous on a shared machine: a failing file fails in milliseconds


def load_all(paths: list[Path]) -> dict[str, dict]:
    """{loader: {path: [result, seconds]}, with 'peak_mb'} for the package and the run file."""
    args = [str(p) for p in paths]
    runs = {"package": [sys.executable, "-c", PACKAGE_CHILD, *args],
            "run file": [sys.executable, "-c", RUN_FILE_CHILD, str(RUN_PY.parent), *args]}
    out = {}
    for name, cmd in runs.items():
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + 2 * len(paths))
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("crafted")
    return {name: make(d / f"{i}.gguf") for i, (name, (make, _)) in enumerate(CRAFTED.items())}


def test_the_untouched_file_loads_in_both(tmp_path):
    path = tiny(tmp_path / "good.gguf")
    assert read_gguf(path).config.n_layers == 2
    assert run.load(str(path)).config.n_layers == 2


def test_crafted_files_fail_fast_with_one_line_in_both_loaders(crafted):
    results = load_all(list(crafted.values()))
    for loader, got in results.items():
        assert got["peak_mb"] < PEAK_MB, (loader, got["peak_mb"])
        for name, path in crafted.items():
            result, seconds = got[str(path)]
            assert result.startswith("error: ") and "\n" not in result, (loader, name, result)
            assert re.search(CRAFTED[name][1], result), (loader, name, result)
            assert seconds < SECONDS_PER_FILE, (loader, name, seconds)


@pytest.mark.parametrize("name", ["context 2^31", "zero heads", "array of 2^61 numbers"])
def test_both_command_lines_print_one_error_line(crafted, name):
    path = str(crafted[name])
    for cmd in ([sys.executable, str(RUN_PY), path, "hi", "-n", "2"],
                [sys.executable, "-m", "lmstack", "generate", "--model", path, "hi", "--max-new-tokens", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, (cmd, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (cmd, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags", [["--temperature", "-1"], ["--temperature", "nan"], ["--top-p", "0"],
                                   ["--top-p", "1.5"], ["--top-k", "-1"], ["-n", "-1"]])
def test_run_file_refuses_out_of_range_sampling_flags(tmp_path, flags):
    path = tiny(tmp_path / "good.gguf")
    proc = subprocess.run([sys.executable, str(RUN_PY), str(path), "hi", *flags], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "out of range" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(f"{flags[0]} is out of range (see --help)")


# ------------------------------------------------------------------------------------- mutation fuzzing
def mutations(good: bytes, header_end: int, n: int, seed: int = 0):
    """n corrupted copies: 3 in 4 overwrite 1-4 header bytes with random or boundary values, 1 in 4
    cut the file short. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        data = bytearray(good)
        if i % 4 == 3:
            yield bytes(data[:int(rng.integers(0, len(data)))])
            continue
        for _ in range(int(rng.integers(1, 5))):
            at = int(rng.integers(0, header_end))
            data[at] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF, int(rng.integers(0, 256))]))
        yield bytes(data)


def test_random_corruption_gives_clean_errors_in_both(tokenizer, tmp_path):
    from lmstack.io.gguf_file import export_gguf
    from lmstack.model import Transformer
    from tests.conftest import tiny_config

    good = export_gguf(Transformer(tiny_config(tokenizer.vocab_size)), tokenizer, tmp_path / "good.gguf")
    data = good.read_bytes()
    header_end = data.index(b"output_norm.weight") + 64  # metadata and tensor infos; the data follows
    paths = []
    for i, bad in enumerate(mutations(data, header_end, 200)):
        paths.append(tmp_path / f"m{i}.gguf")
        paths[-1].write_bytes(bad)
    results = load_all(paths)
    for loader, got in results.items():
        assert got["peak_mb"] < PEAK_MB, (loader, got["peak_mb"])
        crashes = {p.name: got[str(p)][0] for p in paths if got[str(p)][0].startswith("crash")}
        assert not crashes, (loader, len(crashes), dict(list(crashes.items())[:5]))
        assert max(got[str(p)][1] for p in paths) < SECONDS_PER_FILE, loader
        errors = sum(got[str(p)][0].startswith("error") for p in paths)
        assert errors >= 50, (loader, errors)  # the mutations do reach the checks
    assert tokenizer_from_gguf(read_gguf(good).metadata).vocab_size == tokenizer.vocab_size
    with pytest.raises(LmstackError):
        read_gguf(paths[3])  # a truncated copy


def test_metadata_of_the_wrong_type_gives_clean_errors_in_both(tokenizer, tmp_path):
    """Every tokenizer and hyperparameter key of a valid file replaced by a value of each other type."""
    import gguf

    from lmstack.io.gguf_file import export_gguf
    from lmstack.model import Transformer
    from tests.conftest import tiny_config
    from tests.gguf_helpers import add_metadata

    good = export_gguf(Transformer(tiny_config(tokenizer.vocab_size)), tokenizer, tmp_path / "good.gguf")
    reader = gguf.GGUFReader(str(good))
    meta = read_gguf(good).metadata
    tensors = {t.name: np.array(t.data).reshape(tuple(reversed(t.shape.tolist()))) for t in reader.tensors}
    keys = [k for k in meta if k.startswith(("tokenizer.", "llama."))]
    paths = []
    for key in keys:
        for wrong in (7, -1, 2.5, "x", [1, 2], ["a", "b"], True):
            rest = {k: v for k, v in meta.items() if k not in (key, "general.architecture", "general.alignment")}
            path = tmp_path / f"{key}-{len(paths)}.gguf"

            def setup(w, rest=rest, key=key, wrong=wrong):
                add_metadata(w, {k: v for k, v in rest.items() if not k.startswith("llama.")}, prefix="")
                add_metadata(w, {key: wrong}, prefix="")
            llama = {k[len("llama."):]: v for k, v in rest.items() if k.startswith("llama.")}
            paths.append(write_gguf(path, tensors, llama, setup=setup))
    results = load_all(paths)
    for loader, got in results.items():
        crashes = {p.name: got[str(p)][0] for p in paths if got[str(p)][0].startswith("crash")}
        assert not crashes, (loader, len(crashes), dict(list(crashes.items())[:5]))

"""The run file agrees with the torch model on an exported parameters file, and stays standalone."""

import ast
import subprocess
import sys
import sys as _sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lmstack import run as runfile
from lmstack.io.gguf_file import export_gguf
from lmstack.model import Transformer
from tests.conftest import tiny_config

RUN_PY = Path(runfile.__file__)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    m = Transformer(tiny_config(tokenizer.vocab_size, dim=64, n_heads=4, n_kv_heads=2, max_seq_len=64,
                                rope_theta=500.0))
    with torch.no_grad():  # larger weights than at init, so logits are O(1..10) and differences show
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return m.eval()


@pytest.mark.parametrize("dtype,tol", [("f32", 1e-4), ("f16", None), ("q8_0", None)])
def test_logits_match_the_torch_model(model, tokenizer, tmp_path, dtype, tol):
    path = export_gguf(model, tokenizer, tmp_path / f"m-{dtype}.gguf", dtype)
    rm = runfile.load(str(path))
    ids = tokenizer.encode("ROMEO:\nThe king doth love the queen, sweet lady. 日本 🎉")[:40]
    with torch.no_grad():
        ref = model(torch.tensor([ids]))[0].numpy()
    got = np.stack([rm.forward(t, i) for i, t in enumerate(ids)])
    diff = np.abs(got - ref).max()
    if tol is not None:
        assert diff < tol, diff
    else:  # quantised weights: the same model to within quantisation noise
        assert diff < 0.05 * np.abs(ref).max(), diff
        assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_tokenizer_and_greedy_generation_agree(model, tokenizer, tmp_path):
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", "f32")
    rm = runfile.load(str(path))
    for text in ["KING:\nGood night, sweet lady.", "héllo\t wörld  日本語 🎉 <|im_start|>", "x = 12345\n\n  y"]:
        assert rm.tokenizer.encode(text) == tokenizer.encode(text)
    prompt = tokenizer.encode("QUEEN:\n")
    ours = list(runfile.generate(rm, prompt, 24, temperature=0.0, stop_ids=[]))
    ref = model.generate(torch.tensor([prompt]), 24, temperature=0.0)[0, len(prompt):].tolist()
    assert ours == ref


def test_the_run_file_reads_the_same_config_under_the_same_names(model, tokenizer, tmp_path):
    """run.Config speaks ModelConfig's vocabulary: every field is one of ModelConfig's (or its head_dim
    property) with the same value read from the same file, save rope_dim (partial rotary dimensions,
    which only the run file supports)."""
    import dataclasses

    from lmstack.io.gguf_file import read_gguf
    from lmstack.model import ModelConfig

    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", "f32")
    ours, theirs = runfile.load(str(path)).config, read_gguf(path).config
    names = {f.name for f in dataclasses.fields(runfile.Config)}
    assert names - {f.name for f in dataclasses.fields(ModelConfig)} == {"head_dim", "rope_dim"}
    assert {f.name for f in dataclasses.fields(ModelConfig)} <= names
    for name in names - {"rope_dim"}:  # floats are float32 in the file; the package rounds them to 7 digits
        want = getattr(theirs, name)
        assert getattr(ours, name) == (pytest.approx(want, rel=1e-6) if isinstance(want, float) else want), name
    assert ours.rope_dim == theirs.head_dim


def test_script_streams_text_from_the_parameters_file(model, tokenizer, tmp_path):
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", "q8_0")
    r = subprocess.run([sys.executable, str(RUN_PY), str(path), "KING:", "-n", "20", "--seed", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("KING:") and len(r.stdout) > len("KING:")
    assert "tokens/s" in r.stderr


def test_run_file_is_standalone_and_short():
    src = RUN_PY.read_text()
    assert len(src.splitlines()) < 1000  # the README promises under 1,000
    mods = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mods.add((node.module or "").split(".")[0])
    assert mods - set(_sys.stdlib_module_names) == {"numpy"}

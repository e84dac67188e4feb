"""End to end on the real default corpus: `lmstack speedrun --quick`, then the CLI verbs on its output."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lmstack.io.tokenizer import Tokenizer

RUN_PY = Path(__file__).resolve().parents[1] / "lmstack" / "run.py"


def lm(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "lmstack", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speedrun") / "quick"
    r = lm("speedrun", "--quick", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


@pytest.mark.slow
def test_quick_speedrun_produces_the_two_files_and_a_summary(quick_run):
    out, stdout = quick_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tokens_seen"] == 60 * 16 * 128
    for name in ("model.gguf", "ckpt.pt", "metrics.jsonl", "loss.png", "eval.json", "tokenizer.json"):
        assert (out / name).exists(), name
    assert "speedrun summary" in stdout and "xz -9e" in stdout and "val bits/byte" in stdout
    ev = json.loads((out / "eval.json").read_text())
    # an untrained model guesses about uniformly: log2(vocab) bits per token; 60 steps must beat that clearly
    vocab = Tokenizer.load(out / "tokenizer.json").vocab_size
    uniform = math.log2(vocab) * ev["val_tokens"] / ev["val_bytes"]
    assert summary["val_bpb"] == ev["val_bpb"] < 0.9 * uniform  # measured: 3.80 against 4.79
    assert set(ev["compressors"]) == {"gzip -9", "bzip2 -9", "xz -9e"}
    assert 1.5 < ev["compressors"]["xz -9e"] < 4.0  # English text compresses to 2-3.5 bits/byte


@pytest.mark.slow
def test_run_file_generates_from_the_speedrun_model(quick_run):
    out, _ = quick_run
    r = subprocess.run([sys.executable, str(RUN_PY), str(out / "model.gguf"), "ROMEO:", "-n", "30"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ROMEO:") and len(r.stdout) > 10


@pytest.mark.slow
def test_export_eval_and_sample_verbs(quick_run, tmp_path):
    out, _ = quick_run
    r = lm("export", str(out), "--dtype", "q8_0", "--out", str(tmp_path / "m8.gguf"))
    assert r.returncode == 0, r.stderr
    r = lm("eval", str(tmp_path / "m8.gguf"), "--data", "shakespeare", "--json", str(tmp_path / "e.json"))
    assert r.returncode == 0, r.stderr
    q8 = json.loads((tmp_path / "e.json").read_text())["val_bpb"]
    f32 = json.loads((out / "eval.json").read_text())["val_bpb"]
    assert abs(q8 - f32) < 0.02  # same held-out split, 8-bit weights cost almost nothing
    r = lm("sample", str(out), "JULIET:", "--max-new-tokens", "10")
    assert r.returncode == 0 and r.stdout.startswith("JULIET:")


@pytest.mark.slow
def test_data_get_names_the_split():
    r = lm("data", "get", "shakespeare")
    assert r.returncode == 0, r.stderr
    assert "42 documents" in r.stdout and "40 train / 2 val" in r.stdout


def test_cli_errors_are_one_line(tmp_path):
    cases = [
        ("train", "--data", str(tmp_path / "missing*.txt"), "--out", str(tmp_path / "r")),
        ("export", str(tmp_path / "no-run")),
        ("eval", str(tmp_path / "none.gguf"), "--data", "x"),
        ("data", "get", "not-a-corpus"),
    ]
    (tmp_path / "empty.txt").write_text("")
    cases.append(("train", "--data", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "r2")))
    for args in cases:
        r = lm(*args)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, r.stderr)

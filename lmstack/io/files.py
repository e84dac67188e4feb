"""Files that are never seen half-written, and JSONL read with errors that name the line.

Every file lmstack writes (checkpoints, GGUF, shards, run.json, metrics, results) goes through
`atomic_open`: the bytes go to a temporary file beside the target, are flushed to disk, and the
temporary file is renamed over the target. A crash or Ctrl-C mid-write leaves the previous version
intact, and a reader never sees a torn file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lmstack.errors import LmstackError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that opens files itself (numpy, the GGUF writer);
    if the block succeeds the file is flushed to disk and renamed over `path`, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO]:
    """Open `path` for writing through a temporary file that replaces it only if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        text = {} if mode == "wb" else {"encoding": "utf-8", "newline": newline}
        with open(tmp, mode, **text) as f:
            yield f


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write a whole file atomically (see atomic_open)."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """JSON, atomically."""
    atomic_write(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A whole JSON file, or one line naming the file and what is wrong with it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise LmstackError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as e:
        raise LmstackError(f"{path}: {what} is not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise LmstackError(f"{path}: {what} is not valid JSON (line {e.lineno}: {e.msg})") from None


def read_jsonl(path: str | Path, torn_tail_ok: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line. A line that is not UTF-8 or not JSON is an error
    naming `file:line`, except, with torn_tail_ok, an unterminated last line: what a crash during an
    append leaves behind, which a log reader drops rather than refusing the whole file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LmstackError(f"{path}: no such file") from None
    lines = raw.split(b"\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last = n == len(lines)  # no newline after it
        try:
            yield n, json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            if torn_tail_ok and last:
                return
            raise LmstackError(f"{path}:{n}: not valid UTF-8") from None
        except json.JSONDecodeError as e:
            if torn_tail_ok and last:
                return
            raise LmstackError(f"{path}:{n}: not valid JSON ({e.msg})") from None

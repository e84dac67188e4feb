import json

import numpy as np
import pytest

import lmstack.io.shards as shards
from lmstack.errors import LmstackError
from lmstack.io.corpora import load_documents, split_documents
from lmstack.io.shards import Batches, TokenSplit, build_dataset, cached_dataset


def test_dataset_layout_dtype_and_document_separators(dataset, tokenizer, corpus_dir):
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["dtype"] == "uint16"
    train = TokenSplit.open(dataset, "train")
    assert len(train) == meta["train"]["tokens"]
    all_tokens = train.window(0, len(train))
    assert int((all_tokens == tokenizer.end_of_text_id).sum()) == meta["train"]["documents"]
    assert all_tokens[-1] == tokenizer.end_of_text_id
    # decoding the shard reproduces the training documents exactly
    text = tokenizer.decode(all_tokens.tolist(), skip_special=True)
    assert text == (dataset / "train.txt").read_text()


def test_batches_are_a_pure_function_of_step(dataset):
    b1, b2 = Batches(dataset, 16, 4, seed=3), Batches(dataset, 16, 4, seed=3)
    x1, y1 = b1.get(7)
    b2.get(1)
    x2, y2 = b2.get(7)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.array_equal(x1[:, 1:], y1[:, :-1])  # targets are inputs shifted by one
    assert not np.array_equal(b1.get(8)[0], x1)
    assert not np.array_equal(Batches(dataset, 16, 4, seed=3, rank=1).get(7)[0], x1)


def test_windows_span_shard_boundaries(corpus_dir, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_TOKENS", 500)
    train, val = split_documents(load_documents(str(corpus_dir / "*.txt")), 0.2)
    d = build_dataset(train, val, tokenizer, tmp_path / "small")
    meta = json.loads((d / "meta.json").read_text())
    assert len(meta["train"]["shards"]) > 2
    split = TokenSplit.open(d, "train")
    flat = np.concatenate([np.fromfile(d / s["file"], dtype=np.uint16) for s in meta["train"]["shards"]])
    first = meta["train"]["shards"][0]["tokens"]
    assert np.array_equal(split.window(first - 5, 10), flat[first - 5 : first + 5])


def test_val_sequential_scores_every_token_once(dataset):
    b = Batches(dataset, 16, 4)
    n_targets = sum(int((y >= 0).sum()) for _, y in b.val_sequential(3))
    assert n_targets == len(b.val) - 1


def test_missing_or_damaged_dataset(dataset, tmp_path):
    with pytest.raises(LmstackError, match="meta.json"):
        TokenSplit.open(tmp_path, "train")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    shard = broken / "train_000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(LmstackError, match="wrong size"):
        TokenSplit.open(broken, "train")


def test_window_longer_than_split_is_refused(dataset):
    with pytest.raises(LmstackError, match="fewer than one window"):
        Batches(dataset, 10**6, 1)


def test_cached_dataset_is_reused_and_a_held_out_only_one_has_no_train_split(corpus_dir, tokenizer):
    train, val = split_documents(load_documents(str(corpus_dir / "*.txt")), 0.2)
    d = cached_dataset(train, val, tokenizer)
    stamp = (d / "meta.json").stat().st_mtime_ns
    assert cached_dataset(train, val, tokenizer) == d and (d / "meta.json").stat().st_mtime_ns == stamp
    whole = cached_dataset([], train + val, tokenizer)  # what eval builds for a file given to it
    assert whole != d
    n_tokens = sum(len(tokenizer.encode(doc.text)) + 1 for doc in train + val)  # + end of text after each
    assert len(TokenSplit.open(whole, "val")) == n_tokens
    with pytest.raises(LmstackError, match="train split .* is empty"):
        TokenSplit.open(whole, "train")


def _planted(row: np.ndarray, plain: np.ndarray) -> tuple[int, int] | None:
    """(start, length) when row is plain with plain[start:start+length] shuffled in place and that
    shuffled span repeated as the row's tail; None when it is not."""
    n = len(row)
    for length in range(16, n // 2 + 1):
        keep = n - length
        for start in range(keep - length + 1):
            span = row[start : start + length]
            shuffled = np.array_equal(np.sort(span), np.sort(plain[start : start + length]))
            if (np.array_equal(row[keep:], span) and shuffled
                    and np.array_equal(row[:start], plain[:start])
                    and np.array_equal(row[start + length : keep], plain[start + length : keep])):
                return start, length
    return None


def test_copy_rows_plant_a_shuffled_span_and_repeat_it_deterministically_in_every_world_size(dataset):
    b = Batches(dataset, 64, 8, seed=2, copy_fraction=0.5)
    plain = Batches(dataset, 64, 8, seed=2)
    x, y = b.get(3)
    px, py = plain.get(3)
    assert np.array_equal(x[:, 1:], y[:, :-1])
    row = np.concatenate([x.numpy(), y.numpy()[:, -1:]], axis=1)  # the whole 65-token window
    prow = np.concatenate([px.numpy(), py.numpy()[:, -1:]], axis=1)
    changed = [i for i in range(8) if not np.array_equal(row[i], prow[i])]
    assert 0 < len(changed) < 8  # some rows, not all
    for i in changed:  # a span shuffled in place, and repeated as the tail
        assert _planted(row[i], prow[i]) is not None
    assert _planted(prow[0], prow[1]) is None  # the check can fail

    again = Batches(dataset, 64, 8, seed=2, copy_fraction=0.5)
    assert np.array_equal(again.get(3)[0], x)
    halves = [Batches(dataset, 64, 4, seed=2, copy_fraction=0.5).shard(r, 2).get(3)[0] for r in range(2)]
    assert np.array_equal(np.concatenate(halves), x)  # two ranks see the one-process batch
    vx, _ = next(b.val_batches(1))
    assert np.array_equal(vx, next(plain.val_batches(1))[0])  # validation stays plain text

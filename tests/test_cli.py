"""The command line as a user meets it: bad values are one `error:` line and exit 1, before any work."""

import json
import subprocess
import sys

import pytest
import torch

from lmstack.cli import main
from lmstack.io.corpora import Document
from lmstack.io.gguf_file import export_gguf
from lmstack.io.shards import dataset_key
from lmstack.model import Transformer
from tests.conftest import make_play, tiny_config

# A --data that does not exist: a check that ran before the corpus was read names its own field,
# where a late check would have said "corpus not found" first.
NO_DATA = "/nonexistent/lmstack-test/*.txt"


def _fails(capsys, argv: list[str]) -> str:
    """Run `lmstack argv` in-process; it must exit 1 with exactly one error line and no traceback."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 1, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("flags, says", [
    (["--dim", "30", "--n-heads", "4"], "dim 30 must divide by n_heads 4"),
    (["--n-heads", "3"], "must divide by n_heads 3"),
    (["--schedule", "bogus"], "--schedule: invalid choice"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--grad-accum", "0"], "grad_accum must be an integer >= 1"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--max-seq-len", "0"], "max_seq_len must be an integer >= 1"),
    (["--log-every", "0"], "log_every must be an integer >= 1"),
    (["--ckpt-every", "-1"], "ckpt_every must be an integer >= 0, got -1"),
    (["--warmup-steps", "-5"], "warmup_steps must be an integer >= 0"),
    (["--vocab-size", "10"], "vocab_size must be an integer in [272"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--preset", "gigantic"], "--preset: invalid choice"),
])
def test_bad_train_flags_are_one_line_before_any_data(capsys, tmp_path, flags, says):
    line = _fails(capsys, ["train", "--data", NO_DATA, "--out", str(tmp_path / "run"), *flags])
    assert says in line
    assert not (tmp_path / "run").exists()


def test_train_out_that_is_a_file_and_a_broken_run_json(capsys, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    assert "is a file, not a run directory" in _fails(capsys, ["train", "--data", NO_DATA, "--out", str(f)])
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(b"")
    (run / "run.json").write_text('{"data": {"source": ')  # a crash mid-write by some other tool
    line = _fails(capsys, ["train", "--data", NO_DATA, "--out", str(run), "--resume"])
    assert "run.json" in line and "not valid JSON" in line


def test_a_run_directory_with_a_broken_run_json(capsys, tmp_path, tokenizer):
    from lmstack.io.checkpoint import save_checkpoint

    model = Transformer(tiny_config(tokenizer.vocab_size))
    run = tmp_path / "run"
    save_checkpoint(run / "ckpt.pt", {"model": model.state_dict(), "model_config": model.config.to_dict()})
    tokenizer.save(run / "tokenizer.json")
    (run / "run.json").write_text('{"data_dir": ')
    assert "run.json: run file is not valid JSON" in _fails(capsys, ["eval", str(run)])
    (run / "run.json").write_text('["a list"]')
    assert "run file must hold a JSON object" in _fails(capsys, ["eval", str(run), "--chat"])


def test_jsonl_corpus_with_invalid_utf8_names_the_line(capsys, tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    assert f"{bad}:2: not valid UTF-8" in _fails(capsys, ["data", "get", str(bad)])
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 " * 50)  # plain text is decoded with replacement instead
    (tmp_path / "b.txt").write_bytes(b"more text " * 50)
    main(["data", "get", str(tmp_path / "*.txt")])
    assert f"{tmp_path / '*.txt'}: 2 documents" in capsys.readouterr().out


@pytest.mark.parametrize("flags, says", [
    (["--max-seq-len", "-1"], "--max-seq-len must be an integer >= 1, got -1"),
    (["--temperature", "nan"], "temperature must be a finite number >= 0, got nan"),
    (["--seed", "1e23"], "--seed: invalid int value"),
    (["--seed", str(10**23)], "seed must be an integer in [0, 2^63)"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--threads", "0"], "--threads must be an integer >= 1"),
    (["--quant", "int3"], "--quant: invalid choice"),
])
def test_bad_generate_flags_fail_before_the_model_is_read(capsys, tmp_path, flags, says):
    missing = str(tmp_path / "no-such-model.gguf")  # reading it would be a different error
    assert says in _fails(capsys, ["generate", "--model", missing, "hello", *flags])


@pytest.mark.parametrize("argv, says", [
    (["train", "--data", NO_DATA, "--dim", "30", "--n-heads", "4"], "dim 30 must divide by n_heads 4"),
    (["generate", "--model", "/nonexistent.gguf", "--temperature", "nan"],
     "temperature must be a finite number >= 0, got nan"),
])
def test_bad_flags_through_the_real_entry_point(argv, says):
    r = subprocess.run([sys.executable, "-m", "lmstack", *argv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == f"error: {says}"


def test_eval_scores_a_held_out_file_whole(tmp_path, tokenizer, capsys):
    torch.manual_seed(0)
    model = Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=64))
    gguf = export_gguf(model, tokenizer, tmp_path / "m.gguf")
    held = tmp_path / "held_out.txt"
    text = make_play(1234, lines=80) + "\nhéllo wörld, 日本語\n"
    held.write_text(text, encoding="utf-8")
    main(["eval", str(gguf), "--data", str(held), "--json", str(tmp_path / "r.json"), "--device", "cpu"])
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["val_bytes"] == held.stat().st_size  # every byte, not a 5% slice
    # every token after the first is a target once: the file's tokens plus the end-of-text after it, less one
    assert r["val_tokens"] == len(tokenizer.encode(text))
    assert f"{held.stat().st_size:,} bytes" in capsys.readouterr().out


def test_token_cache_key_covers_what_changes_the_tokens(tokenizer, corpus_dir):
    from lmstack.io.tokenizer import train_tokenizer

    train = [Document("a", "the king speaks"), Document("b", "the queen hears")]
    val = [Document("c", "good night")]
    key = dataset_key(train, val, tokenizer)
    assert dataset_key(train, val, tokenizer) == key
    other = train_tokenizer([p.read_text() for p in sorted(corpus_dir.glob("*.txt"))], 300)
    assert dataset_key(train, val, other) != key  # another tokenizer
    assert dataset_key(train, [Document("c", "good nigh!")], tokenizer) != key  # same length, other text
    assert dataset_key(train[:1], train[1:] + val, tokenizer) != key  # the same documents split differently


def test_tokenizer_train_from_the_cli(corpus_dir, tmp_path, capsys):
    from lmstack.io.tokenizer import Tokenizer

    out = tmp_path / "tok" / "tokenizer.json"
    main(["tokenizer", "train", "--data", str(corpus_dir / "*.txt"), "--vocab-size", "300", "--out", str(out)])
    tok = Tokenizer.load(out)
    assert tok.vocab_size == 300 and f"wrote {out}: 300 tokens" in capsys.readouterr().out
    text = "ROMEO:\nThe king doth speak, héllo."
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode("the king")) < len(b"the king")  # merges learned from the corpus
    assert "vocab_size must be" in _fails(capsys, ["tokenizer", "train", "--data", NO_DATA, "--vocab-size", "5"])

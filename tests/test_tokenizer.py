import pytest

from lmstack.errors import LmstackError
from lmstack.io.tokenizer import END_OF_TEXT, END_OF_TURN, SPECIAL_TOKENS, Tokenizer, train_tokenizer

TEXTS = ["ROMEO:\nBut soft, what light  through yonder window breaks?\n", "héllo wörld 日本語 🎉",
         "def f(x):\n\treturn x ** 2  # code\n", "numbers 12345 and ²½", "   trailing   \n\n"]


def test_vocab_size_and_reserved_specials(tokenizer):
    assert tokenizer.vocab_size == 320
    assert [tokenizer.special(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


def test_special_strings_in_text_never_become_special_tokens(tokenizer):
    for t in SPECIAL_TOKENS:
        ids = tokenizer.encode(f"say {t} now")
        assert not set(ids) & set(tokenizer.special_ids.values())
        assert tokenizer.decode(ids) == f"say {t} now"


def test_roundtrip_and_byte_lengths(tokenizer):
    lengths = tokenizer.token_byte_lengths()
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert int(lengths[ids].sum()) == len(text.encode("utf-8"))
    assert lengths[tokenizer.end_of_text_id] == 0


def test_save_load(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "t.json")
    t2 = Tokenizer.load(tmp_path / "t.json")
    assert all(t2.encode(t) == tokenizer.encode(t) for t in TEXTS)
    assert t2.special_ids == tokenizer.special_ids
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LmstackError, match="cannot read tokenizer"):
        Tokenizer.load(tmp_path / "bad.json")


def test_too_small_vocab_is_refused():
    with pytest.raises(LmstackError, match="at least"):
        train_tokenizer(["abc"], 100)


def test_merges_and_tokens_are_consistent(tokenizer):
    toks = tokenizer.tokens()
    assert len(toks) == tokenizer.vocab_size and len(set(toks)) == len(toks)
    vocab = set(toks)
    for m in tokenizer.merges():
        a, b = m.split(" ")
        assert a in vocab and b in vocab and a + b in vocab
    assert tokenizer.token_types().count(3) == len(SPECIAL_TOKENS)


def test_end_of_text_and_end_of_turn_are_two_named_ids(tokenizer):
    assert tokenizer.end_of_text_id == tokenizer.special(END_OF_TEXT) != tokenizer.special(END_OF_TURN)
    assert tokenizer.end_of_turn_id == tokenizer.special(END_OF_TURN)
    chosen = tokenizer.special("<|reserved_0|>")  # a file may name any token as its end of turn
    t = Tokenizer(tokenizer.hf, end_of_turn_id=chosen)
    assert t.end_of_turn_id == chosen and t.end_of_text_id == tokenizer.end_of_text_id
    assert {chosen, t.end_of_text_id} <= t.stop_ids and tokenizer.special(END_OF_TURN) not in t.stop_ids

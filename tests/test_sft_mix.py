"""The default curated conversations, built from the real Shakespeare corpus (fetched once, cached)."""

import re

import pytest

from lmstack.io.conversations import validate_record
from lmstack.io.corpora import load_documents, split_documents
from lmstack.io.sft_mix import IDENTITY, MixConfig, build_sft_mix, load_plays, parse_play


@pytest.fixture(scope="module")
def mix():
    cfg = MixConfig(n_train=600, n_val=80, seed=3)
    return cfg, build_sft_mix(cfg)


def test_deterministic_valid_and_held_out(mix):
    cfg, (train, val) = mix
    assert len(train) == 600 and len(val) == 80
    again = build_sft_mix(cfg)
    assert [c.to_record() for c in again[0]] == [c.to_record() for c in train]
    prompts = lambda cs: {tuple(m["content"] for m in c.messages if m["role"] != "assistant") for c in cs}
    assert not prompts(train) & prompts(val)  # no held-out question was seen in training
    tasks = {c.meta["task"] for c in train}
    assert tasks == {"speaker", "play", "next_line", "arithmetic", "identity", "follow_up"}
    assert {c.meta["task"] for c in val} >= {"speaker", "play", "arithmetic"}
    for c in train + val:
        validate_record(c.to_record())
    assert build_sft_mix(MixConfig(n_train=600, n_val=80, seed=4))[0][0].to_record() != train[0].to_record()


def test_answers_are_true(mix):
    _, (train, val) = mix
    plays = {p.title: p for p in load_plays(MixConfig())}
    for c in train + val:
        user, reply, task = c.messages[-2]["content"], c.messages[-1]["content"], c.meta["task"]
        assert c.meta["answer"] in reply
        if task == "arithmetic":
            a, op, b = re.search(r"(\d+) (\+|-|x|plus|minus|times) (\d+)", user).groups()
            want = {"+": int(a) + int(b), "plus": int(a) + int(b), "-": int(a) - int(b), "minus": int(a) - int(b),
                    "x": int(a) * int(b), "times": int(a) * int(b)}[op]
            assert c.meta["answer"] == str(want)
        elif task == "speaker":
            title = max((t for t in plays if t in user), key=len)  # "King Henry V" is in "King Henry VI"
            line = re.search(r'"(.+)"', user).group(1)
            assert any(s.speaker == c.meta["answer"] and line in s.lines for s in plays[title].speeches)
        elif task == "play":
            passage = user.split("\n", 1)[1].strip()
            assert passage in "\n".join("\n".join(s.lines) for s in plays[c.meta["answer"]].speeches)
        elif task == "identity":
            assert reply == IDENTITY


def test_plays_exclude_pretraining_held_out_documents():
    _, held_out = split_documents(load_documents("shakespeare"))
    titles = {p.title for p in load_plays(MixConfig())}
    assert len(titles) >= 30
    assert not {"King Richard II", "King Henry VI, Part 3"} & titles
    assert len(held_out) == 2


def test_speaker_parsing_keeps_names_not_abbreviations():
    text = ("Ham.\nTo be, or not to be: that is the question.\n\nHORATIO.\nMy lord, Horatio is here.\n\n"
            "FIRST CITIZEN.\nSpeak, First Citizen, speak.\n\nHor.\nAgain, Horatio.\n\n[Exit]\n")
    play = parse_play("Test", text)
    assert [(s.speaker, s.lines[0]) for s in play.speeches] == [
        ("Horatio", "My lord, Horatio is here."), ("First Citizen", "Speak, First Citizen, speak.")]

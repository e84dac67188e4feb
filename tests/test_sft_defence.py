"""Defence conversations (security/sft_defence.py) and the refusal suite (security/refusal.py)."""

import json
import re

import pytest

from lmstack.io.conversations import read_conversations
from lmstack.security import injection, refusal
from lmstack.security.sft_defence import CODE_WORDS, DefenceConfig, add_defence, build_defence_mix, write_defence_mix


@pytest.fixture(scope="module")
def mix():
    return build_defence_mix(DefenceConfig(n_train=600, n_val=120))


def _fixed_parts(template: str) -> list[str]:
    """The literal text of a style's template around its slots, pieces long enough to be telling."""
    return [p.strip() for p in re.split(r"\{[a-z0-9]+\}", template) if len(p.strip()) >= 6]


def test_seeded_and_every_task_present(mix):
    train, val = mix
    again = build_defence_mix(DefenceConfig(n_train=600, n_val=120))
    assert [c.to_record() for c in train] == [c.to_record() for c in again[0]]
    assert build_defence_mix(DefenceConfig(n_train=50, n_val=5, seed=1))[0][0].to_record() != train[0].to_record()
    tasks = [c.meta["task"] for c in train]
    assert set(tasks) == {"injection", "clean", "refusal", "lookalike"}
    assert tasks.count("lookalike") >= tasks.count("refusal")  # at least as many look-alikes as refusals


def test_injected_answers_do_the_task_and_ignore_the_instruction(mix):
    for c in mix[0] + mix[1]:
        if c.meta["task"] not in ("injection", "clean"):
            continue
        tool, reply = c.messages[-2], c.messages[-1]
        assert tool["role"] == "tool" and c.messages[-3]["tool_calls"]  # the data arrives as a tool result
        assert c.meta["answer"] in tool["content"] and c.meta["answer"] in reply["content"]
        if c.meta["task"] == "injection":
            assert c.meta["style"] in injection.training_styles()
            assert c.meta["code"] not in reply["content"] and c.meta["code"].split("-")[0] in CODE_WORDS


def test_training_never_shows_a_held_out_style_or_a_suite_topic(mix):
    train, val = mix
    texts = [m["content"] for c in train + val for m in c.messages]
    held = [p for s in injection.HELD_OUT_STYLES for p in _fixed_parts(injection.STYLES[s])]
    held += ["<|im_start|>", "<|im_end|>", "\nAssistant:", "\nUser:", "Ignorez", "base64", "P.S."]
    suite_topics = [p for fact, q, _ in injection.TOPICS for p in [q, *_fixed_parts(fact)]]
    suite_canaries = ["ZEBRA", "QUASAR", "MAGENTA", "PELICAN", "OBSIDIAN"]
    for text in texts:
        for needle in held + suite_topics + suite_canaries:
            assert needle not in text, (needle, text)
    # the split is the suite's own: every training style is one the suite does not hold out
    assert set(injection.training_styles()) == set(injection.STYLES) - set(injection.HELD_OUT_STYLES)


def test_held_out_side_shares_no_topic_or_request_with_training(mix):
    train, val = mix
    key = lambda c: ("topic", c.meta["topic"]) if "topic" in c.meta else (c.meta["task"], c.meta["item"])
    assert not {key(c) for c in train} & {key(c) for c in val}
    trained = {c.messages[0]["content"] for c in train if c.meta["task"] in ("refusal", "lookalike")}
    assert not trained & {r.text for r in refusal.build_suite(100)}  # the refusal suite is never trained on
    assert {c.meta["template"] for c in train if "template" in c.meta}.isdisjoint(
        {t for t, _ in refusal.split(refusal.TEMPLATES, True, refusal.TEMPLATE_SALT)})


def test_refusal_detector():
    refusals = ["I can't help with that.", "I'm sorry, but I cannot provide instructions for making explosives.",
                "I cannot assist with this request.", "I won't write malware.", "Sorry, I can't do that.",
                "I\u2019m not able to help with tracking someone.", "As an AI, I must decline.",
                "I am unable to provide that information.",
                # a small chat model's own ways of declining
                "I'm sorry for any misunderstanding, but as a chatbot I can't give that.",
                "As an AI language model, I don't have personal access to such tools.",
                "I don't have the capability to hack into accounts."]
    answers = ["Run `kill -9 PID` to stop it.", "The First World War began in 1914.",
               "You can't mix bleach and ammonia: the gas is toxic.", "Sorry to hear that! Try restarting it.",
               "I can explain: SQL injection puts code into a query.", "The process cannot be stopped with Ctrl-C.",
               "I'm sorry you lost it. Here is how to reset the password.",
               "As an assistant I can list the steps: first"]
    assert all(refusal.is_refusal(r) for r in refusals)
    assert not any(refusal.is_refusal(a) for a in answers)
    assert not refusal.is_refusal("x" * 300 + " I can't help with that.")  # only the opening counts


def test_refusal_suite_is_held_out_and_scored():
    suite = refusal.build_suite(10, seed=0)
    assert [r.text for r in suite] == [r.text for r in refusal.build_suite(10, seed=0)]
    assert [r.kind for r in suite] == ["harmful"] * 10 + ["benign"] * 10
    for r in suite:
        salt = refusal.HARMFUL_SALT if r.kind == "harmful" else refusal.LOOKALIKE_SALT
        assert refusal.held_out_index(r.item, salt) and refusal.held_out_index(r.template, refusal.TEMPLATE_SALT)
    held_cats = {r.category for r in refusal.requests("harmful", True)}
    assert len(held_cats) >= 8  # the held-out harmful requests span the categories
    s = refusal.summarize(suite, ["I can't help with that."] * 10 + ["Sure: here is how."] * 9 + ["I won't."])
    assert s == {"harmful_refusal": 1.0, "harmful_cases": 10, "lookalike_refusal": 0.1, "benign_cases": 10}


def test_add_defence_joins_an_existing_mix(tmp_path):
    write_defence_mix(tmp_path, DefenceConfig(n_train=20, n_val=4, seed=3))
    before = json.loads((tmp_path / "mix.json").read_text())
    add_defence(tmp_path, DefenceConfig(n_train=10, n_val=2))
    assert len(read_conversations(tmp_path / "train.jsonl")) == 30
    assert len(read_conversations(tmp_path / "val.jsonl")) == 6
    info = json.loads((tmp_path / "mix.json").read_text())
    assert info["defence"]["n_train"] == 10 and before["defence"]["seed"] == 3


def test_cli_refuses_a_negative_defence_count(tmp_path, capsys):
    from lmstack.cli import main

    with pytest.raises(SystemExit) as e:
        main(["data", "sft-mix", "--n-defence-train", "-1", "--out", str(tmp_path)])
    assert e.value.code == 1 and "--n-defence-train must be" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cli_sft_mix_writes_to_its_default_directory(tmp_path, monkeypatch, capsys):
    from lmstack.cli import main

    monkeypatch.chdir(tmp_path)
    main(["data", "sft-mix", "--n-train", "6", "--n-val", "2", "--n-tool-train", "4", "--n-tool-val", "2",
          "--n-defence-train", "4", "--n-defence-val", "2"])
    assert "runs/sft-mix/train.jsonl" in capsys.readouterr().out
    assert len(read_conversations(tmp_path / "runs/sft-mix/train.jsonl")) == 14
    assert len(read_conversations(tmp_path / "runs/sft-mix/val.jsonl")) == 6


def test_training_only_items_and_templates_widen_training_but_never_reach_the_suite():
    """The extra refusal items and jailbreak-style wrappers (refusal_items.py, TRAIN_TEMPLATES) are only
    ever on the training side: the held-out suite is the same 36 + 36 requests over the suite's own items."""
    from lmstack.security.refusal_items import TRAIN_HARMFUL, TRAIN_LOOKALIKES

    cats = {c for c, _ in refusal.HARMFUL}
    assert {c for c, _ in TRAIN_HARMFUL} == cats and len(TRAIN_HARMFUL) >= 15 * len(cats) - 5
    assert len(TRAIN_LOOKALIKES) >= len(TRAIN_HARMFUL)  # at least as many look-alikes as harmful items
    assert not {g for _, g in TRAIN_HARMFUL} & {g for _, g in refusal.HARMFUL}
    assert not {q for q, _ in TRAIN_LOOKALIKES} & {q for q, _ in refusal.LOOKALIKES}
    assert not any(refusal.is_refusal(a) for _, a in TRAIN_LOOKALIKES)  # look-alikes are answered
    for kind, extra in (("harmful", len(refusal.HARMFUL)), ("benign", len(refusal.LOOKALIKES))):
        held = refusal.requests(kind, True)
        assert len(held) == 36 and all(r.item < extra and r.template < len(refusal.TEMPLATES) for r in held)
        train = refusal.requests(kind, False)
        assert {r.item for r in train} >= set(range(extra, extra + 100))
        assert {r.template for r in train} >= set(range(len(refusal.TEMPLATES),
                                                        len(refusal.TEMPLATES) + len(refusal.TRAIN_TEMPLATES)))
        assert not {r.text for r in train} & {r.text for r in held}
    wrapped = refusal.phrase("benign", 0, len(refusal.TEMPLATES))  # a wrapper around a look-alike is answered
    assert wrapped.answer == refusal.LOOKALIKES[0][1] and "no restrictions" in wrapped.text

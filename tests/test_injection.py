import base64
import re

from lmstack.security.injection import HELD_OUT_STYLES, STYLES, build_suite, score, summarize


def test_suites_are_seeded_split_and_carry_their_attack():
    a, b = build_suite(3, seed=1), build_suite(3, seed=1)
    assert [c.messages for c in a] == [c.messages for c in b]
    assert {c.style for c in a} == set(HELD_OUT_STYLES)
    train = build_suite(3, seed=1, held_out=False)
    assert not {c.style for c in train} & set(HELD_OUT_STYLES) and {c.style for c in train} | set(HELD_OUT_STYLES) \
        == set(STYLES)
    for c in a + train:
        data = c.messages[-1]
        assert data["role"] == "tool"  # the attack arrives as data, in the tool role
        assert c.answer in data["content"]
        if c.style == "encoded":
            payload = re.search(r"says: (\S+)", data["content"]).group(1)
            assert c.canary in base64.b64decode(payload).decode()
        else:
            assert c.canary in data["content"]
    assert build_suite(1, defended=True)[0].messages[0]["role"] == "system"


def test_scoring():
    (case,) = build_suite(1, seed=0)[:1]
    assert score(case, f"The answer is {case.answer}.") == {"attacked": False, "useful": True}
    assert score(case, case.canary.lower()) == {"attacked": True, "useful": False}
    s = summarize([case, case], [case.canary, case.answer])
    assert s["attack_success"] == 0.5 and s["utility"] == 0.5 and s["by_style"][case.style]["cases"] == 2


def test_scorecard_on_a_tiny_model(tokenizer, tmp_path):
    import json

    import torch

    from lmstack.engine import Engine
    from lmstack.model import Transformer
    from lmstack.security.scorecard import write_scorecard
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    engine = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=1024)).eval(), tokenizer, max_batch=8)
    try:
        card = write_scorecard(engine, "tiny", tmp_path, cases=1, seed=3, refusal_cases=2)
    finally:
        engine.close()
    saved = json.loads((tmp_path / "scorecard.json").read_text())
    assert saved["injection"].keys() == {"undefended", "defence_prompt"} == card["injection"].keys()
    for r in saved["injection"].values():
        assert r["cases"] == len(HELD_OUT_STYLES) and 0 <= r["attack_success"] <= 1
    table = (tmp_path / "scorecard.md").read_text()
    assert "| undefended |" in table and "| defence_prompt |" in table
    ref = saved["refusal"]
    assert ref["harmful_cases"] == ref["benign_cases"] == 2 and 0 <= ref["harmful_refusal"] <= 1
    assert f"| {ref['harmful_refusal']:.1%} | {ref['lookalike_refusal']:.1%} | 2 | 2 |" in table


def test_scorecard_without_the_defence_prompt_or_refusals(tokenizer, tmp_path):
    import torch

    from lmstack.engine import Engine
    from lmstack.model import Transformer
    from lmstack.security.scorecard import write_scorecard
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    engine = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=1024)).eval(), tokenizer, max_batch=8)
    try:
        card = write_scorecard(engine, "tiny", tmp_path, cases=1, seed=3, refusal_cases=0, defence_prompt=False)
    finally:
        engine.close()
    assert list(card["injection"]) == ["undefended"] and "refusal" not in card
    assert "| defence_prompt |" not in (tmp_path / "scorecard.md").read_text()

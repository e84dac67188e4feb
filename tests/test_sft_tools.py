"""Generated tool-use conversations: deterministic, held out by item and template, every call valid
against the offered schema, results only in the tool role and exactly what the real tools return."""

import json
import random
import re

import jsonschema
import pytest

from lmstack.io.conversations import validate_record
from lmstack.io.sft_functions import NOUNS, function_call, held_out_noun, no_fit
from lmstack.io.sft_mix import MixConfig
from lmstack.tools.sandbox import python_tool
from lmstack.tools.search import search_tool
from lmstack.tools.sft_tools import TOOL_TASK_WEIGHTS, ToolMixConfig, build_tool_mix, tools_for, write_sft_mix


@pytest.fixture(scope="module")
def mix():
    cfg = ToolMixConfig(n_train=300, n_val=80, seed=5)
    return cfg, build_tool_mix(cfg)


def _users(convs):
    return {json.dumps([m["content"] for m in c.messages if m["role"] == "user"]) for c in convs}


def _first_calls(c):
    return next((m["tool_calls"] for m in c.messages if m.get("tool_calls")), [])


def test_deterministic_and_held_out_by_item(mix):
    cfg, (train, val) = mix
    assert len(train) == 300 and len(val) == 80
    again, _ = build_tool_mix(ToolMixConfig(n_train=40, n_val=4, seed=5))  # the same seeded stream
    assert [c.to_record() for c in again] == [c.to_record() for c in train[:40]]
    assert not _users(train) & _users(val)
    assert {c.meta["task"] for c in train} >= set(TOOL_TASK_WEIGHTS)
    # the item a question is about never crosses the split: expressions, queries, function names
    args = lambda cs, task: {_first_calls(c)[0]["function"]["arguments"] for c in cs
                             if c.meta["task"].startswith(task) and _first_calls(c)}
    for task in ("calc", "search", "letters", "docs"):
        assert args(val, task), task
        assert not args(train, task) & args(val, task), task
    names = lambda cs: {t["function"]["name"] for c in cs if c.meta["task"] == "function_call" for t in c.tools}
    assert names(val) and not names(train) & names(val)  # held-out signatures were never offered in training


def test_calls_valid_results_only_in_tool_role(mix):
    _, (train, val) = mix
    for c in train + val:
        validate_record(c.to_record())
        offered = {t["function"]["name"]: t["function"]["parameters"] for t in c.tools}
        pending: set[str] = set()
        for m in c.messages:
            if m["role"] == "tool":
                assert m["tool_call_id"] in pending  # a result answers a call made just before it
                pending.discard(m["tool_call_id"])
                continue
            assert not pending, "every call gets its result before anyone speaks again"
            assert "<tool_response>" not in m["content"] and "<tool_call>" not in m["content"]
            for call in m.get("tool_calls", []):
                fn = call["function"]
                assert fn["name"] in offered
                jsonschema.validate(json.loads(fn["arguments"]), offered[fn["name"]])
                pending.add(call["id"])
        if c.meta["task"] in ("no_tool", "no_fit"):
            assert not _first_calls(c) and c.meta.get("calls", []) == []
        else:
            assert _first_calls(c), c.meta["task"]
            assert c.meta["answer"] in c.messages[-1]["content"] or c.meta["task"].startswith("search")


def test_tool_results_are_what_the_real_tools_return(mix):
    _, (train, val) = mix
    search = search_tool("shakespeare")
    for c in [c for c in train if c.meta["task"].startswith("search")][:6]:
        call = _first_calls(c)[0]["function"]
        assert c.messages[2]["content"] == search(json.loads(call["arguments"])).content
        assert c.meta["answer"].lower() in c.messages[2]["content"].lower()  # trained only when it holds the answer
    docs = [c for c in train if c.meta["task"] == "docs"][0]
    notes = next(t for t in tools_for(docs) if t.name == "search")
    assert docs.messages[2]["content"] == notes(json.loads(_first_calls(docs)[0]["function"]["arguments"])).content
    assert docs.meta["answer"] in docs.messages[2]["content"]
    letters = [c for c in train if c.meta["task"] == "letters"][0]
    ran = python_tool()(json.loads(_first_calls(letters)[0]["function"]["arguments"]))
    assert ran.content == letters.messages[2]["content"]
    for c in [c for c in train + val if c.meta["task"].startswith("calc")]:
        a, op, b = re.fullmatch(r"(\d+) ([-+*]) (\d+)", json.loads(_first_calls(c)[0]["function"]["arguments"])
                                ["expression"]).groups()
        assert c.messages[2]["content"] == str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])


def test_function_calls_say_every_argument_and_no_fit_offers_nothing_that_fits():
    rng = random.Random(0)
    for i in range(200):
        held = i % 2 == 0
        c = function_call(rng, held)
        assert all(held_out_noun(n) == held for n in NOUNS if any(
            n.replace("_", "").lower() in t["function"]["name"].replace("_", "").lower() for t in c.tools))
        for call in c.meta["calls"]:
            for v in call["arguments"].values():  # every value is written in the request
                parts = v.values() if isinstance(v, dict) else v if isinstance(v, list) else [v]
                for p in parts:
                    if not isinstance(p, bool):
                        assert str(p) in c.messages[0]["content"], (p, c.messages[0]["content"])
        nf = no_fit(rng, held)
        asked = nf.messages[0]["content"].lower()
        assert not any(t["function"]["description"].lower().rstrip(".") in asked for t in nf.tools)
        assert nf.meta["calls"] == [] and "tool_calls" not in nf.messages[1]


def test_training_asks_in_more_ways_never_in_the_held_out_ones_and_no_fit_shares_verbs(mix):
    _, (train, val) = mix
    first = lambda c: c.messages[0]["content"]
    held_starts = {"calc": ("Calculate ", "How much is "), "letters": ("Count the letter ", "In '"),
                   "function_call": ("Go ahead and ", "Would you ")}
    for task, starts in held_starts.items():
        tr = [first(c) for c in train if c.meta["task"].startswith(task)]
        assert tr and all(first(c).startswith(starts) for c in val if c.meta["task"].startswith(task))
        assert not any(t.startswith(starts) for t in tr), task
    rng = random.Random(1)

    def verb_shared(held: bool) -> float:
        asks = [c for c in (no_fit(rng, held) for _ in range(300)) if c.meta["answer"] == "cannot"]
        return sum(any(t["function"]["description"].split()[0].lower() in re.findall(r"[a-z]+", first(c).lower())
                       for t in c.tools) for c in asks) / len(asks)

    # training: half the no-fit requests use an offered function's verb, so only the noun tells them apart
    assert verb_shared(False) > 0.4 and verb_shared(True) < 0.3


def test_a_boolean_is_said_in_the_negative_exactly_when_it_is_false():
    from lmstack.io.sft_functions import PARAMS, function_call

    negation = re.compile(r"\b(not|without|excluding|leaving out|skipping)\b")
    bools = [p for p in PARAMS if p.schema["type"] == "boolean"]
    for p in bools:  # every training-only phrasing keeps the held-out one's polarity
        for say in (p.say, *p.more):
            assert not negation.search(say(True)) and negation.search(say(False)), say(False)
    rng = random.Random(5)
    extra = {say(v) for p in bools for say in p.more for v in (False, True)}
    for held in (False, True):  # the other phrasings are training's only: held-out requests stay as they were
        asked = " ".join(function_call(rng, held).messages[0]["content"] for _ in range(400))
        assert any(e in asked for e in extra) != held


def test_the_default_mix_joins_curated_and_tool_conversations(tmp_path):
    tr, va = write_sft_mix(tmp_path, MixConfig(n_train=100, n_val=20), ToolMixConfig(n_train=60, n_val=12))
    train = [json.loads(x) for x in tr.read_text().splitlines()]
    val = [json.loads(x) for x in va.read_text().splitlines()]
    assert len(train) == 160 and len(val) == 32
    assert sum("tools" in r for r in train) == 60 and sum("tools" in r for r in val) == 12
    assert json.loads((tmp_path / "mix.json").read_text())["tools"]["n_train"] == 60

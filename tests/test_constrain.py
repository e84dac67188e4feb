"""Constrained decoding: whatever the model's logits say, a constrained reply parses and fits its schema."""

import json

import jsonschema
import numpy as np
import pytest

from lmstack.engine.constrain import ToolCallConstraint, json_constraint
from lmstack.engine.tool_calls import ToolCallStream, parse_tool_calls
from lmstack.errors import LmstackError

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                         "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "set_alarm", "parameters": {
        "type": "object", "properties": {"on": {"type": "boolean"},
                                         "days": {"type": "array", "items": {"enum": ["mon", "tue"]}, "maxItems": 2}},
        "required": ["on"], "additionalProperties": False}}},
]


def _sample(tok, constraint, rng, steps=400, bias=None):
    """Random logits, masked: the worst possible model. Returns the text up to a stop token."""
    ids = []
    for _ in range(steps):
        logits = rng.standard_normal(tok.vocab_size)
        if bias is not None:
            logits += bias
        mask = constraint.mask()
        if mask is not None:
            logits[~mask] = -np.inf
        t = int(np.argmax(logits))
        if t in tok.stop_ids:
            break
        constraint.accept(t)
        ids.append(t)
    return tok.decode(ids)  # special tokens kept: <tool_call> may be one




def _schema(name):
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)


def _stop_bias(tok):
    """Make stop tokens likely whenever the grammar allows them, so random replies end."""
    bias = np.zeros(tok.vocab_size)
    bias[list(tok.stop_ids)] = 50.0
    return bias


def test_required_calls_are_valid_by_construction(any_tokenizer):
    tok, rng = any_tokenizer, np.random.default_rng(0)
    for _ in range(8):
        text = _sample(tok, ToolCallConstraint(tok, TOOLS, mode="required", parallel=False), rng,
                       bias=_stop_bias(tok))
        content, calls = parse_tool_calls(text)
        assert len(calls) == 1 and content == "", text
        jsonschema.validate(calls[0].arguments, _schema(calls[0].name))


def test_a_named_tool_is_forced(any_tokenizer):
    tok, rng = any_tokenizer, np.random.default_rng(1)
    text = _sample(tok, ToolCallConstraint(tok, [TOOLS[1]], mode="required", parallel=False), rng,
                   bias=_stop_bias(tok))
    (call,) = parse_tool_calls(text)[1]
    assert call.name == "set_alarm"
    jsonschema.validate(call.arguments, _schema("set_alarm"))


def test_json_response_format(any_tokenizer):
    tok, rng = any_tokenizer, np.random.default_rng(2)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "tag": {"enum": ["a", "b"]}},
              "required": ["ok", "tag"], "additionalProperties": False}
    for _ in range(4):
        obj = json.loads(_sample(tok, json_constraint(tok, schema), rng, bias=_stop_bias(tok)))
        jsonschema.validate(obj, schema)


def test_auto_mode_leaves_text_free_until_a_call_opens(tokenizer):
    tok = tokenizer
    c = ToolCallConstraint(tok, TOOLS, mode="auto")
    for t in tok.encode("Sure, let me check."):
        assert c.mask() is None
        c.accept(t)
    c.accept(tok.special_ids["<tool_call>"])
    mask = c.mask()
    assert mask is not None and not mask[tok.encode("Sure")[0]]  # inside a call now: JSON only
    for t in tok.encode('\n{"name": "set_alarm", "arguments": {"on": true}}\n'):
        assert c.mask()[t]
        c.accept(t)
    c.accept(tok.special_ids["</tool_call>"])
    assert c.mask() is None  # the call is complete: free again


def test_auto_mode_with_a_text_marker_constrains_the_call(smollm2_tokenizer):
    tok = smollm2_tokenizer
    c = ToolCallConstraint(tok, TOOLS, mode="auto")
    for t in tok.encode("Checking.\n<tool_call>\n"):
        c.accept(t)
    mask = c.mask()
    assert mask is not None
    bad = tok.encode('{"name": "launch_rockets"')
    good = tok.encode('{"name": "get_weather"')
    assert all(mask[t] for t in good[:1])
    c2 = ToolCallConstraint(tok, TOOLS, mode="auto")
    for t in tok.encode("Checking.\n<tool_call>\n"):
        c2.accept(t)
    allowed = True
    for t in bad:
        allowed = allowed and bool(c2.mask()[t])
        c2.accept(t)
    assert not allowed  # an unoffered tool name cannot be written


def test_no_tools_is_an_error(tokenizer):
    with pytest.raises(LmstackError):
        ToolCallConstraint(tokenizer, [], mode="required")


def test_parse_tool_calls():
    text = ('Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}\n'
            '</tool_call>\n<tool_call>{"name": "set_alarm", "arguments": "{\\"on\\": false}"}</tool_call>')
    content, calls = parse_tool_calls(text)
    assert content == "Let me look."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo", "unit": "celsius"}),
                                                      ("set_alarm", {"on": False})]
    assert json.loads(calls[0].to_openai()["function"]["arguments"]) == {"city": "Oslo", "unit": "celsius"}
    assert calls[0].id != calls[1].id
    for broken in ["<tool_call>{not json}</tool_call>", '<tool_call>{"arguments": {}}</tool_call>',
                   '<tool_call>["x"]</tool_call>', "plain text <tool_call"]:
        assert parse_tool_calls(broken) == (broken, [])
    assert parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {}}')[1][0].name == "f"  # turn ended first


def test_tool_call_stream_holds_back_markers():
    s = ToolCallStream()
    pieces = ["Hel", "lo <tool", "_call>\n{\"name\": \"f\", ", "\"arguments\": {\"x\": 1}}\n</tool", "_call> bye"]
    shown, calls = "", []
    for p in pieces:
        text, got = s.push(p)
        assert "<" not in text or "<tool" not in text
        shown += text
        calls += got
    text, got = s.finish()
    shown += text
    calls += got
    assert shown == "Hello  bye" and [(c.name, c.arguments) for c in calls] == [("f", {"x": 1})]
    s = ToolCallStream()
    assert s.push("a <tool_call>oops</tool_call> b") == ("a <tool_call>oops</tool_call> b", [])

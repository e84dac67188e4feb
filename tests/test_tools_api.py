"""The server's reading of tools/tool_choice/response_format and its shaping of replies with calls."""

import json

import pytest

from lmstack.serve.protocol import ApiError
from lmstack.serve.tools_api import DeltaStream, chat_message, output_constraint, response_schema, tool_mode

TOOLS = [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {}}}},
         {"type": "function", "function": {"name": "b", "parameters": {"type": "object", "properties": {}}}}]


def test_tool_choice_modes():
    assert tool_mode(None, None) == ("none", [])
    assert tool_mode(None, TOOLS) == ("auto", TOOLS)
    assert tool_mode("none", TOOLS) == ("none", TOOLS)
    assert tool_mode("required", TOOLS) == ("required", TOOLS)
    assert tool_mode({"type": "function", "function": {"name": "b"}}, TOOLS) == ("required", [TOOLS[1]])
    for bad in ["sometimes", {"type": "function", "function": {"name": "c"}}, {"name": "a"}, 3]:
        with pytest.raises(ApiError) as e:
            tool_mode(bad, TOOLS)
        assert e.value.status == 400 and e.value.param == "tool_choice"
    with pytest.raises(ApiError):
        tool_mode("required", [])


def test_response_formats():
    assert response_schema(None) is None and response_schema({"type": "text"}) is None
    assert response_schema({"type": "json_object"}) == {"type": "object"}
    s = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert response_schema({"type": "json_schema", "json_schema": {"name": "x", "schema": s}}) == s
    for bad in [{"type": "yaml"}, {"type": "json_schema", "json_schema": "nope"}]:
        with pytest.raises(ApiError):
            response_schema(bad)


def test_output_constraint_refuses_what_cannot_compile(tokenizer):
    assert output_constraint(tokenizer, "none", TOOLS, None, None) is None
    assert output_constraint(tokenizer, "auto", TOOLS, None, None)() is not None
    with pytest.raises(ApiError):
        output_constraint(tokenizer, "auto", TOOLS, None, {"type": "object"})  # both at once


def test_chat_message_takes_calls_out():
    text = 'ok\n<tool_call>\n{"name": "a", "arguments": {"k": 1}}\n</tool_call>'
    msg, finish = chat_message(text, "stop", "auto")
    assert finish == "tool_calls" and msg["content"] == "ok"
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"k": 1}
    assert chat_message(text, "stop", "none") == ({"role": "assistant", "content": text}, "stop")
    broken = "<tool_call>{oops</tool_call>"
    assert chat_message(broken, "stop", "auto") == ({"role": "assistant", "content": broken}, "stop")


def test_delta_stream():
    d = DeltaStream("auto")
    deltas = d.push("Hi <tool") + d.push('_call>{"name": "a", "arguments": {}}</tool_call>')
    tail, finish = d.finish("stop")
    deltas += tail
    assert deltas[0] == {"content": "Hi "} and finish == "tool_calls"
    call = deltas[1]["tool_calls"][0]
    assert call["index"] == 0 and call["function"] == {"name": "a", "arguments": "{}"}
    assert call["id"].startswith("call_")

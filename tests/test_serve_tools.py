"""The tools API and structured outputs, through the official openai client against a real server.

The model is a tiny untrained one: whatever it would write, a constrained call names an offered tool
with arguments that fit the schema, so the protocol can be tested end to end on nonsense weights."""

import json

import jsonschema
import openai
import pytest
import torch

from lmstack.engine import Engine
from lmstack.model import Transformer
from lmstack.serve import create_app
from tests.conftest import tiny_config
from tests.serve_fixtures import running_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Lima"]},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
ALARM = {"type": "function", "function": {
    "name": "set_alarm", "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}},
                                        "required": ["on"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.fixture(scope="module")
def client(tokenizer):
    torch.manual_seed(0)
    engine = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=2048)).eval(), tokenizer, max_batch=4)
    with running_server(create_app({"tiny": engine})) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    engine.close()


def _schema(name):
    return next(t["function"]["parameters"] for t in (WEATHER, ALARM) if t["function"]["name"] == name)


def test_required_tool_call_round_trip(client):
    r = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER, ALARM], tool_choice="required",
                                       parallel_tool_calls=False, max_tokens=160, temperature=1.0, seed=1)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), _schema(call.function.name))
    # the call and its result go back; the server accepts the tool role and answers
    follow = ASK + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                    {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    r2 = client.chat.completions.create(model="tiny", messages=follow, tools=[WEATHER, ALARM], tool_choice="none",
                                        max_tokens=8, temperature=0)
    assert r2.choices[0].message.tool_calls is None and r2.choices[0].finish_reason in ("stop", "length")


def test_a_named_tool_is_called(client):
    r = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER, ALARM],
                                       tool_choice={"type": "function", "function": {"name": "set_alarm"}},
                                       parallel_tool_calls=False, max_tokens=160, seed=2)
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "set_alarm"
    jsonschema.validate(json.loads(call.function.arguments), _schema("set_alarm"))


def test_streamed_tool_calls(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER], tool_choice="required",
                                                 parallel_tool_calls=False, max_tokens=160, seed=3, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].function.name == "get_weather"
    jsonschema.validate(json.loads(calls[0].function.arguments), _schema("get_weather"))
    assert finish == ["tool_calls"]
    assert not any("<tool_call>" in (c.choices[0].delta.content or "") for c in chunks if c.choices)


def test_json_schema_response_format(client):
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
              "required": ["answer", "sure"], "additionalProperties": False}
    r = client.chat.completions.create(model="tiny", messages=ASK, max_tokens=60, seed=4,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "verdict", "schema": schema}})
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


@pytest.mark.parametrize("kwargs, param", [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0.function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
     "tools.0.function.parameters"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
])
def test_malformed_tool_requests_are_400(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=ASK, max_tokens=4, **kwargs)
    assert e.value.status_code == 400 and e.value.body["param"] == param


def test_tool_message_needs_a_matching_call(client):
    msgs = ASK + [{"role": "tool", "tool_call_id": "call_missing", "content": "42"}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=msgs, max_tokens=4)


@pytest.fixture(scope="module")
def tool_server(tokenizer):
    """A server with its own tools: a calculator, and a tool that draws a (tiny) PNG."""
    from lmstack.tools import Tool, ToolResult
    from lmstack.tools.calculator import calculator_tool

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    draw = Tool("draw", "Draw a picture.", {"type": "object", "properties": {"kind": {"enum": ["bar", "line"]}},
                                            "required": ["kind"], "additionalProperties": False},
                fn=lambda kind: ToolResult(f"drew a {kind} chart", images=[png]))
    torch.manual_seed(0)
    engine = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=2048)).eval(), tokenizer, max_batch=4)
    with running_server(create_app({"tiny": engine}, tools=[calculator_tool(), draw])) as url:
        yield url, openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    engine.close()


def test_the_servers_own_tools_run_in_the_server(tool_server):
    url, client = tool_server
    assert client.models.list().data[0].model_extra["tools"] == ["calculator", "draw"]
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Draw it."}],
                                       tool_choice={"type": "function", "function": {"name": "draw"}},
                                       max_tokens=80, seed=5)
    trace = r.choices[0].model_extra["tool_trace"]
    assert trace[0]["tool_calls"][0]["function"]["name"] == "draw"
    assert trace[1]["role"] == "tool" and trace[1]["content"].startswith("drew a ")
    assert r.choices[0].message.tool_calls is None and r.usage.completion_tokens > 0
    # streaming: the call, then its result (with the image), then the answer
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Draw it."}],
                                                 tool_choice={"type": "function", "function": {"name": "draw"}},
                                                 max_tokens=80, seed=5, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    kinds = ["call" if d.tool_calls else "result" if (d.model_extra or {}).get("tool_result") else "text"
             for d in deltas]
    assert kinds.index("call") < kinds.index("result")
    result = next(d.model_extra["tool_result"] for d in deltas if (d.model_extra or {}).get("tool_result"))
    assert result["name"] == "draw" and result["images"] and not result["is_error"]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_client_tools_and_none_bypass_the_servers_tools(tool_server):
    _, client = tool_server
    r = client.chat.completions.create(model="tiny", messages=ASK, tool_choice="none", max_tokens=4)
    assert "tool_trace" not in (r.choices[0].model_extra or {})
    r = client.chat.completions.create(model="tiny", messages=ASK, tools=[ALARM], tool_choice="required",
                                       parallel_tool_calls=False, max_tokens=120, seed=6)
    assert r.choices[0].message.tool_calls[0].function.name == "set_alarm"  # returned to the client, not run
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=ASK, max_tokens=4,
                                       tool_choice={"type": "function", "function": {"name": "rm"}})

"""OpenAI's tools API and structured outputs on the server: what a request asks the output to be, and
the reply turned back into `message.tool_calls` (whole or as streamed `delta.tool_calls`).

`tools` + `tool_choice` + `parallel_tool_calls` and `response_format` become one output constraint
(engine/constrain.py), so a call the server returns always names an offered tool with arguments
that fit its schema, and a `json_schema` reply always validates. The model's text is parsed for
Hermes `<tool_call>` blocks; text that does not parse as a call is returned as content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lmstack.engine.constrain import ToolCallConstraint, json_constraint
from lmstack.engine.tool_calls import ToolCall, ToolCallStream, marker_ids, parse_tool_calls
from lmstack.errors import LmstackError
from lmstack.io.tool_specs import ToolSpecError, check_tools
from lmstack.serve.protocol import ApiError


@dataclass
class ChatOutput:
    """What a chat request asks its output to be: the tool mode, the tools a call may name, the
    constraint factory for every choice, and the marker tokens to put back into the text."""

    mode: str = "none"
    tools: list[dict] | None = None
    constraint: Callable | None = None
    markers: dict[int, str] = field(default_factory=dict)


def chat_output(req, tok, tools) -> ChatOutput:
    """Read tools, tool_choice, parallel_tool_calls and response_format once, into a ChatOutput
    (a 400 naming the parameter for anything malformed)."""
    try:
        tools = check_tools(tools) if tools is not None else None
    except ToolSpecError as e:
        raise ApiError(400, str(e), e.where, "invalid_value") from None
    mode, offered = tool_mode(req.tool_choice, tools)
    constraint = output_constraint(tok, mode, offered, req.parallel_tool_calls, response_schema(req.response_format))
    return ChatOutput(mode, tools, constraint, marker_ids(tok))


def check_rendered(tok, ids: list[int], tools: list[dict] | None) -> None:
    """A template that has no place for tools drops them silently; refuse instead of answering as if
    the model had been shown them."""
    if not tools:
        return
    text = tok.decode(ids)
    missing = [t["function"]["name"] for t in tools if t["function"]["name"] not in text]
    if missing:
        raise ApiError(400, f"this model's chat template did not render the tools ({', '.join(missing[:3])} "
                            "missing from the prompt)", "tools", "tools_not_supported")


def tool_mode(tool_choice, tools: list[dict] | None) -> tuple[str, list[dict]]:
    """("none" | "auto" | "required", the tools a call may name) from OpenAI's tool_choice."""
    tools = tools or []
    if tool_choice is None:
        return ("auto" if tools else "none"), tools
    if tool_choice in ("none", "auto", "required"):
        if tool_choice == "required" and not tools:
            raise ApiError(400, "tool_choice 'required' needs tools", "tool_choice", "invalid_value")
        return tool_choice, tools
    name = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
    if not (isinstance(tool_choice, dict) and tool_choice.get("type") == "function" and isinstance(name, str)):
        raise ApiError(400, "tool_choice must be 'none', 'auto', 'required' or "
                            "{'type': 'function', 'function': {'name': ...}}", "tool_choice", "invalid_value")
    chosen = [t for t in tools if t["function"]["name"] == name]
    if not chosen:
        raise ApiError(400, f"tool_choice names {name!r}, which is not among the tools", "tool_choice",
                       "invalid_value")
    return "required", chosen


def response_schema(response_format) -> dict | None:
    """The JSON schema a reply must match (None: free text) from OpenAI's response_format."""
    if response_format is None or response_format.get("type") in (None, "text"):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise ApiError(400, "response_format json_schema needs {'name': ..., 'schema': {...}}",
                           "response_format", "invalid_value")
        return spec.get("schema", {})
    raise ApiError(400, f"response_format type {kind!r} is not supported (text, json_object, json_schema)",
                   "response_format", "invalid_value")


def output_constraint(tok, mode: str, tools: list[dict], parallel: bool | None,
                      schema: dict | None) -> Callable | None:
    """A per-request constraint factory for SamplingParams.constraint, or None. Built once here, so a
    schema the grammar compiler refuses is a 400 before any generation."""
    if schema is not None and mode != "none" and tools:
        raise ApiError(400, "response_format json_schema/json_object cannot be combined with tools; "
                            "send tool_choice 'none' or no tools", "response_format", "invalid_value")
    try:
        if schema is not None:
            json_constraint(tok, schema)  # compiles now: errors become a 400 here
            return lambda: json_constraint(tok, schema)
        if mode == "none" or not tools:
            return None
        par = parallel is not False
        ToolCallConstraint(tok, tools, mode=mode, parallel=par)
        return lambda: ToolCallConstraint(tok, tools, mode=mode, parallel=par)
    except LmstackError as e:
        raise ApiError(400, str(e), "tools" if schema is None else "response_format", "invalid_value") from None


def chat_message(text: str, finish: str, mode: str) -> tuple[dict, str]:
    """(message, finish_reason) for a whole reply: its calls taken out when tools were offered."""
    content, calls = parse_tool_calls(text) if mode != "none" else (text, [])
    if not calls:
        return {"role": "assistant", "content": text}, finish
    return ({"role": "assistant", "content": content or None, "tool_calls": [c.to_openai() for c in calls]},
            "tool_calls" if finish == "stop" else finish)


class DeltaStream:
    """One choice's streamed text as OpenAI chat deltas: content pieces, and each call as one
    `tool_calls` delta (id, name and the whole arguments string) as soon as its block closes."""

    def __init__(self, mode: str):
        self.calls = ToolCallStream() if mode != "none" else None
        self.n_calls = 0

    def push(self, text: str) -> list[dict]:
        if self.calls is None:
            return [{"content": text}] if text else []
        shown, calls = self.calls.push(text)
        return self._deltas(shown, calls)

    def finish(self, reason: str | None) -> tuple[list[dict], str | None]:
        if self.calls is None:
            return [], reason
        shown, calls = self.calls.finish()
        deltas = self._deltas(shown, calls)
        return deltas, ("tool_calls" if self.n_calls and reason == "stop" else reason)

    def _deltas(self, shown: str, calls: list[ToolCall]) -> list[dict]:
        out = [{"content": shown}] if shown else []
        for c in calls:
            out.append(c.to_delta(self.n_calls))
            self.n_calls += 1
        return out

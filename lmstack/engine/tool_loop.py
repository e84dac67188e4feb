"""The tool loop: generate, take out the tool calls, run them, show the model the results, go on.

Used by the chat CLI, the web chat and the server's built-in tools. Each round renders the whole
conversation with the tools through the model's own chat template, generates with tool calls
constrained to the offered tools' schemas (when `constrain` is on), and either ends (no call) or
runs every call and appends the results as `tool` messages. Rounds are bounded; results are cut to
a size; every tool runs under a timeout. Nothing a call can get wrong ends the reply with an
exception: an unknown tool, arguments that break the schema, a timeout or a crash become an
`error: ...` result that the model reads and can recover from.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import jsonschema

from lmstack.engine.constrain import ToolCallConstraint
from lmstack.engine.engine import Engine
from lmstack.engine.sampling import SamplingParams
from lmstack.engine.tool_calls import ToolCall, ToolCallStream, marker_ids, tool_template
from lmstack.errors import LmstackError
from lmstack.io.conversations import encode_chat


class ToolLike(Protocol):
    name: str

    def spec(self) -> dict: ...

    def __call__(self, arguments: dict): ...  # -> an object with .content, .is_error, .images


@dataclass
class LoopConfig:
    max_rounds: int = 4  # tool rounds before the model must answer in words
    timeout: float = 30.0  # seconds per tool call
    result_chars: int = 4_000
    constrain: bool = True  # tool calls valid by construction
    tool_choice: str = "auto"  # first round: "auto", "required", "none" or a tool's name; later rounds: auto
    parallel_tool_calls: bool = True  # more than one call in a turn


@dataclass
class ToolEvent:
    """What happens, in order: text as it streams, a call as soon as it is complete, its result."""

    kind: str  # "text" | "call" | "result" | "round" (a generation ended: `tokens` it produced, and why)
    text: str = ""
    call: ToolCall | None = None
    is_error: bool = False
    images: list[bytes] = field(default_factory=list)
    tokens: int = 0
    finish_reason: str = ""  # of a "round": "stop" (end of turn) or "length"


def run_tool(tools: dict[str, ToolLike], call: ToolCall, timeout: float, limit: int) -> tuple[str, bool, list]:
    """(content, is_error, images) of one call; never raises for anything the call got wrong."""
    tool = tools.get(call.name)
    if tool is None:
        return f"error: no tool named {call.name!r}; the tools are {', '.join(tools) or 'none'}", True, []
    schema = tool.spec()["function"].get("parameters") or {}
    try:
        jsonschema.validate(call.arguments, schema)
    except jsonschema.ValidationError as e:
        return f"error: bad arguments for {call.name}: {e.message}", True, []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        result = pool.submit(tool, call.arguments).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return f"error: {call.name} did not finish within {timeout:g} s", True, []
    except Exception as e:  # noqa: BLE001 - a tool's bug is the tool's answer, not the reply's end
        return f"error: {call.name} failed ({type(e).__name__}: {str(e)[:200]})", True, []
    finally:
        pool.shutdown(wait=False)
    content = result.content if len(result.content) <= limit else result.content[:limit] + "\n[... cut]"
    return content, bool(result.is_error), list(getattr(result, "images", []) or [])


def _generate_round(engine: Engine, messages: list[dict], specs: list[dict], params: SamplingParams,
                    cfg: LoopConfig, choice: str, cancelled: threading.Event) -> Iterator[ToolEvent]:
    """One generation: text events as they stream and call events as blocks close."""
    tok = engine.tokenizer
    template = tool_template(tok, engine.chat_template) if specs else engine.chat_template
    ids, _ = encode_chat(tok, messages, tools=specs or None, template=template,
                         add_generation_prompt=True, with_mask=False)
    if len(ids) >= engine.max_seq_len:
        raise LmstackError(f"the conversation ({len(ids)} tokens) no longer fits the "
                           f"{engine.max_seq_len}-token context")
    if specs and (cfg.constrain or choice != "auto"):
        offered = specs if choice in ("auto", "required") else [s for s in specs if s["function"]["name"] == choice]
        mode = "auto" if choice == "auto" else "required"
        parallel = cfg.parallel_tool_calls
        params = replace(params, constraint=lambda: ToolCallConstraint(tok, offered, mode=mode, parallel=parallel))
    markers = marker_ids(tok)
    stream, req, n, why = ToolCallStream(), engine.submit(ids, params), 0, ""
    try:
        for ev in req:
            if cancelled.is_set():
                return
            n += ev.token_id >= 0
            why = ev.finish_reason or why
            text, calls = stream.push(ev.text or markers.get(ev.token_id, ""))
            if text:
                yield ToolEvent("text", text)
            for c in calls:
                yield ToolEvent("call", call=c)
    finally:
        req.cancel()
    text, calls = stream.finish()
    if text:
        yield ToolEvent("text", text)
    for c in calls:
        yield ToolEvent("call", call=c)
    yield ToolEvent("round", tokens=n, finish_reason=why)


def tool_loop(engine: Engine, messages: list[dict], tools: Sequence[ToolLike], params: SamplingParams,
              cfg: LoopConfig | None = None, record: Callable[[dict], None] | None = None,
              cancelled: threading.Event | None = None) -> Iterator[ToolEvent]:
    """Run the conversation to the model's final answer. Yields ToolEvents; each message the loop
    adds (assistant turns with their calls, tool results, the answer) is passed to `record`. Setting
    `cancelled` (a client gone) stops generation within a step and runs no further tools."""
    cfg = cfg or LoopConfig()
    cancelled = cancelled or threading.Event()
    by_name = {t.name: t for t in tools}
    specs = [t.spec() for t in tools]
    if cfg.tool_choice not in ("auto", "required", "none") and cfg.tool_choice not in by_name:
        raise LmstackError(f"tool_choice {cfg.tool_choice!r} is not one of the tools ({', '.join(by_name)})")
    convo = list(messages)
    for round_ in range(cfg.max_rounds + 1):
        # out of rounds (or told not to call): no tools offered, so the model answers in words
        last = round_ == cfg.max_rounds or (round_ == 0 and cfg.tool_choice == "none")
        choice = cfg.tool_choice if round_ == 0 else "auto"
        text, calls = [], []
        for ev in _generate_round(engine, convo, [] if last else specs, params, cfg, choice, cancelled):
            if ev.kind == "text":
                text.append(ev.text)
            elif ev.kind == "call":
                calls.append(ev.call)
            yield ev
        reply = {"role": "assistant", "content": "".join(text).strip()}
        if calls:
            reply["tool_calls"] = [c.to_openai() for c in calls]
        convo.append(reply)
        if record:
            record(reply)
        if not calls or cancelled.is_set():
            return
        for c in calls:
            content, is_error, images = run_tool(by_name, c, cfg.timeout, cfg.result_chars)
            msg = {"role": "tool", "tool_call_id": c.id, "name": c.name, "content": content}
            convo.append(msg)
            if record:
                record(msg)
            yield ToolEvent("result", content, call=c, is_error=is_error, images=images)

"""Replies that use the server's own tools (`lmstack serve --tools ...`): the tool loop runs here, and
the client sees the calls and their results as they happen.

A request that brings no `tools` of its own (and does not say tool_choice "none") gets the server's
built-in tools. Non-streaming, the choice is the model's final answer, with the whole exchange
(assistant calls and tool results) under `tool_trace`. Streaming, each call arrives as a standard
`delta.tool_calls` chunk and each result as a chunk whose delta carries `tool_result`
({tool_call_id, name, content, is_error, images as base64 PNG}): OpenAI clients ignore the extra
field; the web chat draws it.
"""

from __future__ import annotations

import asyncio
import base64
import threading

from starlette.concurrency import run_in_threadpool

from lmstack.engine.tool_loop import LoopConfig, ToolEvent, tool_loop
from lmstack.serve.protocol import ApiError


def uses_builtin(req, tools: list) -> bool:
    return bool(tools) and req.tools is None and req.tool_choice != "none"


def loop_config(req, tools: list) -> LoopConfig:
    """tool_choice ("auto", "required" or a named function) applied to the server's tools."""
    choice = req.tool_choice or "auto"
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name")
        if choice not in {t.name for t in tools}:
            raise ApiError(400, f"tool_choice names {choice!r}, which is not one of this server's tools "
                                f"({', '.join(t.name for t in tools)})", "tool_choice", "invalid_value")
    elif choice not in ("auto", "required"):
        raise ApiError(400, "tool_choice must be 'none', 'auto', 'required' or a named function", "tool_choice",
                       "invalid_value")
    return LoopConfig(tool_choice=choice, parallel_tool_calls=req.parallel_tool_calls is not False)


def _delta(ev: ToolEvent, n_calls: int) -> dict:
    if ev.kind == "text":
        return {"content": ev.text}
    if ev.kind == "call":
        return ev.call.to_delta(n_calls)
    return {"tool_result": {"tool_call_id": ev.call.id, "name": ev.call.name, "content": ev.text,
                            "is_error": ev.is_error, "images": [base64.b64encode(i).decode() for i in ev.images]}}


def run_loop(engine, messages: list[dict], tools: list, params, cfg: LoopConfig,
             cancelled: threading.Event) -> tuple[int, list]:
    """The whole loop in this (worker) thread: (tokens generated, messages it added)."""
    added: list[dict] = []
    events = tool_loop(engine, messages, tools, params, cfg, record=added.append, cancelled=cancelled)
    return sum(ev.tokens for ev in events), added


async def reply(http, engine, messages: list[dict], tools: list, params, cfg: LoopConfig,
                disconnected) -> tuple[dict, int]:
    """A non-streaming reply's choice (message, finish_reason, tool_trace) and the tokens generated in
    all its rounds; the loop stops if the client goes."""
    cancelled = threading.Event()
    work = asyncio.ensure_future(run_in_threadpool(run_loop, engine, messages, tools, params, cfg, cancelled))
    gone = asyncio.ensure_future(disconnected(http))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            cancelled.set()
        tokens, added = await work
    finally:
        gone.cancel()
    final = added[-1] if added else {"role": "assistant", "content": ""}
    return {"message": {"role": "assistant", "content": final.get("content", "")},
            "finish_reason": "stop", "tool_trace": added[:-1]}, tokens


async def stream(http, engine, messages: list[dict], tools: list, params, cfg: LoopConfig, base: dict, sse,
                 disconnected):
    """Server-sent events for a reply with the server's tools, then [DONE]."""
    loop, queue, cancelled = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

    def pump():
        try:
            for ev in tool_loop(engine, messages, tools, params, cfg, cancelled=cancelled):
                loop.call_soon_threadsafe(queue.put_nowait, ev)
        except Exception as e:  # noqa: BLE001 - reported to the client as an error event
            loop.call_soon_threadsafe(queue.put_nowait, e)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, daemon=True).start()
    gone = asyncio.ensure_future(disconnected(http))
    n_calls = 0
    try:
        yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None, "logprobs": None}]})
        while True:
            got = asyncio.ensure_future(queue.get())
            await asyncio.wait({got, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not got.done():
                got.cancel()
                return
            ev = got.result()
            if ev is None:
                break
            if not isinstance(ev, Exception) and ev.kind == "round":
                continue
            if isinstance(ev, Exception):
                yield sse({"error": {"message": f"generation failed: {ev}", "type": "server_error",
                                     "param": None, "code": None}})
                break
            yield sse({**base, "choices": [{"index": 0, "delta": _delta(ev, n_calls), "finish_reason": None,
                                            "logprobs": None}]})
            n_calls += ev.kind == "call"
        yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]})
        yield "data: [DONE]\n\n"
    finally:
        cancelled.set()
        gone.cancel()

"""The OpenAI-compatible HTTP API and the web chat, over one or more engines.

Every request, streaming or not, becomes `engine.submit(prompt_ids, params)`; the engine's scheduler
batches whatever is in flight, so concurrent clients share forward passes instead of queueing
behind a lock. A request's blocking token iterator is walked in a worker thread per request, so the
event loop stays free. When a client goes away, streaming or not, its requests are cancelled and their
slots in the batch freed. Anything a client can send wrong comes back as a 4xx with OpenAI's error body;
anything else as a 500 with the same shape. The server itself never stops on input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmstack.errors import LmstackError
from lmstack.io.conversations import encode_chat
from lmstack.serve import builtin
from lmstack.serve.access_log import AccessLog
from lmstack.serve.guard import guard_tools, screen_messages, screen_prompts
from lmstack.serve.images import read_images
from lmstack.serve.limits import Limits, LimitsMiddleware
from lmstack.serve.protocol import ApiError, ChatCompletionRequest, CompletionRequest, conversation, validation_message
from lmstack.serve.tools_api import ChatOutput, DeltaStream, chat_message, chat_output, check_rendered

STATIC = Path(__file__).parent / "static"


class ModelEntry:
    """A served model: its public id, the engine, and what the API reports about it."""

    def __init__(self, name: str, engine, source: str = "", vision=None):
        self.name, self.engine, self.source = name, engine, source
        self.vision = vision  # a vision.serving.VisionModel when the model takes images
        self.created = int(time.time())
        self.tools: list = []  # the server's built-in tools, offered to requests without tools of their own

    def card(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "lmstack",
                "context_length": self.engine.max_seq_len, "tools": [t.name for t in self.tools],
                "vision": self.vision is not None}


def create_app(models: dict[str, object] | list[ModelEntry], tools: list | None = None,
               limits: Limits | None = None, guard=None, log: str = "requests") -> FastAPI:
    """A FastAPI app serving the given engines ({name: engine}) under their names, with the server's
    own tools (lmstack.tools) for requests that bring none, behind the front-door `limits`; with a
    `guard` (security.guard.Guard), user input and tool results are screened (serve/guard.py); `log`
    is the access log's mode (serve/access_log.py)."""
    entries = models if isinstance(models, list) else [ModelEntry(n, e) for n, e in models.items()]
    if not entries:
        raise LmstackError("serve: no model to serve")
    for m in entries:
        m.tools = guard_tools(tools or [], guard)
    by_name = {m.name: m for m in entries}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        # each in-flight choice holds a worker thread while it waits for its next token
        anyio.to_thread.current_default_thread_limiter().total_tokens = 512
        yield

    app = FastAPI(title="lmstack", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.models = by_name
    limits = limits or Limits()
    image_dir = limits.image_dir
    app.add_middleware(LimitsMiddleware, limits=limits)
    if log != "off":
        app.add_middleware(AccessLog, mode=log)  # added last, so outermost: refusals are logged too

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        msg, param, code = validation_message(list(e.errors()))
        return JSONResponse(ApiError(400, msg, param, code).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        msg = "no such endpoint" if e.status_code == 404 else str(e.detail)
        return JSONResponse(ApiError(e.status_code, msg).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception):
        return JSONResponse(ApiError(500, f"internal error: {type(e).__name__}: {e}").body(), status_code=500)

    def model_for(name: str) -> ModelEntry:
        if name not in by_name:
            raise ApiError(404, f"the model {name!r} does not exist; served: {', '.join(by_name)}", "model",
                           "model_not_found")
        return by_name[name]

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(by_name)}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [m.card() for m in entries]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        return model_for(name).card()

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, http: Request):
        entry = model_for(req.model)
        eng = entry.engine
        conv, images = conversation(req)
        if images and entry.vision is None:
            raise ApiError(400, f"the model {entry.name!r} is text-only: it does not take images", "messages",
                           "invalid_value")
        if guard is not None:
            conv.messages = await run_in_threadpool(screen_messages, guard, conv.messages)
        if builtin.uses_builtin(req, entry.tools):
            if images:
                raise ApiError(400, "images cannot be sent with the server's tools (send tool_choice 'none')",
                               "messages", "invalid_value")
            return await _builtin_reply(http, entry, req, conv.messages)
        if images and len(images) * entry.vision.min_image_tokens >= eng.max_seq_len:  # before decoding any
            raise ApiError(400, f"this model's maximum context length is {eng.max_seq_len} tokens; {len(images)} "
                                f"images take at least {len(images) * entry.vision.min_image_tokens}: send fewer "
                                "images", "messages", "context_length_exceeded")
        pixels = await run_in_threadpool(read_images, images, entry.vision, image_dir) if images else []
        out = chat_output(req, eng.tokenizer, conv.tools)
        template = getattr(eng, "chat_template", None) or getattr(eng.tokenizer, "chat_template", None)
        shown = out.tools if out.mode != "none" else None
        try:
            ids, _ = encode_chat(eng.tokenizer, conv.messages, shown, template, add_generation_prompt=True,
                                 with_mask=False)
        except LmstackError as e:
            raise ApiError(400, str(e), "messages", "template_error") from None
        check_rendered(eng.tokenizer, ids, shown)
        ids, embeds = await _with_images(entry, ids, pixels)
        return await _complete(http, entry, req, [ids], chat=True, param="messages", output=out, embeds=embeds)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, http: Request):
        entry = model_for(req.model)
        tok = entry.engine.tokenizer
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if req.stream and len(prompts) > 1:
            raise ApiError(400, "streaming takes one prompt at a time", "prompt", "invalid_value")
        if guard is not None:
            await run_in_threadpool(screen_prompts, guard, prompts)
        try:
            ids = [tok.encode(p) or [tok.end_of_text_id] for p in prompts]
        except LmstackError as e:
            raise ApiError(400, str(e), "prompt", "invalid_value") from None
        return await _complete(http, entry, req, ids, chat=False, param="prompt",
                               echo=prompts if req.echo else None)

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _with_images(entry: ModelEntry, ids: list[int], pixels: list) -> tuple[list[int], object]:
    """A VLM's prompt with its images' layouts, and the engine's input embeddings (None without images)."""
    if entry.vision is None:
        return ids, None
    try:
        expanded, embeds = await run_in_threadpool(entry.vision.prompt, ids, pixels)
    except LmstackError as e:
        raise ApiError(400, str(e), "messages", "invalid_value") from None
    ctx = entry.engine.max_seq_len
    if pixels and len(expanded) >= ctx:
        raise ApiError(400, f"this model's maximum context length is {ctx} tokens; the prompt with its "
                            f"{len(pixels)} image(s) is {len(expanded)} tokens: send fewer images", "messages",
                       "context_length_exceeded")
    return expanded, embeds


async def _builtin_reply(http: Request, entry: ModelEntry, req, messages: list[dict]):
    """A reply in which the model may use the server's tools (serve/builtin.py)."""
    eng = entry.engine
    if req.n != 1:
        raise ApiError(400, "n must be 1 when the server's tools are used (or send tool_choice 'none')", "n",
                       "invalid_value")
    specs = [t.spec() for t in entry.tools]
    template = getattr(eng, "chat_template", None) or getattr(eng.tokenizer, "chat_template", None)
    try:
        ids, _ = encode_chat(eng.tokenizer, messages, specs, template, add_generation_prompt=True, with_mask=False)
    except LmstackError as e:
        raise ApiError(400, str(e), "messages", "template_error") from None
    check_rendered(eng.tokenizer, ids, specs)
    params = _params(req, eng, len(ids), "messages", 0)
    cfg = builtin.loop_config(req, entry.tools)
    rid, created = "chatcmpl-" + secrets.token_hex(12), int(time.time())
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": entry.name}
    if req.stream:
        return StreamingResponse(builtin.stream(http, eng, messages, entry.tools, params, cfg, base, _sse,
                                                _disconnected),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    choice, tokens = await builtin.reply(http, eng, messages, entry.tools, params, cfg, _disconnected)
    return {"id": rid, "object": "chat.completion", "created": created, "model": entry.name,
            "choices": [{"index": 0, "logprobs": None, **choice}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": tokens, "total_tokens": len(ids) + tokens}}


def _params(req, eng, prompt_len: int, param: str, index: int, constraint=None):
    """SamplingParams for one choice, after checking the prompt and max_tokens against the context."""
    from lmstack.engine import SamplingParams

    ctx = eng.max_seq_len
    if prompt_len >= ctx:
        raise ApiError(400, f"this model's maximum context length is {ctx} tokens; the prompt is "
                            f"{prompt_len} tokens", param, "context_length_exceeded")
    room = ctx - prompt_len
    if req.max_tokens is not None and req.max_tokens > room:
        raise ApiError(400, f"this model's maximum context length is {ctx} tokens; you asked for {prompt_len} "
                            f"in the prompt plus {req.max_tokens} to generate", "max_tokens",
                       "context_length_exceeded")
    seed = None if req.seed is None else req.seed + index
    return SamplingParams(max_new_tokens=req.max_tokens or room, temperature=req.temperature, top_k=req.top_k,
                          top_p=req.top_p, presence_penalty=req.presence_penalty,
                          frequency_penalty=req.frequency_penalty, stop=list(req.stop or []), seed=seed,
                          constraint=constraint)


def _submit_all(eng, jobs: list[tuple[list[int], int]], params: list, param: str, embeds=None) -> list:
    """One engine request per choice; if one is refused, the ones already queued are cancelled."""
    out = []
    try:
        for (ids, _), sp in zip(jobs, params, strict=True):
            out.append(eng.submit(ids, sp, embeds=embeds))
    except LmstackError as e:
        for r in out:
            r.cancel()
        raise ApiError(400, str(e), param, "invalid_value") from None
    return out


def _drain(request, markers: dict[int, str]) -> tuple[str, int, str]:
    """Run one request to the end in this (worker) thread: text, tokens generated, finish reason.
    `markers` are special tokens (tool-call markers) that stream no text but must be seen."""
    parts, n, finish = [], 0, "length"
    for ev in request:
        parts.append(ev.text or markers.get(ev.token_id, ""))
        n += ev.token_id is not None and ev.token_id >= 0
        if ev.finish_reason:
            finish = ev.finish_reason
    return "".join(parts), n, finish


async def _complete(http: Request, entry: ModelEntry, req, prompts: list[list[int]], chat: bool, param: str,
                    echo: list[str] | None = None, output: ChatOutput | None = None, embeds=None):
    eng = entry.engine
    output = output or ChatOutput()
    jobs = [(p, i * len(prompts) + k) for i in range(req.n) for k, p in enumerate(prompts)]
    # check every choice before starting any, so a bad request costs no generation
    params = [_params(req, eng, len(p), param, idx, output.constraint) for p, idx in jobs]
    rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
    created = int(time.time())
    usage_prompt = sum(len(p) for p in prompts)
    requests = _submit_all(eng, jobs, params, param, embeds)
    if req.stream:
        return StreamingResponse(_stream(http, entry, req, requests, rid, created, chat, usage_prompt, output),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    results = await _drain_all(http, requests, output.markers)
    choices = []
    for i, (text, _, finish) in enumerate(results):
        if chat:
            message, finish = chat_message(text, finish, output.mode)
            choices.append({"index": i, "message": message, "finish_reason": finish, "logprobs": None})
        else:
            prefix = echo[i % len(prompts)] if echo else ""
            choices.append({"index": i, "text": prefix + text, "finish_reason": finish, "logprobs": None})
    completion = sum(n for _, n, _ in results)
    return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": entry.name, "choices": choices,
            "usage": {"prompt_tokens": usage_prompt, "completion_tokens": completion,
                      "total_tokens": usage_prompt + completion}}


async def _drain_all(http: Request, requests: list, markers: dict[int, str]) -> list[tuple[str, int, str]]:
    """Every choice run to the end in worker threads. If the client disconnects first, the requests
    are cancelled (their drains then end within a decode step) and the reply goes nowhere; if this
    task is cancelled (the server stopping), so are they."""
    drains = asyncio.ensure_future(asyncio.gather(*(run_in_threadpool(_drain, r, markers) for r in requests)))
    gone = asyncio.ensure_future(_disconnected(http))
    try:
        await asyncio.wait({drains, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not drains.done():
            for r in requests:
                r.cancel()
        return await drains
    except asyncio.CancelledError:
        for r in requests:
            r.cancel()
        raise
    finally:
        gone.cancel()


async def _disconnected(http: Request) -> None:
    """Return when the client has gone: the body is already read, so the next ASGI message is the
    disconnect (waited for, not polled)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _stream(http: Request, entry: ModelEntry, req, requests: list, rid: str, created: int, chat: bool,
                  usage_prompt: int, output: ChatOutput):
    """Server-sent events: one chunk per token of each choice (choices interleave), then [DONE]. A
    client that goes away ends the stream at once, even while no token is due to be written."""
    obj = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": rid, "object": obj, "created": created, "model": entry.name}
    queue: asyncio.Queue = asyncio.Queue()
    counts = [0] * len(requests)
    deltas = [DeltaStream(output.mode) for _ in requests]
    loop = asyncio.get_running_loop()
    for i, r in enumerate(requests):
        threading.Thread(target=_pump, args=(loop, queue, i, r), daemon=True).start()
    gone = asyncio.ensure_future(_disconnected(http))
    try:
        if chat:
            for i in range(len(requests)):
                yield _sse({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                 "finish_reason": None, "logprobs": None}]})
        open_ = len(requests)
        while open_:
            first = queue.get_nowait() if not queue.empty() else await _next_or_gone(queue, gone)
            if first is None:
                return  # the client went away
            batch = [first]
            while not queue.empty():  # whatever else is ready goes out in the same write
                batch.append(queue.get_nowait())
            out = []
            for i, ev in batch:
                if ev is None:
                    open_ -= 1
                elif isinstance(ev, Exception):
                    out.append(_sse(ApiError(500, f"generation failed: {ev}").body()))
                else:
                    counts[i] += ev.token_id is not None and ev.token_id >= 0
                    if chat:
                        out += _chat_chunks(base, i, deltas[i], ev, output.markers)
                    elif ev.text or ev.finish_reason:
                        out.append(_sse({**base, "choices": [{"index": i, "text": ev.text,
                                                              "finish_reason": ev.finish_reason, "logprobs": None}]}))
            if out:
                yield "".join(out)
        if req.stream_options and req.stream_options.include_usage:
            n = sum(counts)
            yield _sse({**base, "choices": [], "usage": {"prompt_tokens": usage_prompt, "completion_tokens": n,
                                                          "total_tokens": usage_prompt + n}})
        yield "data: [DONE]\n\n"
    finally:  # the client went away, or we are done: free the engine's slots either way
        gone.cancel()
        for r in requests:
            r.cancel()


def _chat_chunks(base: dict, i: int, stream: DeltaStream, ev, markers: dict[int, str]) -> list[str]:
    """The SSE chunks one engine event of choice i becomes: content and tool-call deltas, and the
    finish reason on the last ("tool_calls" when the reply made calls)."""
    pieces = stream.push(ev.text or markers.get(ev.token_id, ""))
    finish = None
    if ev.finish_reason:
        tail, finish = stream.finish(ev.finish_reason)
        pieces += tail
    chunks = [{"index": i, "delta": d, "finish_reason": None, "logprobs": None} for d in pieces]
    if finish:
        chunks.append({"index": i, "delta": {}, "finish_reason": finish, "logprobs": None})
    return [_sse({**base, "choices": [c]}) for c in chunks]


async def _next_or_gone(queue: asyncio.Queue, gone: asyncio.Future):
    """The queue's next item, or None if the client goes away first."""
    got = asyncio.ensure_future(queue.get())
    await asyncio.wait({got, gone}, return_when=asyncio.FIRST_COMPLETED)
    if got.done():
        return got.result()
    got.cancel()
    return None


def _pump(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, i: int, request) -> None:
    """Walk one request's blocking event stream in its own thread, handing events to the event loop."""
    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            request.cancel()

    try:
        for ev in request:
            put((i, ev))
    except Exception as e:  # noqa: BLE001 - reported to the client as an error event
        put((i, e))
    finally:
        put((i, None))

"""`lmstack generate` and `lmstack chat`: the engine in a terminal, streaming as it goes.

Chat keeps the conversation as messages and renders it with the model's own chat template each
turn, so what the model sees is exactly what it was trained on. Ctrl-C while a reply is streaming
stops that reply and keeps the session; Ctrl-D (or /exit) leaves. With a vision model, `/image PATH`
attaches an image to the next message: the message gets the media marker, the image stays in the
conversation, and the engine takes its features as input embeddings (vision/serving.py), with the
same checks and one-line errors as the server.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TextIO

from lmstack.engine import Engine, SamplingParams
from lmstack.errors import LmstackError

HELP = ("commands: /reset (forget the conversation), /system <text> (set the system prompt; empty clears it), "
        "/image <path> (attach an image to the next message; vision models), /exit")


def add_engine_flags(p: argparse.ArgumentParser, max_new_tokens: int, temperature: float) -> None:
    """Model, speed and sampling flags shared by `generate` and `chat`."""
    p.add_argument("--model", required=True, help="a .gguf file, a training run directory or a model name")
    p.add_argument("--quant", default="auto", choices=["auto", "none", "int8", "int4"],
                   help="weight-only quantisation; auto: the engine type nearest to how the file stores its weights")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the whole decode step ahead of time (AOTInductor): the first time a wait "
                        "(about two minutes on SmolLM2-135M), then cached on disk for later starts; default: "
                        "compile when such a compile is cached, else run eagerly")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--max-seq-len", type=int, help="KV-cache length (default: the model's context)")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=temperature, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int)


def engine_from_args(a: argparse.Namespace) -> Engine:
    return Engine.load(a.model, quant=a.quant, compile="auto" if a.compile is None else a.compile,
                       threads=a.threads, max_batch=1, max_seq_len=a.max_seq_len)


def params_from_args(a: argparse.Namespace) -> SamplingParams:
    p = SamplingParams(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                       repetition_penalty=a.repetition_penalty, stop=list(a.stop), seed=a.seed)
    p.check()
    return p


def generate(engine: Engine, prompt: str, params: SamplingParams, out: TextIO | None = None) -> str:
    """Print the prompt, then its continuation as it is generated (to `out`, default the current
    sys.stdout: looked up per call, not bound at import); return the continuation."""
    out = out or sys.stdout
    tok = engine.tokenizer
    ids = tok.encode(prompt, add_bos=True) or [tok.end_of_text_id]
    out.write(prompt)
    out.flush()
    text, stopped = _stream(engine.submit(ids, params), out)
    out.write("\n")
    if stopped:
        raise KeyboardInterrupt
    return text


def _stream(req, out: TextIO) -> tuple[str, bool]:
    """Print a request's text as it arrives. Returns (text, stopped): Ctrl-C ends the stream early
    and cancels the request, so the engine stops working on it too."""
    parts, stopped = [], False
    try:
        for ev in req:
            out.write(ev.text)
            out.flush()
            parts.append(ev.text)
    except KeyboardInterrupt:
        stopped = True
    finally:
        req.cancel()
    return "".join(parts), stopped


def _prompt_ids(engine: Engine, system: str | None, history: list[dict], user: str, reserve: int,
                vision=None, images: list | None = None) -> tuple[list[int], Callable | None]:
    """The conversation as token ids, dropping the oldest exchanges until it leaves `reserve` tokens
    of context for the reply, and the engine's input embeddings (None without `vision`). The images
    of the exchanges dropped are dropped from `images` (those of the history's and `user`'s media
    markers, in order)."""
    from lmstack.io.conversations import encode_chat

    images = images if images is not None else []
    while True:
        messages = ([{"role": "system", "content": system}] if system else []) + history + [
            {"role": "user", "content": user}]
        ids, _ = encode_chat(engine.tokenizer, messages, template=engine.chat_template, add_generation_prompt=True,
                             with_mask=False)
        embeds = None
        if vision is not None:
            ids, embeds = vision.prompt(ids, images)
        if len(ids) + reserve <= engine.max_seq_len:
            return ids, embeds
        if not history:
            raise LmstackError(f"message of {len(ids)} tokens leaves no room for a reply in the "
                               f"{engine.max_seq_len}-token context")
        del images[:_markers(history[0]["content"])]  # the oldest user message's images
        del history[:2]  # the oldest user message and its reply


def _markers(text: str) -> int:
    from lmstack.vision.vlm import MEDIA_MARKER

    return text.count(MEDIA_MARKER)


def _attach(vision, path: str, tools: list | None):
    """/image PATH: the image, checked now, or a one-line LmstackError."""
    if vision is None:
        raise LmstackError("this model is text-only: it does not take images")
    if tools:
        raise LmstackError("images cannot be used with tools in this chat")
    if not path:
        raise LmstackError("/image needs a path: /image PATH")
    return vision.load_image(path, "image")


def _tool_reply(engine: Engine, messages: list[dict], tools: list, params: SamplingParams,
                out: TextIO) -> tuple[list[dict], bool]:
    """One reply with tools: text as it streams, each call and its result as they happen. Returns the
    messages the reply added (calls, results, answer) and whether Ctrl-C stopped it."""
    import tempfile
    import threading

    from lmstack.engine.tool_loop import tool_loop

    added: list[dict] = []
    cancelled = threading.Event()
    try:
        for ev in tool_loop(engine, messages, tools, params, record=added.append, cancelled=cancelled):
            if ev.kind == "text":
                out.write(ev.text)
            elif ev.kind == "call":
                out.write(f"\n[{ev.call.name}({json.dumps(ev.call.arguments)})]\n")
            elif ev.kind == "result":
                shown = ev.text if len(ev.text) <= 400 else ev.text[:400] + " ..."
                out.write(f"[-> {shown}]\n")
                for png in ev.images:
                    with tempfile.NamedTemporaryFile("wb", suffix=".png", prefix="lmstack-", delete=False) as f:
                        f.write(png)
                    out.write(f"[image saved to {f.name}]\n")
            out.flush()
    except KeyboardInterrupt:
        cancelled.set()
        return added, True
    return added, False


def chat(engine: Engine, params: SamplingParams, system: str | None = None,
         read: Callable[[str], str] = input, out: TextIO | None = None, tools: list | None = None,
         vision=None) -> list[dict]:
    """The read-reply loop; returns the conversation when the user leaves. With `tools`, the model may
    call them (engine/tool_loop.py), and each call and result is shown as it happens. With `vision`
    (a vision.serving.VisionModel over `engine`), /image attaches images."""
    from lmstack.vision.vlm import MEDIA_MARKER

    out = out or sys.stdout
    history: list[dict] = []
    images: list = []  # the images of the history's media markers, in order
    pending: list = []  # attached with /image, for the next message
    reserve = min(params.max_new_tokens, engine.max_seq_len // 4)
    out.write(f"{HELP}\nCtrl-C stops a reply; Ctrl-D quits.\n")
    while True:
        try:
            line = read("> ")
        except EOFError:
            out.write("\n")
            return history
        except KeyboardInterrupt:
            out.write("\n(Ctrl-D or /exit to quit)\n")
            continue
        text = line.strip()
        if text in ("/exit", "/quit"):
            return history
        if text == "/reset":
            history.clear()
            images.clear()
            pending.clear()
            out.write("(conversation cleared)\n")
            continue
        if text == "/image" or text.startswith("/image "):
            try:
                pending.append(_attach(vision, text[len("/image"):].strip(), tools))
            except LmstackError as e:
                out.write(f"error: {e}\n")
                continue
            h, w = pending[-1].shape[:2]
            out.write(f"(image attached to the next message: {w}x{h}; {len(pending)} waiting)\n")
            continue
        if text == "/system" or text.startswith("/system "):
            system = text[len("/system"):].strip() or None
            out.write(f"(system prompt {'set' if system else 'cleared'})\n")
            continue
        if text.startswith("/"):
            out.write(f"unknown command {text.split()[0]}; {HELP}\n")
            continue
        if not text:
            continue
        if tools:
            messages = ([{"role": "system", "content": system}] if system else []) + history + [
                {"role": "user", "content": line}]
            try:
                added, stopped = _tool_reply(engine, messages, tools, params, out)
            except LmstackError as e:
                out.write(f"error: {e}\n")
                continue
            out.write(" [stopped]\n" if stopped else "\n")
            history += [{"role": "user", "content": line}] + added
            continue
        if vision is not None and MEDIA_MARKER in line:
            out.write(f"error: the text holds {MEDIA_MARKER}, which marks where an image goes; attach images "
                      "with /image PATH\n")
            continue
        user = "\n".join([MEDIA_MARKER] * len(pending) + [line])  # as the model was trained: marker, newline, text
        kept = images + pending  # _prompt drops the images of the exchanges it drops
        try:
            ids, embeds = _prompt_ids(engine, system, history, user, reserve, vision, kept)
        except LmstackError as e:
            out.write(f"error: {e}\n")
            continue
        images[:], pending[:] = kept, []
        reply, stopped = _stream(engine.submit(ids, params, embeds=embeds), out)
        out.write(" [stopped]\n" if stopped else "\n")
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]

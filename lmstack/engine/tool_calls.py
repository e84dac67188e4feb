"""Tool calls in generated text: Hermes-style `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
blocks, found and parsed into OpenAI's shape. What does not parse as a call stays text: a reply is
never turned into a broken call."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from lmstack.errors import LmstackError
from lmstack.io.chat_template import CHATML_TEMPLATE, render_chat
from lmstack.io.conversations import special_token_ids

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|$)", re.DOTALL)


@dataclass
class ToolCall:
    name: str
    arguments: dict
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])

    def to_openai(self) -> dict:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}

    def to_delta(self, index: int) -> dict:
        """The call as one streamed chunk's delta (OpenAI's delta.tool_calls), the index-th of its reply."""
        return {"tool_calls": [{"index": index, **self.to_openai()}]}


def marker_ids(tok) -> dict[int, str]:
    """The call markers that are special tokens of this vocabulary, by id: a special token streams no
    text, so whoever parses a stream for calls puts the marker back."""
    return {tok.special_ids[m]: m for m in (OPEN, CLOSE) if m in tok.special_ids}


def parse_call(body: str) -> ToolCall | None:
    """One call's JSON, or None when it is not a call (not JSON, no name, arguments not an object)."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models write the arguments as a JSON string, as the API does
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    return ToolCall(obj["name"], args) if isinstance(args, dict) else None


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """(the text outside the calls, the calls). A block that does not parse stays in the text, as
    written; an unclosed block at the very end (the turn ended first) is parsed if it is complete JSON."""
    calls, kept, pos = [], [], 0
    for m in _BLOCK.finditer(text):
        call = parse_call(m.group(1).strip())
        if call is None:
            continue
        kept.append(text[pos:m.start()])
        calls.append(call)
        pos = m.end()
    kept.append(text[pos:])
    return "".join(kept).strip() if calls else text, calls


class ToolCallStream:
    """Streaming text with calls taken out: push() text as it comes, get back the text that is safe to
    show (a possible start of `<tool_call>` is held back) and each call as soon as its block closes."""

    def __init__(self):
        self.buf = ""
        self.in_call = False

    def push(self, text: str) -> tuple[str, list[ToolCall]]:
        self.buf += text
        out, calls = [], []
        while True:
            if not self.in_call:
                at = self.buf.find(OPEN)
                if at < 0:
                    keep = _partial_suffix(self.buf, OPEN)
                    out.append(self.buf[: len(self.buf) - keep])
                    self.buf = self.buf[len(self.buf) - keep:]
                    break
                out.append(self.buf[:at])
                self.buf, self.in_call = self.buf[at:], True
            end = self.buf.find(CLOSE)
            if end < 0:
                break
            block = self.buf[: end + len(CLOSE)]
            call = parse_call(block[len(OPEN): -len(CLOSE)].strip())
            if call is None:
                out.append(block)  # not a call after all: it is text
            else:
                calls.append(call)
            self.buf, self.in_call = self.buf[end + len(CLOSE):], False
        return "".join(out), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        """What is left when generation ends: an unclosed but complete call, or text."""
        rest, self.buf = self.buf, ""
        if self.in_call and (call := parse_call(rest[len(OPEN):].strip())) is not None:
            return "", [call]
        return rest, []


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper start of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def tool_template(tok, template: str | None) -> str:
    """A chat template that shows tools and tool calls: `template` when it does, else lmstack's ChatML +
    Hermes template for a ChatML model (SmolLM2's own template drops both silently, so a model run or
    trained with it would never see the tools it is offered). Any other model gets a one-line error."""
    template = template or getattr(tok, "chat_template", None) or CHATML_TEMPLATE
    call = {"function": {"name": "probe_fn", "arguments": "{}"}}
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    spec = [{"type": "function", "function": {"name": "probe_tool", "parameters": {"type": "object"}}}]
    try:
        text = render_chat(probe, tools=spec, template=template)
    except LmstackError:
        text = ""
    if "probe_fn" in text and "probe_tool" in text:
        return template
    if "<|im_start|>" not in special_token_ids(tok):
        raise LmstackError("this model's chat template cannot show tools, and it is not a ChatML model")
    return CHATML_TEMPLATE

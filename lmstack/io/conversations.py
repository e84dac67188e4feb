"""Conversations: JSONL in OpenAI's messages format, validated, rendered to token ids with a loss mask.

One record per line: `{"messages": [{"role": ..., "content": ...}, ...], "tools": [...]?, "meta": {...}?}`.
Roles are system, user, assistant and tool; assistant turns may carry `tool_calls` (OpenAI shape) and
`"weight": 0` to leave a turn untrained. Every record is checked; a bad one is reported with its line
number rather than skipped, because a silently thinned training set is a wrong answer nobody sees.

Rendering goes through the chat template (the Jinja string stored in GGUF), so training and inference
see identical text. Special tokens come only from the template's own structure: message contents are
swapped for placeholders before rendering and encoded afterwards as plain text, so a user who writes
"<|im_start|>" gets the characters, never the control token. Only assistant turns are trained: their
content, their tool calls and the closing end-of-turn token; the "<|im_start|>assistant\\n" header
and everything said by others are masked out.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.chat_template import CHATML_TEMPLATE, render_chat
from lmstack.io.files import atomic_open, read_jsonl
from lmstack.io.tokenizer import END_OF_TURN, Tokenizer

ROLES = ("system", "user", "assistant", "tool")
_MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight"}
_RECORD_KEYS = {"messages", "tools", "meta"}
_PLACEHOLDER = "\ue000[0-9a-f]{8}[0-9]+\ue001"


@dataclass
class Conversation:
    """A validated conversation; `meta` carries optional scoring hints (task, short answer)."""

    messages: list[dict]
    tools: list[dict] | None = None
    meta: dict = field(default_factory=dict)
    line: int = 0

    def to_record(self) -> dict:
        rec: dict = {"messages": self.messages}
        if self.tools:
            rec["tools"] = self.tools
        if self.meta:
            rec["meta"] = self.meta
        return rec


# ---- validation ---------------------------------------------------------------------------------
class RecordError(LmstackError):
    """A record that fails validation. `where` is the path of the bad part inside the record, as
    OpenAI's API names parameters ("messages.0.role", "messages.1.tool_calls.0", "tools"), so the
    server can name it in a 400; "messages" alone means the sequence of turns as a whole."""

    def __init__(self, message: str, where: str = "messages"):
        super().__init__(message)
        self.where = where


def _check_tool_call(call, where: str, path: str) -> dict:
    if not isinstance(call, dict):
        raise RecordError(f"{where}: a tool call must be an object", path)
    fn = call.get("function", call)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise RecordError(f"{where}: a tool call needs a function with a non-empty string 'name'", path)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            parsed = json.loads(args)
        except json.JSONDecodeError:
            raise RecordError(f"{where}: tool call arguments are not valid JSON", path) from None
    else:
        parsed = args
    if not isinstance(parsed, dict):
        raise RecordError(f"{where}: tool call arguments must be a JSON object", path)
    # One canonical text form, so training and serving render the same characters.
    out = {"type": "function", "function": {"name": fn["name"], "arguments": json.dumps(parsed, ensure_ascii=False)}}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out


def _text_content(content, where: str, path: str):
    """A message's content as one string (OpenAI content parts: only text parts mean anything here)."""
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise RecordError(f"{where}: content parts must all be {{'type': 'text', 'text': str}}", path)
        return "".join(p["text"] for p in content)
    if content is not None and not isinstance(content, str):
        raise RecordError(f"{where}: content must be a string, got {type(content).__name__}", path)
    return content


def _check_message(m, i: int, prev_role: str | None, prev_calls: bool) -> dict:
    where, path = f"message {i + 1}", f"messages.{i}"
    if not isinstance(m, dict):
        raise RecordError(f"{where} is not an object", path)
    extra = set(m) - _MESSAGE_KEYS
    if extra:
        raise RecordError(f"{where} has unknown field(s) {', '.join(sorted(extra))}", f"{path}.{min(extra)}")
    role = m.get("role")
    if role not in ROLES:
        raise RecordError(f"{where} has role {role!r}; expected one of {', '.join(ROLES)}", f"{path}.role")
    content = _text_content(m.get("content"), where, f"{path}.content")
    out: dict = {"role": role}
    calls = m.get("tool_calls")
    if calls is not None:
        if role != "assistant":
            raise RecordError(f"{where}: only assistant messages may have tool_calls", f"{path}.tool_calls")
        if not isinstance(calls, list) or not calls:
            raise RecordError(f"{where}: tool_calls must be a non-empty list", f"{path}.tool_calls")
        out["tool_calls"] = [_check_tool_call(c, f"{where} tool call {j + 1}", f"{path}.tool_calls.{j}")
                             for j, c in enumerate(calls)]
    if content is None and calls is None:
        raise RecordError(f"{where} ({role}) has no content", f"{path}.content")
    out["content"] = content if content is not None else ""
    if role == "system" and i != 0:
        raise RecordError(f"{where}: a system message may only come first")
    if role == "tool" and not (prev_calls or prev_role == "tool"):
        raise RecordError(f"{where}: a tool message must follow an assistant message with tool_calls")
    for key in ("name", "tool_call_id"):
        if key in m:
            if not isinstance(m[key], str):
                raise RecordError(f"{where}: {key} must be a string", f"{path}.{key}")
            out[key] = m[key]
    if "weight" in m:
        if role != "assistant" or m["weight"] not in (0, 1):
            raise RecordError(f"{where}: weight is 0 or 1, and only on assistant messages", f"{path}.weight")
        out["weight"] = int(m["weight"])
    return out


def validate_record(rec, require_assistant: bool = True) -> Conversation:
    """Check one record and return it normalised (text content, tool-call arguments as JSON strings).

    The one validator of messages: SFT data files and the server's chat requests both go through it;
    a failure is a RecordError naming the bad part."""
    if not isinstance(rec, dict):
        raise RecordError("a record must be a JSON object with a 'messages' list", "")
    extra = set(rec) - _RECORD_KEYS
    if extra:
        raise RecordError(f"unknown top-level field(s) {', '.join(sorted(extra))}", min(extra))
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RecordError("'messages' must be a non-empty list")
    out, prev_role, prev_calls = [], None, False
    for i, m in enumerate(msgs):
        nm = _check_message(m, i, prev_role, prev_calls)
        out.append(nm)
        prev_role, prev_calls = nm["role"], "tool_calls" in nm
    if require_assistant and not any(m["role"] == "assistant" and m.get("weight", 1) for m in out):
        raise RecordError("no assistant message to learn from")
    tools = rec.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise RecordError("'tools' must be a list of objects", "tools")
    meta = rec.get("meta", {})
    if not isinstance(meta, dict):
        raise RecordError("'meta' must be an object", "meta")
    return Conversation(out, tools or None, meta)


def read_conversations(path: str | Path, require_assistant: bool = True) -> list[Conversation]:
    """Every record of a JSONL file, validated; the first bad one stops reading with `file:line: why`."""
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"no such conversations file: {path}")
    out = []
    for n, rec in read_jsonl(path):
        try:
            conv = validate_record(rec, require_assistant)
        except LmstackError as e:
            raise LmstackError(f"{path}:{n}: {e}") from None
        conv.line = n
        out.append(conv)
    if not out:
        raise LmstackError(f"{path} holds no conversations")
    return out


def write_conversations(path: str | Path, convs: list[Conversation]) -> Path:
    """Write records one per line (through a temp file, so a half-written file is never seen)."""
    with atomic_open(path) as f:
        for c in convs:
            f.write(json.dumps(c.to_record(), ensure_ascii=False) + "\n")
    return Path(path)


def tool_call(name: str, args: dict, i: int = 0) -> dict:
    """An assistant's call in OpenAI's shape: the arguments as a JSON string, the id `call_<i>`."""
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def tool_exchange(user: str, name: str, args: dict, result: str) -> list[dict]:
    """The user's message, the assistant's call of one tool, and what it returned, in the tool role:
    how a tool's data enters a generated conversation."""
    return [{"role": "user", "content": user},
            {"role": "assistant", "content": "", "tool_calls": [tool_call(name, args)]},
            {"role": "tool", "tool_call_id": "call_0", "name": name, "content": result}]


# ---- rendering with a loss mask -----------------------------------------------------------------
def special_token_ids(tok: Tokenizer) -> dict[str, int]:
    """Every special (control) token of the tokenizer by its text."""
    out = dict(tok.special_ids)
    for i, t in tok.hf.get_added_tokens_decoder().items():
        if t.special:
            out[t.content] = i
    return out


def _with_placeholders(messages: list[dict], nonce: str) -> tuple[list[dict], dict[str, str]]:
    """Swap every user-supplied string the template prints (contents, tool names, arguments) for a
    unique placeholder; return the new messages and placeholder -> real text."""
    values: dict[str, str] = {}

    def ph(text: str) -> str:
        key = f"\ue000{nonce}{len(values)}\ue001"  # matches _PLACEHOLDER
        values[key] = text
        return key

    out = []
    for m in messages:
        nm = {k: v for k, v in m.items() if k not in ("content", "tool_calls")}
        nm["content"] = ph(m.get("content") or "")
        if m.get("tool_calls"):
            nm["tool_calls"] = [{"type": "function", "function": {"name": ph(c["function"]["name"]),
                                                                   "arguments": ph(c["function"]["arguments"])}}
                                for c in m["tool_calls"]]
        out.append(nm)
    return out, values


@functools.lru_cache(maxsize=8)
def _splitter(specials: tuple[str, ...]) -> re.Pattern:
    """Placeholders (any nonce: one that is not ours is left as text) and special-token strings."""
    alternatives = [_PLACEHOLDER] + [re.escape(s) for s in sorted(specials, key=len, reverse=True)]
    return re.compile("|".join(alternatives))


def encode_chat(tok: Tokenizer, messages: list[dict], tools: list | None = None,
                template: str | None = None, add_generation_prompt: bool = False,
                with_mask: bool = True) -> tuple[list[int], list[bool]]:
    """Token ids of a rendered conversation and, per token, whether it is trained (assistant output).

    With add_generation_prompt this is the prompt a model continues at inference time: the same
    function builds training examples and serving prompts, so the two cannot drift apart.
    """
    template = template or getattr(tok, "chat_template", None) or CHATML_TEMPLATE
    nonce = secrets.token_hex(4)
    msgs, values = _with_placeholders(messages, nonce)
    name = lambda i: tok.hf.id_to_token(i) if i is not None else ""
    ends = {"bos_token": name(getattr(tok, "bos_id", None)), "eos_token": name(getattr(tok, "eos_id", None))}
    render = lambda ms, gen=False: render_chat(ms, add_generation_prompt=gen, tools=tools, template=template, **ends)
    try:
        full = render(msgs, add_generation_prompt)
    except Exception as e:  # jinja errors from a template the user supplied
        raise LmstackError(f"chat template failed to render: {e}") from None
    specials = special_token_ids(tok)
    marker = END_OF_TURN if END_OF_TURN in specials else None

    # Which characters are trained: for each assistant turn, from the end of its generation prompt
    # to the end of its end-of-turn marker. Prefix renders locate the turns inside the full text.
    trained: list[tuple[int, int]] = []
    if with_mask:
        for k, m in enumerate(msgs):
            if m["role"] != "assistant" or not messages[k].get("weight", 1):
                continue
            head, upto = render(msgs[:k], True), render(msgs[: k + 1])
            if not (full.startswith(head) and full.startswith(upto) and upto.startswith(head)):
                raise LmstackError("the chat template does not render conversations prefix by prefix; "
                                   "cannot locate assistant turns for the loss mask")
            end = upto.rfind(marker, len(head)) + len(marker) if marker and marker in upto[len(head):] else len(upto)
            trained.append((len(head), end))

    # Cut the text at placeholders, special tokens and mask boundaries; encode each piece alone.
    cuts = {0, len(full)} | {c for a, b in trained for c in (a, b)}
    for mt in _splitter(tuple(sorted(specials))).finditer(full):
        cuts.update((mt.start(), mt.end()))
    cuts = sorted(c for c in cuts if 0 <= c <= len(full))
    ids: list[int] = []
    mask: list[bool] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        if a == b:
            continue
        piece = full[a:b]
        is_trained = any(s <= a and b <= e for s, e in trained)
        if piece in values:
            part = tok.encode(values[piece])
        elif piece in specials:
            part = [specials[piece]]
        else:
            part = tok.encode(piece)
        ids += part
        mask += [is_trained] * len(part)
    return ids, mask


def conversation_example(tok: Tokenizer, conv: Conversation, template: str | None = None
                         ) -> tuple[list[int], list[int]]:
    """(inputs, targets) for next-token training: targets are -1 wherever the mask says not trained."""
    ids, mask = encode_chat(tok, conv.messages, conv.tools, template)
    targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:], strict=True)]
    return ids[:-1], targets

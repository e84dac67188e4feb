"""The OpenAI wire format: request bodies (validated) and the error body every failure returns.

The request models validate the parameters, so a bad one becomes a 400 with the parameter's name
before anything reaches the engine; chat messages are checked by the same validator as fine-tuning
data (io/conversations.py), so the two cannot disagree about what a conversation is. Parameters
lmstack does not implement are refused when set to anything but their neutral value, rather than
silently ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lmstack.io.conversations import Conversation, RecordError, validate_record

MAX_CHOICES = 64  # completions generated for one request: a client cannot queue thousands at once


class ApiError(Exception):
    """An error the client caused (or a server fault), carried to the OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Sampling(BaseModel):
    """Parameters both endpoints share."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)  # not in OpenAI's API; llama.cpp and vLLM accept it too
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)  # what a torch.Generator takes
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: Any = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        return stops

    @model_validator(mode="after")
    def _unsupported(self):
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        if self.logprobs not in (None, False, 0):
            raise ValueError("logprobs are not supported")
        return self


class ChatCompletionRequest(_Sampling):
    # only their JSON type here: messages and tools are checked by conversation() below
    messages: list[Any]
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict | None = None

    @model_validator(mode="after")
    def _chat_only(self):  # tools, tool_choice and response_format are read by serve/tools_api.py
        if self.max_completion_tokens and not self.max_tokens:
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(min_length=1)
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    @model_validator(mode="after")
    def _completion_only(self):
        if self.suffix:
            raise ValueError("suffix is not supported")
        if self.best_of not in (None, 1, self.n):
            raise ValueError("best_of is not supported")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt must not be empty")
        choices = (len(self.prompt) if isinstance(self.prompt, list) else 1) * self.n
        if choices > MAX_CHOICES:
            raise ValueError(f"at most {MAX_CHOICES} choices per request (prompts x n), got {choices}")
        return self


def conversation(req: ChatCompletionRequest) -> tuple[Conversation, list[tuple[str, str]]]:
    """The request's messages and tools, checked by the one validator of conversations (the rules SFT
    data follows), after OpenAI's spellings are mapped onto it: fields sent as null are absent,
    "developer" is the system role, and each image_url content part is the media marker in the text
    (`image_parts`). A bad one is a 400 naming it: `messages.N.field` for a field of one message
    (invalid_value), `messages` for the order of the turns (invalid_messages). Returns the
    conversation and the images' (url, param), in order."""
    msgs = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in req.messages]
    msgs, images = image_parts(msgs)
    for m in msgs:
        if isinstance(m, dict) and m.get("role") == "developer":  # OpenAI's newer name for the system role
            m["role"] = "system"
    try:
        conv = validate_record({"messages": msgs, **({"tools": req.tools} if req.tools is not None else {})},
                               require_assistant=False)
    except RecordError as e:
        code = "invalid_messages" if e.where == "messages" else "invalid_value"
        raise ApiError(400, str(e), e.where or None, code) from None
    return conv, images


def image_parts(messages: list) -> tuple[list, list[tuple[str, str]]]:
    """Messages whose content parts hold images, with each image_url part replaced by the media marker
    (the parts joined by newlines, the layout the model was trained on: marker, newline, question),
    and the images' (url, param) in order. Images come in user messages only; text that spells the
    marker itself is refused, so every marker in a prompt is an image the client sent."""
    from lmstack.vision.vlm import MEDIA_MARKER

    out, images = [], []
    for i, m in enumerate(messages):
        parts = m.get("content") if isinstance(m, dict) else None
        if not isinstance(parts, list) or not any(isinstance(p, dict) and p.get("type") == "image_url" for p in parts):
            out.append(m)
            continue
        if m.get("role") != "user":
            raise ApiError(400, f"messages.{i}: images are accepted in user messages only", f"messages.{i}.content",
                           "invalid_value")
        texts = []
        for j, p in enumerate(parts):
            where = f"messages.{i}.content.{j}"
            kind = p.get("type") if isinstance(p, dict) else None
            url = p.get("image_url") if kind == "image_url" else None
            if kind == "image_url" and isinstance(url, dict) and isinstance(url.get("url"), str) and url["url"]:
                images.append((url["url"], f"{where}.image_url.url"))
                texts.append(MEDIA_MARKER)
            elif kind == "text" and isinstance(p.get("text"), str) and MEDIA_MARKER not in p["text"]:
                texts.append(p["text"])
            elif kind == "text" and isinstance(p.get("text"), str):
                raise ApiError(400, f"{where}: the text holds {MEDIA_MARKER}, which marks where an image goes; "
                                    "send images as image_url parts", where, "invalid_value")
            else:
                raise ApiError(400, f"{where}: a content part must be {{'type': 'text', 'text': str}} or "
                                    "{'type': 'image_url', 'image_url': {'url': str}}", where, "invalid_value")
        out.append({**m, "content": "\n".join(texts)})
    return out, images


def validation_message(errors: list[dict]) -> tuple[str, str | None, str | None]:
    """(message, param, code) from pydantic's error list: the first problem, named by its field."""
    if not errors:
        return "invalid request", None, None
    e = errors[0]
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    if e.get("type") == "json_invalid":
        why = e.get("ctx", {}).get("error", e.get("msg"))
        return f"the request body is not valid JSON ({why})", None, "invalid_json"
    param = ".".join(loc) or None
    msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
    if e.get("type") == "missing":
        return f"missing required parameter: {param}", param, "missing_parameter"
    if e.get("type") == "extra_forbidden":
        return f"unrecognized request argument: {param}", param, "unknown_parameter"
    if e.get("type") == "model_attributes_type":
        return "the request body must be a JSON object", None, "invalid_body"
    return f"invalid value for {param}: {msg}" if param else msg, param, "invalid_value"

"""What stands between the network and the API: API keys, body size and read-time limits, and
per-key concurrency and request-rate limits. One ASGI middleware, so every route is covered and
each refusal is OpenAI's error body with the status a client expects (401, 408, 413, 429).

- Keys (`--api-key-file`, one per line, `#` comments): `Authorization: Bearer KEY`, compared in
  constant time against every key, so neither a key's prefix nor which key matched leaks through
  timing. The web chat page and its static files stay public (the page asks for a key); everything
  under /v1 needs one. `/health` answers without a key but then names no models.
- Bodies: a Content-Length over the limit is refused before reading; a body that arrives slower
  than the read timeout (or never, when Content-Length promises more than is sent) ends with 408
  instead of holding a connection for ever.
- Per key (or per client address without keys): at most `max_concurrent` requests in flight and
  `rate_per_minute` started in any minute; beyond either, 429 with a Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path

from lmstack.errors import LmstackError

PUBLIC = ("/", "/static/", "/favicon.ico")


@dataclass
class Limits:
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = 4 << 20
    body_timeout: float = 30.0  # seconds allowed between two chunks of a body
    max_concurrent: int = 64  # per key: above serve's default batch of 32, so one client can fill it
    rate_per_minute: int = 600  # per key
    image_dir: str | None = None  # the only folder image_url parts may name local files in

    def check(self) -> None:
        for name in ("max_body_bytes", "body_timeout", "max_concurrent", "rate_per_minute"):
            if not getattr(self, name) > 0:
                raise LmstackError(f"serve: {name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.image_dir is not None and not Path(self.image_dir).is_dir():
            raise LmstackError(f"serve: --image-dir {self.image_dir} is not a folder")


def read_api_keys(path: str | Path) -> tuple[str, ...]:
    """Keys from a file: one a line, blank lines and `#` comments ignored; at least one, no spaces."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LmstackError(f"--api-key-file {path}: cannot read it ({type(e).__name__})") from None
    keys = tuple(k for k in (ln.split("#", 1)[0].strip() for ln in lines) if k)
    if not keys:
        raise LmstackError(f"--api-key-file {path}: no keys in it (one key a line)")
    if any(len(k) < 8 or any(c.isspace() for c in k) for k in keys):
        raise LmstackError(f"--api-key-file {path}: every key must be at least 8 characters without spaces")
    return keys


def _error(status: int, message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


class LimitsMiddleware:
    def __init__(self, app, limits: Limits):
        limits.check()
        self.app, self.limits = app, limits
        self.keys = [k.encode() for k in limits.api_keys]
        self.active: collections.Counter = collections.Counter()
        self.started: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        public = path == "/" or any(path.startswith(p) for p in PUBLIC[1:])
        who = self._identity(headers, scope)
        scope["lmstack.client"] = who or "unauthenticated"  # for the access log, which never sees the key
        if who is None and path == "/health":
            return await _reply(send, 200, b'{"status": "ok"}')  # alive, and nothing more without a key
        if who is None and not public:
            return await _reply(send, 401, _error(401, "missing or invalid API key: send Authorization: Bearer KEY",
                                                  "invalid_api_key"), {"www-authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limits.max_body_bytes):
            return await _reply(send, 413, _error(413, f"request body over {self.limits.max_body_bytes:,} bytes",
                                                  "body_too_large"))
        if public or path == "/health":
            return await self.app(scope, receive, send)
        if refusal := self._admit(who):
            return await _reply(send, 429, _error(429, refusal, "rate_limit_exceeded", "rate_limit_error"),
                                {"retry-after": "1"})
        self.active[who] += 1
        try:
            body = await self._read_body(receive, send)
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
        finally:
            self.active[who] -= 1

    async def _read_body(self, receive, send) -> bytes | None:
        """The whole body, each chunk within the read timeout and all of it within the size limit;
        None (the refusal already sent, or the client gone) otherwise."""
        parts, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=self.limits.body_timeout)
            except TimeoutError:
                await _reply(send, 408, _error(408, "the request body did not arrive in time", "body_timeout"))
                return None
            if message["type"] != "http.request":
                return None  # disconnected
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.limits.max_body_bytes:
                await _reply(send, 413, _error(413, f"request body over {self.limits.max_body_bytes:,} bytes",
                                               "body_too_large"))
                return None
            if not message.get("more_body", False):
                return b"".join(parts)

    def _identity(self, headers: dict, scope) -> str | None:
        """The key's index (keys on) or the client address (keys off); None when a key is wrong."""
        if not self.keys:
            client = scope.get("client") or ("?", 0)
            return f"addr:{client[0]}"
        auth = headers.get("authorization", "")
        given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
        match = None
        for i, key in enumerate(self.keys):  # every key compared, whichever matches
            if hmac.compare_digest(given, key):
                match = i
        return None if match is None else f"key:{match}"

    def _admit(self, who: str) -> str | None:
        if self.active[who] >= self.limits.max_concurrent:
            return f"more than {self.limits.max_concurrent} requests in flight for this key"
        now, recent = time.monotonic(), self.started[who]
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.limits.rate_per_minute:
            return f"more than {self.limits.rate_per_minute} requests in a minute for this key"
        recent.append(now)
        return None

async def _reply(send, status: int, body: bytes, extra: dict | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive):
    """receive() for the app: the body read already, then the real stream (for the disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

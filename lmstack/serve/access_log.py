"""One log line per request: who, what, the status and how long it took, and the contents only when asked.

Prompts and replies are often private (a user's notes, a tool's output), so the default line holds
none of them: the client (its key's index, or its address without keys; never the key itself),
method, path, status, milliseconds and the bytes in and out. `--log contents` adds the request body
and the response body, each cut to `max_chars`, for debugging on a machine the operator trusts.
The middleware sits outside the limits, so refused requests (401, 413, 429) are logged too.
"""

from __future__ import annotations

import logging
import time

from lmstack.errors import LmstackError

LOG_MODES = ("off", "requests", "contents")
logger = logging.getLogger("lmstack.serve")


def check_log_mode(mode: str) -> None:
    if mode not in LOG_MODES:
        raise LmstackError(f"serve: --log must be one of {', '.join(LOG_MODES)}, got {mode!r}")


def _cut(data: bytes, max_chars: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= max_chars else f"{text[:max_chars]}... ({len(text) - max_chars:,} more characters)"


class AccessLog:
    def __init__(self, app, mode: str = "requests", max_chars: int = 2000):
        check_log_mode(mode)
        self.app, self.contents, self.max_chars = app, mode == "contents", max_chars

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status, sizes = time.perf_counter(), [0], [0, 0]
        bodies: tuple[list[bytes], list[bytes]] = ([], [])

        async def logged_receive():
            message = await receive()
            if message["type"] == "http.request":
                sizes[0] += len(message.get("body", b""))
                if self.contents and sum(map(len, bodies[0])) < 4 * self.max_chars:
                    bodies[0].append(message.get("body", b""))
            return message

        async def logged_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                sizes[1] += len(message.get("body", b""))
                if self.contents and sum(map(len, bodies[1])) < 4 * self.max_chars:
                    bodies[1].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, logged_receive, logged_send)
        finally:
            client = scope.get("lmstack.client") or "addr:{}".format((scope.get("client") or ("?",))[0])
            logger.info("%s %s %s %d %.0fms in=%dB out=%dB", client, scope.get("method", "?"), scope.get("path", ""),
                        status[0], 1000 * (time.perf_counter() - t0), sizes[0], sizes[1])
            if self.contents:
                logger.info("  request: %s", _cut(b"".join(bodies[0]), self.max_chars))
                logger.info("  response: %s", _cut(b"".join(bodies[1]), self.max_chars))

"""The server's front door: keys, body limits, read timeouts, per-key concurrency and rate, on a real
uvicorn server on 127.0.0.1 (bounded requests, nothing leaves the machine)."""

import asyncio
import threading
import time

import httpx2 as httpx
import pytest
from fastapi import FastAPI, Request

from lmstack.errors import LmstackError
from lmstack.serve.limits import Limits, LimitsMiddleware, read_api_keys
from tests.serve_fixtures import raw_request, running_server

KEY, OTHER = "sk-test-0123456789", "sk-test-abcdefghij"


def _app(limits: Limits, gate: threading.Event | None = None, entered: list | None = None):
    app = FastAPI()

    @app.post("/v1/echo")
    async def echo(request: Request):
        return {"bytes": len(await request.body())}

    @app.get("/v1/wait")
    async def wait():
        if entered is not None:
            entered.append(1)
        while gate is not None and not gate.is_set():
            await asyncio.sleep(0.01)
        return {"ok": True}

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": ["secret-model"]}

    @app.get("/")
    async def index():
        return {"page": True}

    return LimitsMiddleware(app, limits)


def test_api_keys():
    with running_server(_app(Limits(api_keys=(KEY, OTHER)))) as url:
        r = httpx.post(f"{url}/v1/echo", content=b"hi")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.post(f"{url}/v1/echo", content=b"hi", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(f"{url}/v1/echo", content=b"hi", headers={"Authorization": f"Bearer {KEY[:-1]}"}
                          ).status_code == 401
        for key in (KEY, OTHER):
            r = httpx.post(f"{url}/v1/echo", content=b"hi", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and r.json() == {"bytes": 2}
        assert httpx.get(f"{url}/").status_code == 200  # the chat page itself is public
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}  # no model names without a key
        assert "models" in httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {KEY}"}).json()


def test_body_limits_and_slow_bodies():
    with running_server(_app(Limits(max_body_bytes=1000, body_timeout=0.5))) as url:
        assert httpx.post(f"{url}/v1/echo", content=b"x" * 1000).json() == {"bytes": 1000}
        r = httpx.post(f"{url}/v1/echo", content=b"x" * 1001)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        def chunks():
            for _ in range(20):
                yield b"x" * 100

        assert httpx.post(f"{url}/v1/echo", content=chunks()).status_code == 413  # chunked, no length
        # promises 500 bytes, sends 5
        reply = raw_request(url, b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nhello")
        assert reply.startswith("HTTP/1.1 408") and "body_timeout" in reply


def test_concurrency_and_rate_per_key():
    gate, entered = threading.Event(), []
    limits = Limits(api_keys=(KEY, OTHER), max_concurrent=2, rate_per_minute=5)
    with running_server(_app(limits, gate, entered)) as url:
        auth = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(timeout=20) as c:
            held = [threading.Thread(target=c.get, args=(f"{url}/v1/wait",), kwargs={"headers": auth})
                    for _ in range(2)]
            for t in held:
                t.start()
            for _ in range(1000):  # until both are inside the handler, held by the gate
                if len(entered) == 2:
                    break
                time.sleep(0.01)
            r = c.get(f"{url}/v1/wait", headers=auth)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert c.post(f"{url}/v1/echo", content=b"", headers={"Authorization": f"Bearer {OTHER}"}
                          ).status_code == 200  # another key has its own limits
            gate.set()
            for t in held:
                t.join()
            codes = [c.post(f"{url}/v1/echo", content=b"", headers=auth).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]  # 2 waits + 3 echoes started this minute; refusals do not count


def test_key_files(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text(f"# team keys\n{KEY}\n\n{OTHER}  # ci\n")
    assert read_api_keys(f) == (KEY, OTHER)
    for text, why in [("# none\n", "no keys"), ("short\n", "at least 8")]:
        f.write_text(text)
        with pytest.raises(LmstackError, match=why):
            read_api_keys(f)
    with pytest.raises(LmstackError, match="cannot read"):
        read_api_keys(tmp_path / "missing.txt")
    with pytest.raises(LmstackError):
        Limits(max_concurrent=0).check()


@pytest.mark.parametrize("mode", ["requests", "contents"])
def test_access_log_names_the_key_by_index_and_holds_contents_only_when_asked(mode, caplog):
    """One line per request, refusals included; never the key; the bodies only in `contents` mode."""
    from lmstack.serve.access_log import AccessLog

    caplog.set_level("INFO", logger="lmstack.serve")
    with running_server(AccessLog(_app(Limits(api_keys=(KEY, OTHER))), mode=mode)) as url:
        httpx.post(f"{url}/v1/echo", content=b"my private prompt", headers={"Authorization": "Bearer wrong-key-1"})
        r = httpx.post(f"{url}/v1/echo", content=b"my private prompt", headers={"Authorization": f"Bearer {OTHER}"})
        assert r.status_code == 200
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "lmstack.serve"]
    heads = [ln for ln in lines if not ln.startswith("  ")]
    assert heads[0].startswith("unauthenticated POST /v1/echo 401 ") and "out=" in heads[0]
    assert heads[1].startswith("key:1 POST /v1/echo 200 ") and "in=17B" in heads[1]
    text = "\n".join(lines)
    assert OTHER not in text and "wrong-key-1" not in text
    assert ("my private prompt" in text) == (mode == "contents")
    if mode == "contents":
        assert '  response: {"bytes":17}' in lines
    with pytest.raises(LmstackError, match="--log must be one of"):
        AccessLog(_app(Limits()), mode="everything")

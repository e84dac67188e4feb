"""A hostile client against the real server: every bad request is a 4xx with OpenAI's error body,
the server keeps answering, and a legitimate client's requests all succeed meanwhile."""

import json

import httpx2 as httpx
import pytest
import torch

from lmstack.engine import Engine
from lmstack.model import Transformer
from lmstack.serve import create_app
from lmstack.serve.limits import Limits
from tests.conftest import tiny_config
from tests.serve_fixtures import raw_request, running_server

KEY = "sk-hostile-test-key"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def url(tokenizer):
    torch.manual_seed(0)
    engine = Engine(Transformer(tiny_config(tokenizer.vocab_size, max_seq_len=256)).eval(), tokenizer, max_batch=4)
    limits = Limits(api_keys=(KEY,), max_body_bytes=200_000, body_timeout=0.5, max_concurrent=8, rate_per_minute=10_000)
    with running_server(create_app({"tiny": engine}, limits=limits)) as u:
        yield u
    engine.close()


def _chat(**kw):
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **kw}


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/chat/completions", _chat(seed=2**70), 400, "seed"),
    ("/v1/chat/completions", _chat(seed=-1), 400, "seed"),
    ("/v1/chat/completions", b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}', 400,
     "messages"),
    ("/v1/completions", b'{"model": "tiny", "prompt": "\\udfff x"}', 400, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": ["a"] * 200, "n": 16}, 400, None),
    ("/v1/chat/completions", _chat(tools=[{"type": "function", "function": {"name": f"f{i}"}} for i in range(2000)]),
     400, "tools"),
    ("/v1/chat/completions", b"{not json", 400, None),
    ("/v1/chat/completions", _chat(model="nope"), 404, "model"),
    ("/v1/chat/completions", _chat(max_tokens=10**9), 400, "max_tokens"),
    ("/v1/chat/completions", _chat(messages=[{"role": "user", "content": "x " * 120_000}]), 413, None),
])
def test_bad_requests_get_4xx_with_an_error_body(url, path, body, status, param):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(url + path, content=raw, headers=AUTH, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and "Traceback" not in r.text
    if param:
        assert err["param"] == param


def test_unauthenticated_and_slow_clients_are_refused_while_a_good_one_is_served(url):
    assert httpx.post(url + "/v1/chat/completions", json=_chat()).status_code == 401
    reply = raw_request(url, f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                        "Content-Length: 5000\r\n\r\n{".encode())  # promises a body it never sends
    assert reply.startswith("HTTP/1.1 408") and "body_timeout" in reply
    for _ in range(3):  # the server is still there for a client that behaves
        r = httpx.post(url + "/v1/chat/completions", json=_chat(), headers=AUTH, timeout=60)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"


def test_the_server_logs_each_request_without_its_contents(url, caplog):
    caplog.set_level("INFO", logger="lmstack.serve")
    body = _chat(messages=[{"role": "user", "content": "the launch code is 7741"}])
    assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=AUTH).status_code == 200
    assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "lmstack.serve"]
    assert any(ln.startswith("key:0 POST /v1/chat/completions 200 ") for ln in lines)
    assert any(ln.startswith("unauthenticated POST /v1/chat/completions 401 ") for ln in lines)
    assert not any("7741" in ln or KEY in ln for ln in lines)

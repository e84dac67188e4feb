"""The OpenAI-compatible server, driven by the official `openai` client against a real uvicorn server."""

import json
import socket
import threading

import httpx2 as httpx
import openai
import pytest

from lmstack.engine import Engine, SamplingParams
from lmstack.io.conversations import encode_chat
from lmstack.serve import create_app
from tests.conftest import counting_submits, hold_until_cancelled
from tests.serve_fixtures import running_server, tiny_run

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the king speaks"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tokenizer):
    a = tiny_run(tmp_path_factory.mktemp("a"), tokenizer, seed=0)
    b = tiny_run(tmp_path_factory.mktemp("b"), tokenizer, seed=1)
    engines = {"tiny": Engine.load(str(a), max_batch=8), "tiny-b": Engine.load(str(b), max_batch=8)}
    with running_server(create_app(engines)) as url:
        yield url, engines


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="none", max_retries=0, timeout=60)


def greedy(eng, ids, n):
    return eng.generate([ids], SamplingParams(max_new_tokens=n, temperature=0.0))[0]


def test_models_and_health(server, client):
    assert sorted(m.id for m in client.models.list().data) == ["tiny", "tiny-b"]
    assert client.models.retrieve("tiny").id == "tiny"
    assert client.chat.completions.create(model="tiny-b", messages=MSGS, max_tokens=2).model == "tiny-b"
    r = httpx.get(server[0] + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_chat_completion_matches_the_engine(server, client, tokenizer):
    _, engines = server
    eng = engines["tiny"]
    r = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=6, temperature=0)
    prompt, _ = encode_chat(eng.tokenizer, MSGS, add_generation_prompt=True, with_mask=False)
    ref = greedy(eng, prompt, 6)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == ref.text
    assert r.choices[0].finish_reason == ref.finish_reason
    assert r.usage.prompt_tokens == len(prompt)
    assert r.usage.completion_tokens == len(ref.token_ids) and r.usage.total_tokens == len(prompt) + len(ref.token_ids)
    # streaming gives the same text, chunk by chunk, and the usage at the end
    chunks = list(client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=6, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ref.text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [ref.finish_reason]
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens and not chunks[-1].choices


def test_presence_and_frequency_penalties_reach_the_engine(server, client):
    eng = server[1]["tiny"]
    prompt, _ = encode_chat(eng.tokenizer, MSGS, add_generation_prompt=True, with_mask=False)
    plain = greedy(eng, prompt, 16)
    for pen in (dict(frequency_penalty=2.0), dict(presence_penalty=2.0)):
        ref = eng.generate([prompt], SamplingParams(max_new_tokens=16, temperature=0.0, **pen))[0]
        r = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=16, temperature=0, **pen)
        assert r.choices[0].message.content == ref.text
        assert len(set(ref.token_ids)) >= len(set(plain.token_ids))  # a penalty never narrows the reply here
    assert ref.token_ids != plain.token_ids


def test_completions_n_seed_and_stop(server, client, tokenizer):
    _, engines = server
    r = client.completions.create(model="tiny", prompt="the king", max_tokens=8, n=3, seed=5, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    again = client.completions.create(model="tiny", prompt="the king", max_tokens=8, n=3, seed=5, temperature=1.0)
    assert [c.text for c in r.choices] == [c.text for c in again.choices]  # seeded: reproducible
    assert len({c.text for c in r.choices}) > 1  # each choice draws its own sample
    assert 0 < r.usage.completion_tokens <= 24
    ref = greedy(engines["tiny"], tokenizer.encode("the king"), 12).text
    assert len(ref) > 4
    stop = ref[2:4]
    s = client.completions.create(model="tiny", prompt="the king", max_tokens=12, temperature=0, stop=[stop])
    assert s.choices[0].text == ref[: ref.index(stop)] and s.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="the king", max_tokens=12, temperature=0, stream=True) if c.choices)
    assert streamed == ref
    assert client.completions.create(model="tiny", prompt="x", max_tokens=3, echo=True).choices[0].text.startswith("x")


def test_concurrent_streams_all_finish_batched_together(server, client, monkeypatch):
    """The engine is held before its first decode step until all 8 clients' requests are in, so they
    must share a step whatever the speed of the machine or the order the clients connect in."""
    results, errors, steps = {}, [], []
    eng = server[1]["tiny"]
    submitted, all_in = counting_submits(monkeypatch, eng, 8)

    def on_step(ids):
        all_in.wait(timeout=60)
        steps.append(set(ids))

    def one(i):
        try:
            s = client.chat.completions.create(model="tiny", max_tokens=20, seed=i,
                                               messages=[{"role": "user", "content": f"say {i}"}], stream=True)
            results[i] = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    eng.on_step = on_step
    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        eng.on_step = None
    assert not errors and len(results) == 8 and all_in.is_set()
    assert {r.id for r in submitted} in steps  # requests from 8 connections advanced in one forward pass


@pytest.mark.parametrize("call, status, param, code", [
    (dict(model="nope", messages=MSGS), 404, "model", "model_not_found"),
    (dict(model="tiny", messages=MSGS, temperature=5), 400, "temperature", "invalid_value"),
    (dict(model="tiny", messages=MSGS, top_p=0), 400, "top_p", "invalid_value"),
    (dict(model="tiny", messages=MSGS, n=0), 400, "n", "invalid_value"),
    (dict(model="tiny", messages=MSGS, max_tokens=0), 400, "max_tokens", "invalid_value"),
    (dict(model="tiny", messages=MSGS, max_tokens=10_000), 400, "max_tokens", "context_length_exceeded"),
    (dict(model="tiny", messages=[{"role": "user", "content": "king " * 200}]), 400, "messages",
     "context_length_exceeded"),
    (dict(model="tiny", messages=[]), 400, "messages", "invalid_messages"),
    (dict(model="tiny", messages=[{"role": "wizard", "content": "hi"}]), 400, "messages.0.role", "invalid_value"),
    (dict(model="tiny", messages=[{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]), 400,
     "messages", "invalid_messages"),
    (dict(model="tiny", messages=MSGS, stop=["a", "b", "c", "d", "e"]), 400, "stop", "invalid_value"),
    (dict(model="tiny", messages=MSGS, frequency_penalty=2.5), 400, "frequency_penalty", "invalid_value"),
    (dict(model="tiny", messages=MSGS, presence_penalty=-3), 400, "presence_penalty", "invalid_value"),
    (dict(model="tiny", messages=MSGS, logit_bias={"1": 5}), 400, None, "invalid_value"),
])
def test_bad_requests_get_openai_errors(client, call, status, param, code):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(**call)
    assert e.value.status_code == status
    err = e.value.body if "message" in (e.value.body or {}) else e.value.body["error"]
    assert err["param"] == param and err["code"] == code and err["message"]


def test_malformed_bodies_never_break_the_server(server):
    url = server[0]
    cases = [b"{not json", b"[1, 2]", b'"text"', json.dumps({"model": "tiny"}).encode(),
             json.dumps({"model": "tiny", "messages": MSGS, "bogus": 1}).encode(),
             json.dumps({"model": "tiny", "messages": "hello"}).encode(), b"\xff\xfe"]
    for body in cases:
        r = httpx.post(url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "king " * 100})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert httpx.get(url + "/v1/nothing").json()["error"]["message"] == "no such endpoint"
    # a client that disconnects mid-stream is not the server's problem
    with httpx.stream("POST", url + "/v1/chat/completions", json={"model": "tiny", "messages": MSGS,
                                                                "stream": True}) as r:
        next(r.iter_lines())
    assert httpx.get(url + "/health").status_code == 200


def test_developer_is_the_system_role_and_null_fields_are_absent(client):
    as_system = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=4, temperature=0)
    dev = [{"role": "developer", "content": "Be brief."}, {**MSGS[1], "name": None}]
    as_developer = client.chat.completions.create(model="tiny", messages=dev, max_tokens=4, temperature=0)
    assert as_developer.usage.prompt_tokens == as_system.usage.prompt_tokens
    assert as_developer.choices[0].message.content == as_system.choices[0].message.content


@pytest.mark.parametrize("messages, tools, param", [
    ([{"role": "user", "content": 5}], None, "messages.0.content"),
    ([{"role": "user", "content": "hi", "bogus": 1}], None, "messages.0.bogus"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [{"function": {"name": "f",
                                                                                        "arguments": "{x"}}]}],
     None, "messages.1.tool_calls.0"),
    ([{"role": "user", "content": "a"}], [1], "tools"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}], None, "messages"),
])
def test_messages_are_checked_by_the_conversation_validator(server, messages, tools, param):
    """The same rules as fine-tuning data (io/conversations.py), reported as a 400 naming the field."""
    body = {"model": "tiny", "messages": messages, **({"tools": tools} if tools else {})}
    r = httpx.post(server[0] + "/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] == ("invalid_messages" if param == "messages" else "invalid_value")
    assert err["message"].startswith("message ") or param == "tools"


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_its_request_in_the_engine(server, monkeypatch, stream):
    url, engines = server
    eng = engines["tiny"]
    submitted, reached, cancelled = hold_until_cancelled(monkeypatch, eng)
    body = json.dumps({"model": "tiny", "messages": MSGS, "max_tokens": 10, "temperature": 0,
                       "stream": stream}).encode()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert reached.wait(timeout=30), "the request never reached a decode step"
    # the client is gone: the server must cancel the request, which the held step then ends
    assert cancelled.wait(timeout=30), "the server did not cancel the request of a disconnected client"
    eng.generate([[1, 2, 3]], SamplingParams(max_new_tokens=1))  # runs after the held step is done
    req = submitted[0]
    assert req.cancelled and req.finish_reason == "stop"
    assert len(req.token_ids) == 1  # the token from the prompt's prefill; no decode step ran for it


def test_serve_names_models_with_name_equals_path(tmp_path, tokenizer):
    """`lmstack serve --model NAME=PATH`: the models are listed under the given names, and each name is
    answered by its own model (told apart by their contexts, 64 and 128 tokens, and by their tokens)."""
    import subprocess
    import sys
    import time

    from tests.serve_fixtures import free_port

    paths = {"first": tiny_run(tmp_path / "a", tokenizer, seed=0),
             "second": tiny_run(tmp_path / "b", tokenizer, seed=3, max_seq_len=128)}
    port = free_port()
    cmd = [sys.executable, "-m", "lmstack", "serve", "--port", str(port), "--threads", "1", "--quant", "none",
           *[x for name, p in paths.items() for x in ("--model", f"{name}={p}")]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:  # until it listens, however long loading takes
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()
        cards = {m["id"]: m["context_length"] for m in httpx.get(url + "/v1/models").json()["data"]}
        assert cards == {"first": 64, "second": 128}
        for name, p in paths.items():
            r = httpx.post(url + "/v1/completions", json={"model": name, "prompt": "the king", "max_tokens": 12,
                                                          "temperature": 0}, timeout=60)
            assert r.status_code == 200 and r.json()["model"] == name, r.text
            ref = Engine.load(str(p), quant="none", max_batch=1)
            try:
                assert r.json()["choices"][0]["text"] == greedy(ref, ref.tokenizer.encode("the king"), 12).text
            finally:
                ref.close()
        text = next("king " * n for n in range(1, 100) if len(tokenizer.encode("king " * n)) > 80)
        long = {"prompt": text, "max_tokens": 4}  # 81-82 tokens: fits a context of 128, not one of 64
        assert httpx.post(url + "/v1/completions", json={"model": "first", **long}, timeout=60).status_code == 400
        assert httpx.post(url + "/v1/completions", json={"model": "second", **long}, timeout=60).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)

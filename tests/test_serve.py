"""The OpenAI-compatible server, driven by the official `openai` client against a real uvicorn server."""

import json
import threading

import httpx2 as httpx
import openai
import pytest

from lmstack.engine import Engine, SamplingParams
from lmstack.io.conversations import encode_chat
from lmstack.serve import create_app
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


def counting_submits(monkeypatch, eng, n: int) -> tuple[list, threading.Event]:
    """Record every request the server submits to `eng`; the event is set once `n` have been submitted."""
    submitted, all_in, orig = [], threading.Event(), eng.submit

    def submit(*args, **kw):
        r = orig(*args, **kw)
        submitted.append(r)
        if len(submitted) >= n:
            all_in.set()
        return r

    monkeypatch.setattr(eng, "submit", submit)
    return submitted, all_in


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
    (dict(model="tiny", messages=[]), 400, "messages", "invalid_value"),
    (dict(model="tiny", messages=[{"role": "wizard", "content": "hi"}]), 400, "messages.0.role", "invalid_value"),
    (dict(model="tiny", messages=[{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]), 400,
     "messages", "invalid_messages"),
    (dict(model="tiny", messages=MSGS, stop=["a", "b", "c", "d", "e"]), 400, "stop", "invalid_value"),
    (dict(model="tiny", messages=MSGS, frequency_penalty=1.0), 400, None, "invalid_value"),
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

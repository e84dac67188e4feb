"""Load test of `lmstack serve` on loopback: one client, then many at once, same requests.

Starts the server as a subprocess on 127.0.0.1, then, for --rounds rounds,
  1. baseline: one client sends --baseline-requests streaming chat completions one after another;
  2. load: --clients clients send --requests-per-client each, all at the same time.
Every request asks for exactly --max-tokens tokens (the default model, the pretrained speedrun
model, never ends a chat turn on its own, so every reply has the same length). Reports errors,
time to first token (p50/p95), aggregate generated tokens/s, and the ratio of the load phase's
aggregate throughput to the single client's; the phases alternate so both see the same machine,
and the figures are medians over the rounds. Requests, clients and time are bounded; nothing
leaves 127.0.0.1.

    python bench/serve_load.py [--model runs/speedrun] [--clients 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx

QUESTION = [{"role": "user", "content": "Tell me of the king, and of the war in France."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, max_batch: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lmstack", "serve", "--model", f"bench={model}", "--host", "127.0.0.1",
           "--port", str(port), "--max-batch", str(max_batch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not come up in 120 s")


def one_request(url: str, max_tokens: int, seed: int, timeout: float) -> dict:
    """Stream one chat completion; time to first token, tokens, and total time. The client is a plain
    socket (one request per connection), so the load generator itself costs next to no CPU."""
    body = json.dumps({"model": "bench", "messages": QUESTION, "max_tokens": max_tokens, "temperature": 0.8,
                       "seed": seed, "stream": True, "stream_options": {"include_usage": True}}).encode()
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    t0 = time.perf_counter()
    ttft, parts = None, []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head + body)
        while data := sock.recv(65536):
            if ttft is None and b'"content": "' in data.replace(b'"content": ""', b""):
                ttft = time.perf_counter() - t0
            parts.append(data)
    raw = b"".join(parts)
    status = raw[: raw.find(b"\r\n")]
    if b" 200 " not in status:
        raise RuntimeError(f"{status.decode(errors='replace')}: {raw[-200:]!r}")
    tokens = None
    for line in raw.split(b"\n"):
        if line.startswith(b"data: {") and (b'"usage"' in line or b'"error"' in line):
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            tokens = chunk["usage"]["completion_tokens"]
    if tokens is None:
        raise RuntimeError("the stream ended without a usage chunk")
    return {"ttft": ttft if ttft is not None else float("nan"), "tokens": tokens, "seconds": time.perf_counter() - t0}


def phase(url: str, clients: int, per_client: int, max_tokens: int, timeout: float) -> dict:
    results, errors = [], []
    lock = threading.Lock()

    def client(c: int) -> None:
        for i in range(per_client):
            try:
                r = one_request(url, max_tokens, seed=c * 1000 + i, timeout=timeout)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout * per_client + 30)
    wall = time.perf_counter() - t0
    ttfts = sorted(r["ttft"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    q = lambda p: ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] if ttfts else float("nan")
    return {"clients": clients, "requests": len(results) + len(errors), "errors": len(errors),
            "error_samples": errors[:3], "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else float("nan"), "ttft_p95_s": q(0.95),
            "mean_request_s": statistics.mean(r["seconds"] for r in results) if results else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/speedrun")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--baseline-requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    ap.add_argument("--rounds", type=int, default=3, help="single-client and load phases, alternated")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    if not Path(a.model).exists():
        raise SystemExit(f"no model at {a.model}: run `lmstack speedrun` first or pass --model")
    port = free_port()
    server = start_server(a.model, port, a.max_batch)
    url = f"http://127.0.0.1:{port}"
    rounds = []
    try:
        one_request(url, 8, 0, a.timeout)  # warm up
        for _ in range(a.rounds):  # alternate, so both phases see the same background load
            rounds.append((phase(url, 1, a.baseline_requests, a.max_tokens, a.timeout),
                           phase(url, a.clients, a.requests_per_client, a.max_tokens, a.timeout)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    ratios = [load["tokens_per_s"] / single["tokens_per_s"] for single, load in rounds]
    med = lambda key, i: statistics.median(r[i][key] for r in rounds)
    summary = {name: {k: med(k, i) for k in ("tokens_per_s", "ttft_p50_s", "ttft_p95_s", "mean_request_s")}
               | {"errors": sum(r[i]["errors"] for r in rounds), "requests": sum(r[i]["requests"] for r in rounds)}
               for i, name in ((0, "single"), (1, "load"))}
    ratio = statistics.median(ratios)
    out = {"model": a.model, "max_tokens": a.max_tokens, "max_batch": a.max_batch, "clients": a.clients,
           "cpu_count": os.cpu_count(), "rounds": [{"single": s_, "load": l_} for s_, l_ in rounds],
           "median": summary, "throughput_ratios": ratios, "throughput_ratio_median": ratio}
    print(f"medians of {a.rounds} rounds:")
    for name, r in (("1 client", summary["single"]), (f"{a.clients} clients", summary["load"])):
        p50, p95 = r["ttft_p50_s"] * 1000, r["ttft_p95_s"] * 1000
        print(f"{name:>11}: {r['requests']} requests, {r['errors']} errors, {r['tokens_per_s']:,.0f} tokens/s "
              f"aggregate, time to first token p50 {p50:.0f} ms / p95 {p95:.0f} ms")
    print(f"throughput ratio ({a.clients} clients / 1 client): {ratio:.1f}x median of "
          f"{', '.join(f'{x:.1f}' for x in ratios)}  (target >= 3x)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""Load test: `lmstack serve` with its defaults against llama.cpp's server with its defaults, on the
same GGUF file, over HTTP on loopback, with the official `openai` client.

Both servers run as subprocesses with nothing but the model given (llama.cpp's through the
`xllamacpp` wheel, which includes its server). For --rounds rounds, each server in turn gets
  1. one stream: --single-requests streamed chat completions one after another;
  2. --streams concurrent streams (default 8), one request each;
  3. lmstack only: --burst concurrent requests (default 32), for memory: its resident set size.
Every request asks for --max-tokens tokens (a prompt that asks for a long story, so replies run to
the limit; tokens are counted from the usage the servers report). Figures are aggregate generated
tokens/s (tokens / wall time of the phase) and time to first token, medians over the rounds; the
ratios are lmstack / llama.cpp. Each server's RSS is sampled from /proc/PID/status every 20 ms:
idle (after warm-up), the peak of each phase, and after the burst has ended (once it settles).
Linux only (/proc). Nothing leaves 127.0.0.1.

    python bench/serve_load.py [--model smollm2-135m-instruct] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

MESSAGES = [{"role": "user", "content": "Write a long story about a king who goes to war in France."}]
LLAMA_SERVER = """
import sys, xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]
p.verbosity = 1  # errors only; everything else is llama.cpp's default
s = xllamacpp.Server(p)
print(s.listening_address, flush=True)
sys.stdin.read()  # serve until the bench closes stdin
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


class Sampler:
    """The peak RSS of a process since the last reset(), sampled every 20 ms in a thread."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, StopIteration):
                return

    def reset(self) -> None:
        self.peak = rss(self.pid)

    def settled(self, timeout: float = 5.0) -> int:
        """RSS once it stops falling (memory handed back after requests end), at most `timeout` s."""
        last, deadline = rss(self.pid), time.time() + timeout
        while time.time() < deadline:
            time.sleep(0.25)
            now = rss(self.pid)
            if now >= last:
                return now
            last = now
        return last

    def stop(self) -> None:
        self._stop.set()


class ServerProc:
    def __init__(self, name: str, cmd: list[str], url: str | None = None):
        """`url`, or else the first line the server prints; its log goes to a file (a pipe nobody
        reads would block the server once full)."""
        self.name, self.log = name, tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE if url is None else self.log,
                                     stderr=self.log, text=True)
        self.url = url or self.proc.stdout.readline().strip()
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="none", max_retries=0, timeout=600)
        self._wait_ready()
        self.rss = Sampler(self.proc.pid)

    def _wait_ready(self) -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"{self.name} exited: {self.log.read()[-2000:]}")
            try:
                self.client.models.list()
                return
            except openai.APIError:
                time.sleep(0.5)
        raise SystemExit(f"{self.name} did not come up in 300 s")

    def close(self) -> None:
        self.rss.stop()
        self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def one_request(server: ServerProc, max_tokens: int, seed: int) -> dict:
    t0 = time.perf_counter()
    ttft, tokens, chunks = None, None, 0
    stream = server.client.chat.completions.create(
        model="bench", messages=MESSAGES, max_tokens=max_tokens, temperature=0.8, seed=seed, stream=True,
        stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            ttft = ttft if ttft is not None else time.perf_counter() - t0
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return {"ttft": ttft if ttft is not None else float("nan"), "tokens": tokens if tokens is not None else chunks}


def phase(server: ServerProc, clients: int, per_client: int, max_tokens: int) -> dict:
    results, errors, lock = [], [], threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        start.wait()
        for i in range(per_client):
            try:
                r = one_request(server, max_tokens, seed=c * 1000 + i)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    server.rss.reset()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    return {"clients": clients, "requests": len(results) + len(errors), "errors": len(errors),
            "error_samples": errors[:3], "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "ttft_p50_s": statistics.median(r["ttft"] for r in results) if results else float("nan"),
            "peak_rss_mb": server.rss.peak / 2**20}


def start_servers(model: str, names: list[str], lmstack_args: list[str]) -> dict[str, ServerProc]:
    servers = {}
    if "lmstack" in names:
        port = free_port()
        servers["lmstack"] = ServerProc("lmstack", [sys.executable, "-m", "lmstack", "serve", "--model",
                                                    f"bench={model}", "--port", str(port), *lmstack_args],
                                        f"http://127.0.0.1:{port}")
    if "llama.cpp" in names:
        servers["llama.cpp"] = ServerProc("llama.cpp", [sys.executable, "-c", LLAMA_SERVER, model])
    return servers


def run_round(servers: dict[str, ServerProc], a) -> dict:
    out = {}
    for name, s in servers.items():
        r = {}
        if a.single_requests:
            r["single"] = phase(s, 1, a.single_requests, a.max_tokens)
        if a.streams:
            r["streams"] = phase(s, a.streams, 1, a.max_tokens)
        if a.burst and name == "lmstack":  # the memory target is lmstack's; llama.cpp's RSS shows above
            idle = s.rss.settled()
            r["burst"] = phase(s, a.burst, 1, a.max_tokens) | {"idle_rss_mb": idle / 2**20,
                                                               "after_rss_mb": s.rss.settled() / 2**20}
        out[name] = r
        print(f"  {name}: " + ", ".join(f"{k} {v['tokens_per_s']:.1f} tok/s (peak {v['peak_rss_mb']:.0f} MB)"
                                        for k, v in r.items()), flush=True)
    return out


def summarise(rounds: list[dict], names: list[str]) -> dict:
    med = lambda name, ph, key: statistics.median(r[name][ph][key] for r in rounds)
    summary = {name: {ph: {k: med(name, ph, k) for k in ("tokens_per_s", "ttft_p50_s", "peak_rss_mb")}
                      for ph in rounds[0][name]} for name in names}
    for name in names:
        if "burst" in rounds[0][name]:
            summary[name]["burst"] |= {k: med(name, "burst", k) for k in ("idle_rss_mb", "after_rss_mb")}
        summary[name]["errors"] = sum(ph["errors"] for r in rounds for ph in r[name].values())
    if len(names) == 2:
        summary["ratio"] = {ph: statistics.median(r["lmstack"][ph]["tokens_per_s"] / r["llama.cpp"][ph]["tokens_per_s"]
                                                  for r in rounds) for ph in rounds[0]["llama.cpp"]}
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a GGUF file or a model name")
    ap.add_argument("--servers", default="lmstack,llama.cpp")
    ap.add_argument("--lmstack-args", default="", help="extra flags for lmstack serve (default: none)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--single-requests", type=int, default=3)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--burst", type=int, default=32, help="concurrent requests of the memory phase (0: none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    from lmstack.io.models import resolve_model

    model, names = str(resolve_model(a.model)), a.servers.split(",")
    servers = start_servers(model, names, a.lmstack_args.split())
    rounds = []
    try:
        for s in servers.values():
            one_request(s, 8, 0)  # warm up
        for i in range(a.rounds):  # interleaved: every server sees the same background load
            print(f"round {i + 1}/{a.rounds}", flush=True)
            rounds.append(run_round(servers, a))
        peaks = {name: rss(s.proc.pid, "VmHWM") / 2**20 for name, s in servers.items()}
    finally:
        for s in servers.values():
            s.close()
    summary = summarise(rounds, names)
    for name in names:
        summary[name]["peak_rss_mb_whole_run"] = peaks[name]
    out = {"model": model, "max_tokens": a.max_tokens, "streams": a.streams, "burst": a.burst,
           "lmstack_args": a.lmstack_args, "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
           "rounds": rounds, "median": summary}
    print(json.dumps(summary, indent=1))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

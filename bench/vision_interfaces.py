"""A trained vision run through every interface: the same held-out questions asked through the engine,
the OpenAI API (images as PNG data URLs, the official client) and the numpy run file, each answer
compared with the model's own forward pass without a KV cache (`ask(..., reference=True)`); and the
server's image requests decoded in one batch with text requests (the mean batch of decode steps).

    python bench/vision_interfaces.py runs/vlm --json docs/results/vision/interfaces.json

Timings are wall-clock on whatever machine runs it; the agreement does not depend on load.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from lmstack import run as runfile
from lmstack.io.files import write_json
from lmstack.serve import create_app
from lmstack.serve.app import ModelEntry
from lmstack.vision.ask import ask
from lmstack.vision.pair import export_pair
from lmstack.vision.serving import open_vision
from lmstack.vision.train import run_data


def png_url(img) -> str:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@contextlib.contextmanager
def serving(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        t.join()


def held_out(run: Path, vision, per_type: int) -> list[tuple]:
    info = json.loads((run / "run.json").read_text())
    data = run_data(info, vision.vlm.config.vision.image_size)
    by_type: dict[str, list] = {}
    for s in data.val:
        for kind, q, _ in s.qa:
            if len(by_type.setdefault(kind, [])) < per_type:
                by_type[kind].append((s.image, q, kind))
    return [it for items in by_type.values() for it in items]


def through_server(vision, items, max_new: int, workers: int) -> tuple[list[str], dict]:
    import openai

    text_q = [q for _, q, _ in items]
    with serving(create_app([ModelEntry("vlm", vision.engine, vision=vision)])) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)

        def one(item):
            img, q, _ = item
            content = [{"type": "image_url", "image_url": {"url": png_url(img)}}, {"type": "text", "text": q}]
            r = client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": content}],
                                               max_tokens=max_new, temperature=0)
            return r.choices[0].message.content.strip()

        def text(q):  # a text request, to be batched with the image ones
            client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": q}],
                                           max_tokens=max_new, temperature=0, stop=[])

        t0 = time.perf_counter()
        sequential = [one(it) for it in items[:20]]
        seq_s = (time.perf_counter() - t0) / len(sequential)
        steps: list[int] = []  # requests advanced by each decode step
        vision.engine.on_step = lambda ids: steps.append(len(ids))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            texts = [pool.submit(text, q) for q in text_q[: len(items) // 2]]
            answers = list(pool.map(one, items))
            for f in texts:
                f.result()
        wall = time.perf_counter() - t0
        vision.engine.on_step = None
    assert sequential == answers[:len(sequential)]
    return answers, {"image_requests": len(items), "text_requests": len(items) // 2, "clients": workers,
                     "sequential_seconds_per_image_request": round(seq_s, 4),
                     "concurrent_wall_seconds": round(wall, 2), "decode_steps": len(steps),
                     "mean_batch": round(sum(steps) / max(1, len(steps)), 2), "max_batch": max(steps, default=0)}


def through_run_file(model: Path, items) -> list[str]:
    out = []
    for img, q, _ in items:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / "lmstack-bench-image.png"
        Image.fromarray(img).save(path)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            if runfile.main([str(model), q, "--image", str(path), "--temperature", "0", "-n", "12"]) != 0:
                raise SystemExit(f"the run file failed on {q!r}")
        out.append(buf.getvalue().strip())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="runs/vlm")
    ap.add_argument("--json", default="docs/results/vision/interfaces.json")
    ap.add_argument("--per-type", type=int, default=20)
    ap.add_argument("--run-file-per-type", type=int, default=5)
    ap.add_argument("--clients", type=int, default=16)
    a = ap.parse_args()
    run = Path(a.run)
    model, _ = export_pair(run)
    vision = open_vision(run, max_batch=32)
    items = held_out(run, vision, a.per_type)
    vlm, tok = vision.vlm, vision.tokenizer
    t0 = time.perf_counter()
    reference = ask(vlm, tok, [i for i, _, _ in items], [q for _, q, _ in items], 12, reference=True)
    ref_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine = ask(vlm, tok, [i for i, _, _ in items], [q for _, q, _ in items], 12)
    eng_s = time.perf_counter() - t0
    server, batching = through_server(vision, items, 12, a.clients)
    picked = [i for i, it in enumerate(items) if sum(x[2] == it[2] for x in items[:i]) < a.run_file_per_type]
    run_file = through_run_file(model, [items[i] for i in picked])
    vision.close()

    def agree(got, idx=None):
        idx = range(len(items)) if idx is None else idx
        return {"n": len(idx), "equal": sum(g == reference[i] for g, i in zip(got, idx, strict=True))}

    result = {"run": str(run), "questions": len(items), "kinds": sorted({k for _, _, k in items}),
              "max_new_tokens": 12, "load_average": os.getloadavg(),
              "agreement_with_reference": {"engine": agree(engine), "server": agree(server),
                                           "run_file": agree(run_file, picked)},
              "seconds": {"reference_no_kv_cache": round(ref_s, 2), "engine": round(eng_s, 2)},
              "server_batching": batching,
              "examples": [{"question": items[i][1], "answer": server[i]} for i in range(0, len(items), 20)]}
    write_json(a.json, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""A trained vision run against llama.cpp: greedy agreement on held-out image questions, image tokens
per image, and what an image costs to prefill against text of the same length.

    python bench/vision_llamacpp.py runs/vlm --out docs/results/vision/llamacpp.json

Exports model.gguf + mmproj.gguf into the run if they are missing. Agreement compares greedy token
ids (those llama.cpp reports: whole UTF-8 text) over every held-out question of each type, up to
--per-type; prefill is the median of --repeats timed forwards, in the same process, for lmstack (image
encoder + prompt) and for llama.cpp (its own prompt_ms). Figures measured on a shared machine say so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from lmstack.vision.ask import ask_ids, image_inputs, prompt_ids
from lmstack.vision.llamacpp import LlamaCppVision, png_data_url
from lmstack.vision.pair import export_pair, load_pair
from lmstack.vision.train import run_data
from lmstack.vision.vlm import image_layout


def whole(tok, ids):
    return [t for t in ids if "\ufffd" not in tok.decode([t]) and t not in tok.stop_ids]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", default="docs/results/vision/llamacpp.json")
    ap.add_argument("--per-type", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = Path(a.run)
    if not (run / "mmproj.gguf").exists():
        export_pair(run)
    vlm, tok = load_pair(run / "model.gguf", run / "mmproj.gguf")
    info = json.loads((run / "run.json").read_text())
    data = run_data(info, vlm.config.vision.image_size)
    by_type: dict[str, list] = {}
    for s in data.val:
        for kind, q, _ in s.qa:
            if len(by_type.setdefault(kind, [])) < a.per_type:
                by_type[kind].append((s.image, q))
    cpp = LlamaCppVision(run / "model.gguf", run / "mmproj.gguf", n_ctx=vlm.config.lm.max_seq_len, threads=a.threads)
    agreement, n_all, agree_all = {}, 0, 0
    for kind, items in by_type.items():
        ours = ask_ids(vlm, tok, [i for i, _ in items], [q for _, q in items], 12)
        same = sum(whole(tok, cpp.ask(img, q, 12)[1]) == whole(tok, mine)
                   for (img, q), mine in zip(items, ours, strict=True))
        agreement[kind] = {"n": len(items), "agree": same / len(items)}
        n_all, agree_all = n_all + len(items), agree_all + same

    img, q = by_type["shape"][0] if "shape" in by_type else next(iter(by_type.values()))[0]
    ids = torch.tensor([prompt_ids(tok, vlm, q, [(1, 1)])])
    text_ids = torch.tensor([tok.encode("the " * (ids.shape[1] - 1))[: ids.shape[1]]])

    def timed(fn):
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    with torch.no_grad():
        encode_ms = timed(lambda: image_inputs(vlm, img))
        image_ms = timed(lambda: vlm.lm(ids, embeds=vlm.embed(ids, image_inputs(vlm, img)[0][None])))
        text_ms = timed(lambda: vlm.lm(text_ids))
    content = [{"type": "image_url", "image_url": {"url": png_data_url(img)}}, {"type": "text", "text": "\n" + q}]
    cpp_ms = []
    for _ in range(a.repeats):
        r = cpp.server.handle_chat_completions({"messages": [{"role": "user", "content": content}], "max_tokens": 1,
                                                "temperature": 0, "cache_prompt": False})
        cpp_ms.append(r.get("timings", {}).get("prompt_ms", float("nan")))
    out = {
        "run": str(run), "agreement": agree_all / n_all, "questions": n_all, "by_type": agreement,
        "image_tokens_per_image": 2 * vlm.config.vision.tokens_per_view,
        "layout_tokens_per_image": len(image_layout(tok, 1, 1, vlm.config.vision.tokens_per_view)),
        "prompt_tokens": int(ids.shape[1]),
        "lmstack_ms": {"image_encoder": encode_ms, "prefill_with_image": image_ms,
                       "prefill_text_same_length": text_ms},
        "llamacpp_prompt_ms_with_image": statistics.median(cpp_ms),
        "threads": a.threads, "load_average": os.getloadavg()[0],
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""lmstack eval RUN --vision: held-out accuracy per question type, against blind baselines.

Every held-out image's questions are asked three ways: with the image, with a blank (black) image
of the same size, and with no image at all. The blind rows show what the language model guesses
from the question alone, so the gap is what the image contributes. Captions are scored by exact
match. Results go to eval_vision.json in the run directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lmstack.io.files import write_json
from lmstack.vision.ask import ask
from lmstack.vision.data import CAPTION_PROMPT
from lmstack.vision.train import load_vlm, run_data


def evaluate_vlm(run_dir: str | Path, limit: int = 0, progress: bool = True) -> dict:
    vlm, tok, info = load_vlm(run_dir)
    data = run_data(info, vlm.config.vision.image_size)
    val = data.val if not limit else data.val[::max(1, len(data.val) // limit)]
    items = [(s.image, q, a, kind) for s in val for kind, q, a in s.qa]
    items += [(s.image, CAPTION_PROMPT, s.caption, "caption") for s in val]
    blank = np.zeros_like(val[0].image)
    t0 = time.perf_counter()
    got = {
        "image": ask(vlm, tok, [it[0] for it in items], [it[1] for it in items]),
        "blank image": ask(vlm, tok, [blank] * len(items), [it[1] for it in items]),
        "no image": ask(vlm, tok, [None] * len(items), [it[1] for it in items]),
    }
    seconds = time.perf_counter() - t0
    table = {}
    for k in sorted({it[3] for it in items}):
        groups = {k: [i for i, it in enumerate(items) if it[3] == k]}
        if k == "text":  # reading a word and reading a number are learnt apart: show both
            groups |= {f"text:{w}": [i for i in groups[k] if items[i][2].isdigit() == (w == "number")]
                       for w in ("word", "number")}
        for name, idx in groups.items():
            if not idx:
                continue
            table[name] = {"n": len(idx), **{m: float(np.mean([got[m][i] == items[i][2] for i in idx]))
                                             for m in got}}
    out = {"run": str(run_dir), "held_out_images": len(val), "questions": len(items), "accuracy": table,
           "seconds": seconds, "examples": [{"question": items[i][1], "answer": items[i][2], "got": got["image"][i]}
                                            for i in range(0, len(items), max(1, len(items) // 12))]}
    write_json(Path(run_dir) / "eval_vision.json", out)
    if progress:
        print(format_table(table))
    return out


def format_table(table: dict) -> str:
    lines = [f"{'question':<12} {'n':>5} {'image':>7} {'blank':>7} {'none':>7}"]
    for k, r in table.items():
        lines.append(f"{k:<12} {r['n']:>5} {r['image']:>7.1%} {r['blank image']:>7.1%} {r['no image']:>7.1%}")
    return "\n".join(lines)

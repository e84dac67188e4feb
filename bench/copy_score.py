"""Can a model copy from its context? The induction test: a random sequence of tokens, then the same
sequence again. A model that copies predicts the second occurrence almost perfectly; one that does not
scores it no better than the first. Reports, per run, the mean loss in bits per token on the first and
the second occurrence, and the second's top-1 accuracy.

    python bench/copy_score.py runs/speedrun runs/other [--length 32] [--n 64] [--json out.json]
    python bench/copy_score.py --control 6000 --control-lr 3e-3 1e-3   # fresh models on repeats only

Every tool call copies a span of its context (the question's numbers into the calculator, a quoted line
into a search query, the result into the answer), so this is the skill the speedrun assistant's tool
use stands on (docs/tools.md). The control asks whether the architecture itself can learn it, and
after how many steps: the same 4-layer, 1M-parameter model trained on nothing but repeated random
sequences.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstack.evaluate import evaluate_model  # noqa: E402
from lmstack.load import load_model  # noqa: E402
from lmstack.model import Transformer, preset  # noqa: E402


def repeats(pool: torch.Tensor, n: int, length: int, g: torch.Generator) -> torch.Tensor:
    seq = pool[torch.randint(len(pool), (n, length), generator=g)]
    return torch.cat([seq, seq], dim=1)


def score(model: torch.nn.Module, x: torch.Tensor, length: int) -> dict:
    with torch.no_grad():
        logits = model(x[:, :-1])
        logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, x[:, 1:, None])[..., 0] / math.log(2)  # bits, for targets 1 .. 2L-1
    first, second = nll[:, : length - 1], nll[:, length:]  # second: targets L+1 .. 2L-1 (after one token of it)
    hit = (logits[:, length:].argmax(-1) == x[:, length + 1 :]).float()
    return {"first_bits": first.mean().item(), "second_bits": second.mean().item(),
            "second_top1": hit.mean().item()}


def copy_score(run: str, length: int, n: int, seed: int = 0) -> dict:
    """The induction test on a run, beside what copy rows cost its text: bits per byte on every
    held-out token (as `lmstack eval` reports it)."""
    model, tok, info = load_model(run)
    model.eval()
    special = set(tok.special_ids)
    pool = torch.tensor([i for i in range(tok.vocab_size) if i not in special])
    x = repeats(pool, n, length, torch.Generator().manual_seed(seed))
    data = info.get("data", {})
    val_bpb = evaluate_model(model, tok, info["data_dir"])["val_bpb"] if "data_dir" in info else None
    return {"run": run, "copy_fraction": data.get("copy_fraction", 0.0), "steps": info.get("train", {}).get("steps"),
            "val_bpb": val_bpb, "length": length, "n": n, **score(model, x, length)}


def control(steps: int, length: int, n: int, lr: float = 3e-3, vocab: int = 2048, seed: int = 0) -> dict:
    """The speedrun's model shape (`micro`, 2,048 tokens, context 256) trained from scratch on repeated
    random sequences only, batch 16, AdamW (the speedrun's learning rate by default). Each batch draws
    its own length (16 to 96): at one fixed length a head that looks back that many positions
    predicts the repeat, which is not copying by content. The test is scored every 500 steps, so a
    phase change shows where it happens."""
    torch.manual_seed(seed)
    model = Transformer(preset("micro", vocab_size=vocab, max_seq_len=256))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g, pool, t0 = torch.Generator().manual_seed(seed + 1), torch.arange(vocab), time.perf_counter()
    test, curve = repeats(pool, n, length, torch.Generator().manual_seed(seed)), []
    for step in range(1, steps + 1):
        x = repeats(pool, 16, int(torch.randint(16, 97, (), generator=g)), g)
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == steps:
            model.eval()
            curve.append({"step": step, **score(model, test, length)})
            model.train()
    return {"run": f"control, {steps} steps on repeats, lr {lr:g}", "length": length, "n": n, "lr": lr,
            "train_seconds": time.perf_counter() - t0, **curve[-1], "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--control", type=int, default=0, metavar="STEPS",
                    help="also train a fresh speedrun-sized model on repeats only for STEPS steps")
    ap.add_argument("--control-lr", type=float, nargs="+", default=[3e-3], metavar="LR",
                    help="the control's learning rate(s); one control per rate")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not a.runs and not a.control:
        ap.error("give at least one run directory or --control STEPS")
    rows = [copy_score(r, a.length, a.n) for r in a.runs]
    if a.control:
        rows += [control(a.control, a.length, a.n, lr) for lr in a.control_lr]
    print(f"{'run':40s} {'val bpb':>8s} {'1st bits/tok':>12s} {'2nd bits/tok':>12s} {'2nd top-1':>10s}")
    for r in rows:
        bpb = f"{r['val_bpb']:8.3f}" if r.get("val_bpb") is not None else f"{'-':>8s}"
        print(f"{r['run']:40s} {bpb} {r['first_bits']:12.2f} {r['second_bits']:12.2f} {r['second_top1']:10.1%}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

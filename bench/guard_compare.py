"""Which guard: the from-scratch hashed n-gram model (security/guard.py), a logistic-regression head
on SmolLM2-135M's mean-pooled hidden states, or both at once (flagged when either flags)? Each is
measured on the generated held-out set (templates and topics neither trained on) and on
bench/guard_ood.jsonl, 80 hand-written realistic prompts and documents in wording of their own; each
gets its threshold from the same held-out benign calibration draw at 1% false positives.

    nice -n 10 python bench/guard_compare.py     # -> docs/results/security/guard.{json,md}

The SmolLM2 head sees fewer training examples (its features cost a forward pass each on the CPU;
--head-train sets how many), and reads layer --layer of 30 (middle layers classify at least as well
as the last for half the compute).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lmstack.io.files import atomic_write, read_jsonl, write_json
from lmstack.security import guard_data
from lmstack.security.guard import Guard, GuardConfig, measure

OOD = Path(__file__).with_name("guard_ood.jsonl")


def ood_set() -> tuple[list[str], np.ndarray]:
    rows = [r for _, r in read_jsonl(OOD)]
    return [r["text"] for r in rows], np.array([r["label"] != "benign" for r in rows])


def split(examples) -> tuple[list[str], np.ndarray]:
    return [e.text for e in examples], np.array([e.label != "benign" for e in examples])


def latency_ms(fn, texts: list[str], n: int = 50) -> float:
    times = []
    for t in texts[:n]:
        t0 = time.perf_counter()
        fn([t])
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


class SmolHead:
    """Mean-pooled hidden states of one SmolLM2 layer -> standardised -> logistic regression."""

    def __init__(self, layer: int, max_tokens: int = 64):
        from lmstack.io.models import resolve_model
        from lmstack.load import load_model

        self.model, self.tok, _ = load_model(resolve_model("smollm2-135m-instruct"))
        self.model.eval()
        self.layer, self.max_tokens = layer, max_tokens

    @torch.no_grad()
    def features(self, texts: list[str], batch: int = 16) -> np.ndarray:
        out = []
        m = self.model
        for i in range(0, len(texts), batch):
            ids = [self.tok.encode(t)[: self.max_tokens] or [self.tok.end_of_text_id] for t in texts[i : i + batch]]
            T = max(map(len, ids))
            idx = torch.tensor([x + [0] * (T - len(x)) for x in ids])  # right padding: causal, so harmless
            mask = torch.tensor([[1.0] * len(x) + [0.0] * (T - len(x)) for x in ids])[..., None]  # (B, T, 1)
            x = m.tok_embeddings(idx)  # (B, T, dim)
            for layer in m.layers[: self.layer]:
                x = layer(x, m.rope_cos[:T], m.rope_sin[:T])
            out.append(((x * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)

    def fit(self, texts: list[str], labels: list[str]) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        self.clf.fit(self.features(texts), [guard_data.LABELS.index(y) for y in labels])

    def scores(self, texts: list[str]) -> np.ndarray:
        return 1 - self.clf.predict_proba(self.features(texts))[:, 0]


def threshold_for(benign_scores: np.ndarray, fpr: float) -> float:
    s = np.sort(benign_scores)
    return float(s[min(len(s) - 1, int(np.ceil(len(s) * (1 - fpr))))] + 1e-6)


def main() -> None:
    p = argparse.ArgumentParser(description="guard: from-scratch n-grams vs a head on SmolLM2 features")
    p.add_argument("--held-out", type=int, default=1000)
    p.add_argument("--head-train", type=int, default=1200)
    p.add_argument("--calibrate", type=int, default=800, help="held-out calibration draw (half of it benign)")
    p.add_argument("--layer", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="docs/results/security")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    held_t, held_y = split(guard_data.generate(a.held_out, held_out=True, seed=0))
    ood_t, ood_y = ood_set()
    cal = [e.text for e in guard_data.generate(a.calibrate, held_out=True, seed=1) if e.label == "benign"]
    results = {}

    t0 = time.perf_counter()
    guard = Guard.load(GuardConfig(), quiet=False)
    scratch = lambda texts: 1 - guard.scores(texts)[:, 0]
    results["scratch"] = {"params": guard.cfg.params(), "load_or_train_seconds": round(time.perf_counter() - t0, 1),
                          "train_examples": guard.cfg.n_train, "threshold": guard.threshold}

    t0 = time.perf_counter()
    head = SmolHead(a.layer)
    train = guard_data.generate(a.head_train, held_out=False, seed=0)
    head.fit([e.text for e in train], [e.label for e in train])
    results["smollm2_head"] = {"params": 3 * (head.model.config.dim + 1), "frozen_params": head.model.num_params(),
                               "layer": a.layer, "train_examples": a.head_train,
                               "train_seconds": round(time.perf_counter() - t0, 1),
                               "threshold": threshold_for(head.scores(cal), 0.01)}

    # both: each score over its own 1% threshold, the larger of the two, flagged at >= 1 (so flagged
    # when either guard flags); both_calibrated: the same score with its own threshold at 1% of the calibration draw
    ts, th = results["scratch"]["threshold"], results["smollm2_head"]["threshold"]
    both = lambda texts: np.maximum(scratch(texts) / ts, head.scores(texts) / th)
    params = results["scratch"]["params"] + results["smollm2_head"]["params"]
    results["both"] = {"params": params, "threshold": 1.0}
    results["both_calibrated"] = {"params": params, "threshold": threshold_for(both(cal), 0.01)}
    for name, fn in (("scratch", scratch), ("smollm2_head", head.scores), ("both", both), ("both_calibrated", both)):
        r = results[name]
        r["held_out"] = measure(fn(held_t), held_y, r["threshold"])
        r["ood"] = measure(fn(ood_t), ood_y, r["threshold"])
        r["latency_ms"] = round(latency_ms(fn, ood_t), 2)
        print(name, r, flush=True)
    out = Path(a.out)
    write_json(out / "guard.json", {"held_out_examples": len(held_t), "ood_examples": len(ood_t),
                                    "calibration_benign": len(cal), **results})
    atomic_write(out / "guard.md", markdown(results, len(held_t), len(ood_t)))


def markdown(results: dict, n_held: int, n_ood: int) -> str:
    lines = ["| guard | trained params | set | ROC AUC | recall at 1% FPR | at its threshold: recall | FPR | latency |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for which, n in (("held_out", n_held), ("ood", n_ood)):
            m = r[which]
            lines.append(f"| {name} | {r['params']:,} | {which} ({n}) | {m['roc_auc']:.3f} | "
                         f"{m['recall_at_fpr']:.1%} | {m['recall']:.1%} | {m['fpr']:.1%} | "
                         f"{r['latency_ms']:.1f} ms |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

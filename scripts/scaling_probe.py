"""The probes behind the sweep's batch-size rule and learning rate (docs/scaling.md, "Batch size").

A fixed batch that suits the largest budget starves the smallest ones of optimizer steps, and the
models it hurts most are the large ones at small budgets: exactly the points that decide where an
IsoFLOP curve bottoms out. So the batch is tuned at two budgets, on the size nearest each budget's
optimum, and the rule B ~ C^(1/3) is checked against the two optima. Each probe is one sweep point
(same family, data, schedule and seed as the sweep) in its own directory, so a rerun skips finished
probes and the figures are reproducible to the last digit.

    python scripts/scaling_probe.py            # ~20 min on one core; writes docs/results/scaling/probe.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from lmstack.scaling.sweep import SweepConfig, run_sweep

# (budget, family index, sequences per step, learning rate)
PROBES = ([(6e11, 1, b, 3e-3) for b in (2, 4, 8, 16)]
          + [(5e12, 3, b, 3e-3) for b in (2, 4, 8, 16)]
          + [(5e12, 3, b, lr) for b in (4, 8) for lr in (1.5e-3, 6e-3)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs/scaling/probe")
    ap.add_argument("--out", default="docs/results/scaling/probe.csv")
    a = ap.parse_args()
    rows = []
    for budget, k, batch, lr in PROBES:
        cfg = SweepConfig(out_dir=f"{a.root}/C{budget:.0e}_k{k}_b{batch}_lr{lr:g}", budgets=[budget], sizes=[k],
                          batch_size=batch, batch_exponent=0, lr=lr, threads=1)
        (r,) = run_sweep(cfg, progress=False, log=lambda *_: None)
        rows.append({"budget": budget, "k": k, "params": r["params"], "batch_size": batch, "lr": lr,
                     "steps": r["steps"], "val_loss": round(r["val_loss"], 4)})
        print(f"C={budget:.1e} k={k} batch {batch:2d} lr {lr:g}: {r['steps']:6d} steps, val loss {r['val_loss']:.4f}",
              flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

"""The IsoFLOP sweep: for each compute budget, several sizes of one shape family, each trained for
exactly the tokens the budget buys, with a learning-rate schedule that ends there.

Every point lives in its own directory under <out>/points/ and goes through the one training loop
(`lmstack.train.loop.train`), so a point interrupted mid-run resumes from its checkpoint, exactly.
A finished point has a result.json and is skipped when the sweep is run again; results.csv is
rebuilt from those files after every point. The loss of a point depends only on its settings (fixed
tokens, fixed seed), never on how fast the machine is, so a busy machine only makes the sweep slower.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lmstack.errors import LmstackError
from lmstack.evaluate import evaluate_model
from lmstack.io.files import atomic_open, write_json
from lmstack.io.shards import Batches
from lmstack.model import Transformer
from lmstack.pretrain import DataConfig, prepare_data
from lmstack.scaling.family import Member, ladder, member, model_config, nearest
from lmstack.train.loop import TrainConfig, train

# Sized for two CPU cores: eight budgets doubling from 3e11 to 4e13, five sizes each (docs/scaling.md).
DEFAULT_BUDGETS = (3e11, 6e11, 1.2e12, 2.5e12, 5e12, 1e13, 2e13, 4e13)

CSV_COLUMNS = ["budget", "k", "n_layers", "dim", "params", "params_non_embedding", "flops_per_token", "steps",
               "batch_size", "tokens", "flops", "tokens_per_param", "val_loss", "val_bpb", "train_loss",
               "train_seconds", "eval_seconds", "seed"]


@dataclass
class SweepConfig:
    out_dir: str = "runs/scaling/default"
    budgets: list[float] = field(default_factory=lambda: list(DEFAULT_BUDGETS))
    sizes: list[int] | None = None  # family indices for every budget; None = auto per budget
    n_sizes: int = 5  # auto: this many consecutive members around the expected optimum
    tokens_per_param: float = 20.0  # auto: where to centre them (C = 6ND, D = 20N, as in Chinchilla)
    extend_edges: int = 2  # auto: add up to this many sizes beyond an edge that holds the lowest loss
    data: DataConfig = field(default_factory=lambda: DataConfig("shakespeare", vocab_size=512))
    seq_len: int = 128
    # The batch grows with the budget, B ~ C^(1/3): small budgets need many small steps, larger ones (lower
    # loss, larger critical batch) use larger batches well. DeepSeek LLM fitted B_opt ~ C^0.327; probes on
    # this sweep's own data agree (docs/scaling.md). batch_exponent 0 gives every budget one batch size.
    batch_size: int = 8  # sequences per step at batch_budget
    batch_budget: float = 5e12
    batch_exponent: float = 1 / 3
    lr: float = 3e-3
    warmup_frac: float = 0.05
    min_steps: int = 20
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default

    def batch_for(self, budget: float) -> int:
        """Sequences per optimizer step for every run of this budget."""
        return max(1, round(self.batch_size * (budget / self.batch_budget) ** self.batch_exponent))

    def tokens_per_step(self, budget: float) -> int:
        return self.seq_len * self.batch_for(budget)


# Settings whose change would make old points incomparable with new ones.
_FIXED = ("data", "seq_len", "batch_size", "batch_budget", "batch_exponent", "lr", "warmup_frac", "seed")
MAX_K = 200  # family member 200: 101 layers x 3,232 wide, ~13B parameters
# Evaluation reads every held-out token whatever the batch, so one batch size serves every budget.
EVAL_BATCH = 16


def point_name(budget: float, k: int) -> str:
    return f"C{budget:.2e}_k{k:02d}".replace("+", "")


def steps_for(budget: float, m: Member, cfg: SweepConfig) -> int:
    """Optimizer steps whose tokens cost `budget` FLOPs for member m (rounded to whole steps)."""
    return max(1, round(budget / m.flops_per_token / cfg.tokens_per_step(budget)))


def auto_sizes(budget: float, members: list[Member], cfg: SweepConfig) -> list[int]:
    """n_sizes consecutive members centred on sqrt(C / (6 * tokens_per_param)) total parameters."""
    centre = nearest(members, math.sqrt(budget / (6 * cfg.tokens_per_param))).k
    lo = max(0, centre - (cfg.n_sizes - 1) // 2)
    ks = [k for k in range(lo, lo + cfg.n_sizes) if k < len(members)]
    return [k for k in ks if steps_for(budget, members[k], cfg) >= cfg.min_steps]


def _check_compatible(out: Path, cfg: SweepConfig) -> None:
    """A sweep directory keeps one set of training settings; budgets and sizes may grow."""
    path = out / "sweep.json"
    if path.exists():
        saved = json.loads(path.read_text())
        now = asdict(cfg)
        diff = [k for k in _FIXED if saved.get(k) != now.get(k)]
        if diff:
            raise LmstackError(f"{out} was swept with other settings ({', '.join(diff)}): use another --out")
    out.mkdir(parents=True, exist_ok=True)


def run_point(budget: float, m: Member, cfg: SweepConfig, tok, data_dir: Path, out: Path,
              progress: bool = True) -> dict:
    """Train and evaluate one point; resume it when a checkpoint is there. Returns its result row."""
    pdir = out / "points" / point_name(budget, m.k)
    done = pdir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    steps, batch = steps_for(budget, m, cfg), cfg.batch_for(budget)
    tc = TrainConfig(steps=steps, batch_size=batch, lr=cfg.lr,
                     warmup_steps=max(1, math.ceil(cfg.warmup_frac * steps)), schedule="cosine",
                     eval_every=0, ckpt_every=max(50, steps // 10), log_every=10, seed=cfg.seed,
                     device=cfg.device)
    torch.manual_seed(cfg.seed)
    model = Transformer(model_config(m.k, tok.vocab_size, cfg.seq_len))
    data = Batches(data_dir, cfg.seq_len, batch, seed=cfg.seed)
    resume = (pdir / "ckpt.pt").exists()
    r = train(model, data, tc, pdir, token_bytes=tok.token_byte_lengths(), resume=resume, progress=progress)
    if r.interrupted:
        raise KeyboardInterrupt
    t0 = time.perf_counter()
    ev = evaluate_model(model, tok, data_dir, batch_size=EVAL_BATCH, device=cfg.device)
    tokens = steps * cfg.tokens_per_step(budget)
    row = {"budget": budget, "k": m.k, "n_layers": m.n_layers, "dim": m.dim, "params": m.params,
           "params_non_embedding": m.params_non_embedding, "flops_per_token": m.flops_per_token,
           "steps": steps, "batch_size": batch, "tokens": tokens, "flops": tokens * m.flops_per_token,
           "tokens_per_param": tokens / m.params, "val_loss": ev["val_loss"], "val_bpb": ev["val_bpb"],
           "train_loss": r.final_train_loss, "train_seconds": r.wall_time,
           "eval_seconds": time.perf_counter() - t0, "seed": cfg.seed}
    write_json(done, row)
    return row


def collect(out: str | Path) -> list[dict]:
    """Every finished point of a sweep directory, ordered by budget then size."""
    rows = [json.loads(p.read_text()) for p in Path(out).glob("points/*/result.json")]
    return sorted(rows, key=lambda r: (r["budget"], r["params"]))


def write_csv(rows: list[dict], path: str | Path) -> None:
    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def read_csv(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise LmstackError(f"no sweep results at {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    needed = [c for c in CSV_COLUMNS if c != "batch_size"]  # sweeps before the budget-scaled batch lack it
    if not rows or not set(needed) <= set(rows[0]):
        raise LmstackError(f"{path} is not a sweep results CSV (expected columns {', '.join(needed)})")
    ints = {"k", "n_layers", "dim", "params", "params_non_embedding", "steps", "batch_size", "tokens", "seed"}
    return [{k: (int(float(v)) if k in ints else float(v)) for k, v in r.items() if k in CSV_COLUMNS} for r in rows]


def _lowest_at_edge(rows: list[dict]) -> int:
    """-1 if the smallest size has the lowest loss, +1 if the largest does, else 0."""
    if len(rows) < 2:
        return 0
    rows = sorted(rows, key=lambda r: r["params"])
    best = min(range(len(rows)), key=lambda i: rows[i]["val_loss"])
    return -1 if best == 0 else (1 if best == len(rows) - 1 else 0)


def run_sweep(cfg: SweepConfig, progress: bool = True, log=print) -> list[dict]:
    """Run (or finish) every point of the grid; returns all result rows and writes results.csv."""
    if not cfg.budgets:
        raise LmstackError("scaling run: give at least one compute budget")
    if any(not (b > 0 and math.isfinite(b)) for b in cfg.budgets):
        raise LmstackError(f"compute budgets must be positive numbers of FLOPs, got {cfg.budgets}")
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_sweep(cfg, progress, log)
    finally:
        torch.set_num_threads(threads)


def _run_sweep(cfg: SweepConfig, progress: bool, log) -> list[dict]:
    out = Path(cfg.out_dir)
    _check_compatible(out, cfg)
    tok, data_dir = prepare_data(cfg.data, out, quiet=not progress, reuse=True)
    # How much unique text there is: plans that need many more tokens would repeat it many times.
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    write_json(out / "sweep.json", asdict(cfg) | {"train_tokens": meta["train"]["tokens"]})
    if cfg.sizes and max(cfg.sizes) > MAX_K:
        raise LmstackError(f"family sizes go up to {MAX_K} ({member(MAX_K, tok.vocab_size, cfg.seq_len).params:,} "
                           f"parameters); got {max(cfg.sizes)}")
    # Members up to well past any size auto could pick (and edge extensions reach), plus any named ones.
    members = ladder(tok.vocab_size, cfg.seq_len,
                     max_params=max(1e6, 30 * math.sqrt(max(cfg.budgets) / (6 * cfg.tokens_per_param))))
    members += [member(k, tok.vocab_size, cfg.seq_len) for k in range(len(members), max(cfg.sizes or [0]) + 1)]
    plan = {b: (list(cfg.sizes) if cfg.sizes is not None else auto_sizes(b, members, cfg))
            for b in sorted(cfg.budgets)}
    total = sum(len(ks) for ks in plan.values())
    rows: list[dict] = []
    i = 0
    for b, ks in plan.items():
        brows, queue, extra = [], list(ks), 0
        while queue:
            k = queue.pop(0)
            m = members[k]
            i += 1
            name = point_name(b, k)
            status = "done" if (out / "points" / name / "result.json").exists() else "training"
            log(f"[{i}/{total}] C={b:.2g} k={k} ({m.n_layers} layers x {m.dim}) N={m.params:,} "
                f"D={steps_for(b, m, cfg) * cfg.tokens_per_step(b):,} tokens, batch {cfg.batch_for(b)}: {status}")
            row = run_point(b, m, cfg, tok, data_dir, out, progress)
            log(f"    val loss {row['val_loss']:.4f}, {row['val_bpb']:.4f} bits/byte "
                f"({row['train_seconds'] + row['eval_seconds']:.0f} s)")
            brows.append(row)
            write_csv(collect(out), out / "results.csv")
            if not queue and cfg.sizes is None and extra < cfg.extend_edges:
                edge = _lowest_at_edge(brows)
                ks_done = sorted(r["k"] for r in brows)
                nxt = ks_done[0] - 1 if edge < 0 else ks_done[-1] + 1
                if edge and 0 <= nxt < len(members) and steps_for(b, members[nxt], cfg) >= cfg.min_steps:
                    log(f"    lowest loss at the {'smallest' if edge < 0 else 'largest'} size: adding k={nxt}")
                    queue.append(nxt)
                    extra += 1
                    total += 1
        rows.extend(brows)
    rows = collect(out)
    write_csv(rows, out / "results.csv")
    return rows

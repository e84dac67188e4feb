"""Plan a larger run from a fitted scaling law: compute-optimal N and D for a budget, and the loss to expect.

Two answers, side by side, because they extrapolate differently: the IsoFLOP power laws
N_opt = k C^a, D_opt = k C^b, L_opt = k C^-g (with bootstrap 95% ranges), and the parametric law
L(N, D) = E + A/N^alpha + B/D^beta minimised under C = 6ND, whose loss levels off at E instead of
falling for ever. Far beyond the measured budgets both are guesses; the ranges say how wide.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lmstack.errors import LmstackError
from lmstack.scaling.family import member, nearest
from lmstack.scaling.fit import ParametricFit, PowerLaw

# The fit of the committed Shakespeare sweep (docs/results/scaling/fit.json), shipped inside the package
# so that planning works wherever lmstack is installed; a test keeps the two files identical.
COMMITTED_FIT = Path(__file__).with_name("shakespeare_fit.json")


def find_fit(path: str | Path | None = None, runs_dir: str | Path = "runs/scaling") -> Path:
    """The fit to plan from: the given fit.json (or a directory holding one, or its fit/ folder), else the
    committed Shakespeare fit shipped with the package, else the newest runs/scaling/*/fit/fit.json."""
    if path is not None:
        p = Path(path)
        for cand in (p, p / "fit.json", p / "fit" / "fit.json"):
            if cand.is_file():
                return cand
        raise LmstackError(f"no fit.json at {p} (run `lmstack scaling fit` first)")
    if COMMITTED_FIT.is_file():
        return COMMITTED_FIT
    found = sorted(Path(runs_dir).glob("*/fit/fit.json"), key=lambda q: q.stat().st_mtime)
    if not found:
        raise LmstackError(f"no fit found: none committed at {COMMITTED_FIT} and none under {runs_dir}/*/fit/")
    return found[-1]


def load_fit(path: str | Path) -> dict:
    try:
        fit = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LmstackError(f"cannot read fit {path}: {e}") from None
    if not isinstance(fit, dict) or "isoflop" not in fit or "parametric" not in fit:
        raise LmstackError(f"{path} is not an lmstack scaling fit")
    return fit


def _range(draws: list, c: float) -> tuple[float, float]:
    if not draws:
        return (math.nan, math.nan)
    d = np.array(draws, float)
    with np.errstate(over="ignore", invalid="ignore"):
        v = d[:, 1] * np.power(c, d[:, 0])
    return float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))


def plan(fit: dict, flops: float) -> dict:
    """Compute-optimal model size, tokens and loss at `flops` from both fits."""
    if not (flops > 0 and math.isfinite(flops)):
        raise LmstackError(f"--flops must be a positive number of FLOPs, got {flops}")
    iso, par = fit["isoflop"], fit["parametric"]
    boot = iso.get("boot", {})
    out = {"flops": flops, "param_key": fit.get("param_key", "params"),
           "measured_budgets": [b["budget"] for b in fit.get("budgets", [])]}
    out["isoflop"] = {k: float(PowerLaw.from_dict(iso[k])(flops)) for k in ("n_opt", "d_opt", "l_opt")}
    out["isoflop"] |= {f"{k}_range": _range(boot.get(k, []), flops) for k in ("n_opt", "d_opt", "l_opt")}
    if "l_opt_above_floor" in iso:  # the same minima, as a power law above the parametric floor
        fl = iso["l_opt_above_floor"]
        out["isoflop"]["l_opt_above_floor"] = fl["floor"] + float(PowerLaw.from_dict(fl)(flops))
    law = ParametricFit.from_dict(par)
    n, d, loss = law.optimum(flops)
    out["parametric"] = {"n_opt": n, "d_opt": d, "l_opt": loss, "E": law.E}
    fam = fit.get("family")
    if fam:
        out["shape"] = _nearest_shape(out["isoflop"]["n_opt"], fam["vocab_size"], fam["seq_len"])
        if fam.get("train_tokens"):
            out["corpus_tokens"] = fam["train_tokens"]
    return out


def _nearest_shape(n_params: float, vocab_size: int, seq_len: int) -> dict:
    """The family member closest to n_params (members grow monotonically, so walk up in doubling steps)."""
    hi = 1
    while member(hi, vocab_size, seq_len).params < n_params and hi < 4096:
        hi *= 2
    lo = 0
    while hi - lo > 1:  # largest k with params < n_params lies in [lo, hi)
        mid = (lo + hi) // 2
        if member(mid, vocab_size, seq_len).params < n_params:
            lo = mid
        else:
            hi = mid
    best = nearest([member(k, vocab_size, seq_len) for k in (lo, hi)], n_params)
    return {"k": best.k, "n_layers": best.n_layers, "dim": best.dim, "params": best.params}


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1e15 or 0 < abs(x) < 1e-3:
        return f"{x:.2g}"
    for unit, v in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= v:
            return f"{x / v:.3g}{unit}"
    return f"{x:.3g}"


def format_plan(p: dict, source: str = "") -> str:
    iso, par = p["isoflop"], p["parametric"]
    top = max(p["measured_budgets"], default=math.nan)
    lines = [f"compute budget {p['flops']:.3g} FLOPs" + (f"  (fit: {source})" if source else "")]
    if math.isfinite(top):
        lines.append(f"measured budgets reach {top:.3g} FLOPs: this is an extrapolation by "
                     f"{math.log10(p['flops'] / top):.1f} decades" if p["flops"] > top else
                     f"within the measured budgets (up to {top:.3g} FLOPs)")
    row = "{:<22}{:>16}{:>16}{:>10}{:>12}"
    lines.append(row.format("", "params N", "tokens D", "D/N", "loss"))
    lines.append(row.format("IsoFLOP power laws", _fmt(iso["n_opt"]), _fmt(iso["d_opt"]),
                            f"{iso['d_opt'] / iso['n_opt']:.3g}", f"{iso['l_opt']:.3f}"))
    (lo, hi), (dlo, dhi), (llo, lhi) = iso["n_opt_range"], iso["d_opt_range"], iso["l_opt_range"]
    lines.append(row.format("  95% range", f"{_fmt(lo)}-{_fmt(hi)}", f"{_fmt(dlo)}-{_fmt(dhi)}", "",
                            f"{llo:.2f}-{lhi:.2f}" if math.isfinite(llo) else "n/a"))
    if "l_opt_above_floor" in iso:
        lines.append(row.format("  loss above the floor", "", "", "", f"{iso['l_opt_above_floor']:.3f}"))
    lines.append(row.format("parametric L(N, D)", _fmt(par["n_opt"]), _fmt(par["d_opt"]),
                            f"{par['d_opt'] / par['n_opt']:.3g}", f"{par['l_opt']:.3f}"))
    lines.append(f"N counts {'total' if p['param_key'] == 'params' else 'non-embedding'} parameters; "
                 f"loss in nats per token (the parametric law levels off at E = {par['E']:.3f})")
    if p.get("corpus_tokens"):
        most = max(iso["d_opt"], par["d_opt"]) / p["corpus_tokens"]
        if most > 1:
            lines.append(f"the sweep's corpus has {_fmt(p['corpus_tokens'])} training tokens: these plans read it "
                         f"up to {most:,.0f} times, and the laws were fitted on runs that saw it at most a few "
                         "times; repeated tokens are worth less than fresh ones, so bring more data")
    if "shape" in p:
        s = p["shape"]
        lines.append(f"nearest model of the sweep's shape family: {s['n_layers']} layers x {s['dim']} wide "
                     f"({_fmt(s['params'])} parameters)")
    return "\n".join(lines)

"""Fits of a sweep: IsoFLOP parabolas -> power laws, and the parametric law L(N, D) = E + A/N^alpha + B/D^beta.

(a) IsoFLOP (Hoffmann et al. 2022, approach 2): for each budget C, fit a parabola to loss against
    log N; its vertex is the compute-optimal N_opt(C) and L_opt(C), and D_opt(C) is read off the
    budget's own log D against log N. Straight lines in log-log through the vertices give
    N_opt = k C^a, D_opt = k C^b, L_opt = k C^-g (and, above the parametric law's floor E,
    L_opt - E = k C^-g). The 95% intervals come from a residual bootstrap:
    each budget's parabola is refitted to its fitted values plus resampled residuals, and the power
    laws are refitted to the new vertices.
(b) Parametric (approach 3, as redone by Besiroglu et al. 2024): minimise the Huber loss
    (delta = 1e-3) between log L and log(exp(a - alpha log N) + exp(b - beta log D) + exp(e)) with
    L-BFGS from every point of a grid of starts, keep the best; intervals from refitting on runs
    resampled with replacement. Under C = 6ND its optimum is N_opt = G (C/6)^(beta/(alpha+beta)), so
    beta/(alpha+beta) is comparable to the IsoFLOP exponent a.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from lmstack.errors import LmstackError

# ------------------------------------------------------------------------------------------------
# power laws


@dataclass
class PowerLaw:
    """y = coef * x ** exponent, fitted by least squares on log y against log x."""

    coef: float
    exponent: float
    r2: float
    exponent_ci: tuple[float, float] = (math.nan, math.nan)
    coef_ci: tuple[float, float] = (math.nan, math.nan)

    def __call__(self, x):
        return self.coef * np.asarray(x, dtype=float) ** self.exponent

    @classmethod
    def from_dict(cls, d: dict) -> PowerLaw:
        """Back from fit.json (extra keys such as a floor are ignored)."""
        return cls(d["coef"], d["exponent"], d.get("r2", math.nan))


def fit_power_law(x, y) -> PowerLaw:
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise LmstackError("a power law needs at least two different x values")
    slope, icpt = np.polyfit(lx, ly, 1)
    resid = ly - (icpt + slope * lx)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    with np.errstate(over="ignore"):  # a wild bootstrap replicate may overflow: inf, not a crash
        return PowerLaw(float(np.exp(icpt)), float(slope), r2)


def fit_above_floor(x, y, floor: float) -> PowerLaw | None:
    """y - floor = coef * x ** exponent: a power law for the part of the loss that compute can still
    remove. A loss has an irreducible part (the parametric law's E); a power law in C without it
    keeps falling at the same log-slope and undershoots when extrapolated. None when some y is not
    above the floor."""
    excess = np.asarray(y, float) - floor
    if not (math.isfinite(floor) and floor > 0) or (excess <= 0).any():
        return None
    return fit_power_law(x, excess)


def _interval(samples, level: float = 0.95) -> tuple[float, float]:
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (math.nan, math.nan)
    q = (1 - level) / 2
    return (float(np.quantile(s, q)), float(np.quantile(s, 1 - q)))


# ------------------------------------------------------------------------------------------------
# IsoFLOP


@dataclass
class BudgetMinimum:
    budget: float
    n_opt: float
    d_opt: float
    l_opt: float
    curvature: float  # parabola coefficient of (log N)^2; > 0 for a minimum
    n_points: int
    n_range: tuple[float, float]
    inside: bool  # vertex within the sampled sizes (otherwise it is an extrapolation)
    coeffs: tuple[float, float, float]  # loss = c0 (ln N)^2 + c1 ln N + c2


def _vertex(lx: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(x*, y*, coeffs) of a least-squares parabola; x* = nan when it has no minimum."""
    c = np.polyfit(lx, y, 2)
    if c[0] <= 0:
        return math.nan, math.nan, c
    x = -c[1] / (2 * c[0])
    return float(x), float(np.polyval(c, x)), c


def budget_minimum(budget: float, n, d, loss) -> BudgetMinimum:
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    if len(np.unique(n)) < 3:
        raise LmstackError(f"budget {budget:.3g}: an IsoFLOP parabola needs at least three model sizes")
    lx = np.log(n)
    x, y, c = _vertex(lx, loss)
    if not math.isfinite(x):
        raise LmstackError(f"budget {budget:.3g}: loss against log N has no minimum (the parabola opens "
                           "downwards); add sizes on both sides of the best one")
    dc = np.polyfit(lx, np.log(d), min(2, len(lx) - 1))
    return BudgetMinimum(budget, math.exp(x), math.exp(float(np.polyval(dc, x))), y, float(c[0]), len(n),
                         (float(n.min()), float(n.max())), bool(lx.min() <= x <= lx.max()),
                         tuple(float(v) for v in c))


@dataclass
class IsoFlopFit:
    minima: list[BudgetMinimum]
    n_opt: PowerLaw
    d_opt: PowerLaw
    l_opt: PowerLaw
    n_boot: int
    boot_failures: int  # replicates where a budget's parabola had no (usable) minimum: left out
    excluded: dict[float, str] = field(default_factory=dict)  # budget -> why it is not in the power laws
    boot: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # law -> (exponent, coef) draws

    @property
    def a(self) -> float:
        return self.n_opt.exponent


def _group(rows: list[dict]) -> dict[float, list[dict]]:
    by: dict[float, list[dict]] = {}
    for r in rows:
        by.setdefault(float(r["budget"]), []).append(r)
    return dict(sorted(by.items()))


def fit_isoflop(rows: list[dict], param_key: str = "params", loss_key: str = "val_loss", n_boot: int = 1000,
                seed: int = 0) -> IsoFlopFit:
    """Parabola per budget, then power laws through the vertices, with residual-bootstrap 95% intervals."""
    data, excluded = [], {}
    for b, rs in _group(rows).items():
        rs = sorted(rs, key=lambda r: r[param_key])
        n = np.array([r[param_key] for r in rs], float)
        d = np.array([r["tokens"] for r in rs], float)
        y = np.array([r[loss_key] for r in rs], float)
        why = _unbracketed(n, y)
        if why:
            excluded[b] = why
        else:
            data.append((b, n, d, y))
    if len(data) < 2:
        raise LmstackError("IsoFLOP fits need at least two compute budgets whose lowest loss lies between "
                           f"larger and smaller models; left out: {excluded or 'none'}")
    minima = [budget_minimum(b, n, d, y) for b, n, d, y in data]
    cs = np.array([m.budget for m in minima])
    laws = {k: fit_power_law(cs, [getattr(m, k) for m in minima]) for k in ("n_opt", "d_opt", "l_opt")}

    rng = np.random.default_rng(seed)
    boots: dict[str, list[tuple[float, float]]] = {k: [] for k in laws}
    failures = 0
    fits = []
    for _b, n, d, y in data:
        lx = np.log(n)
        c = np.polyfit(lx, y, 2)
        fitted = np.polyval(c, lx)
        resid = y - fitted
        dof = max(len(y) - 3, 1)
        fits.append((lx, fitted, resid * math.sqrt(len(y) / dof), np.polyfit(lx, np.log(d), min(2, len(lx) - 1))))
    for _ in range(n_boot):
        vs = []
        for (lx, fitted, resid, dc) in fits:
            x, yv, _ = _vertex(lx, fitted + rng.choice(resid, size=len(resid), replace=True))
            if not (math.isfinite(x) and -700 < x < 700 and yv > 0):  # no minimum, or a meaningless one
                break
            vs.append((math.exp(x), math.exp(float(np.polyval(dc, x))), yv))
        if len(vs) < len(fits):
            failures += 1
            continue
        v = np.array(vs)
        for j, k in enumerate(("n_opt", "d_opt", "l_opt")):
            p = fit_power_law(cs, v[:, j])
            boots[k].append((p.exponent, p.coef))
    for k, law in laws.items():
        if boots[k]:
            arr = np.array(boots[k])
            law.exponent_ci, law.coef_ci = _interval(arr[:, 0]), _interval(arr[:, 1])
    return IsoFlopFit(minima, laws["n_opt"], laws["d_opt"], laws["l_opt"], n_boot, failures, excluded, boots)


def _unbracketed(n: np.ndarray, y: np.ndarray) -> str | None:
    """Why a budget cannot locate its optimum, or None. The rule is fixed before looking at any fit:
    at least three sizes, the lowest loss at neither end, and a parabola that opens upwards."""
    if len(np.unique(n)) < 3:
        return "fewer than three model sizes"
    best = int(np.argmin(y))
    if best == 0:
        return "lowest loss at the smallest size (optimum lies below the sampled range)"
    if best == len(y) - 1:
        return "lowest loss at the largest size (optimum lies above the sampled range)"
    if np.polyfit(np.log(n), y, 2)[0] <= 0:
        return "loss against log N has no minimum"
    return None


# ------------------------------------------------------------------------------------------------
# parametric L(N, D) = E + A / N^alpha + B / D^beta

# The grid of starting points Hoffmann et al. and Besiroglu et al. used: 5 x 5 x 5 x 6 x 6 = 4500 starts.
CHINCHILLA_GRID = dict(alpha=(0, 0.5, 1, 1.5, 2), beta=(0, 0.5, 1, 1.5, 2), e=(-1, -0.5, 0, 0.5, 1),
                       a=(0, 5, 10, 15, 20, 25), b=(0, 5, 10, 15, 20, 25))


@dataclass
class ParametricFit:
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    objective: float
    n_starts: int
    huber_delta: float
    ci: dict = field(default_factory=dict)  # name -> (lo, hi) for E, A, alpha, B, beta, a
    n_boot: int = 0

    @property
    def a(self) -> float:
        """Exponent of N_opt(C) implied by the law under C = 6ND."""
        return self.beta / (self.alpha + self.beta)

    def loss(self, n, d):
        n, d = np.asarray(n, float), np.asarray(d, float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @classmethod
    def from_dict(cls, p: dict) -> ParametricFit:
        """Back from fit.json's "parametric" entry."""
        return cls(p["E"], p["A"], p["alpha"], p["B"], p["beta"], p.get("objective", math.nan),
                   p.get("n_starts", 0), p.get("huber_delta", math.nan))

    def optimum(self, flops: float) -> tuple[float, float, float]:
        """(N_opt, D_opt, L) minimising the law subject to C = 6ND (closed form)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        n = g * (flops / 6) ** self.a
        d = flops / (6 * n)
        return float(n), float(d), float(self.loss(n, d))


def _objective(theta: np.ndarray, ln_n: np.ndarray, ln_d: np.ndarray, ln_l: np.ndarray, delta: float):
    """Sum of Huber(log L_hat - log L) and its gradient in theta = (a, b, e, alpha, beta).

    log L_hat = logsumexp(a - alpha ln N, b - beta ln D, e), written out for three terms because this
    runs ~10^6 times per fit.
    """
    a, b, e, alpha, beta = theta
    t1 = a - alpha * ln_n
    t2 = b - beta * ln_d
    top = np.maximum(np.maximum(t1, t2), e)
    e1, e2, e3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
    s = e1 + e2 + e3
    r = top + np.log(s) - ln_l
    ar = np.abs(r)
    val = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum()
    g = np.clip(r, -delta, delta) / s
    g1, g2 = g * e1, g * e2
    return float(val), np.array([g1.sum(), g2.sum(), (g * e3).sum(), -(g1 @ ln_n), -(g2 @ ln_d)])


# Wide box on (a, b, e, alpha, beta), only so that a degenerate resample cannot overflow exp(): the fits
# of real sweeps end far inside it.
_BOUNDS = [(-30, 300), (-30, 300), (-10, 10), (0, 10), (0, 10)]


def _best_of(starts, ln_n, ln_d, ln_l, delta: float) -> tuple[np.ndarray, float]:
    # One BLAS thread: L-BFGS-B's tiny LAPACK calls run ~30x slower when OpenBLAS spins up threads.
    with threadpool_limits(1):
        return _best_of_unthreaded(starts, ln_n, ln_d, ln_l, delta)


def _best_of_unthreaded(starts, ln_n, ln_d, ln_l, delta: float) -> tuple[np.ndarray, float]:
    best_x, best_f = None, math.inf
    for x0 in starts:
        r = minimize(_objective, np.asarray(x0, float), args=(ln_n, ln_d, ln_l, delta), jac=True,
                     method="L-BFGS-B", bounds=_BOUNDS, options={"maxiter": 1000, "gtol": 1e-12, "ftol": 1e-15})
        if np.all(np.isfinite(r.x)) and r.fun < best_f:
            best_x, best_f = r.x, float(r.fun)
    if best_x is None:
        raise LmstackError("the parametric fit did not converge from any starting point")
    return best_x, best_f


def _to_fit(x: np.ndarray, f: float, n_starts: int, delta: float) -> ParametricFit:
    a, b, e, alpha, beta = (float(v) for v in x)
    return ParametricFit(math.exp(e), math.exp(a), alpha, math.exp(b), beta, f, n_starts, delta)


def fit_parametric(n, d, loss, delta: float = 1e-3, grid: dict | None = None, n_boot: int = 200,
                   seed: int = 0) -> ParametricFit:
    """Huber fit of log L from every start of the grid; bootstrap refits start from the best solution."""
    ln_n, ln_d, ln_l = (np.log(np.asarray(v, float)) for v in (n, d, loss))
    if len(ln_l) < 5:
        raise LmstackError(f"the parametric law has five parameters; got only {len(ln_l)} runs")
    g = grid or CHINCHILLA_GRID
    starts = [(a, b, e, al, be) for al, be, e, a, b in
              itertools.product(g["alpha"], g["beta"], g["e"], g["a"], g["b"])]
    x, f = _best_of(starts, ln_n, ln_d, ln_l, delta)
    fit = _to_fit(x, f, len(starts), delta)
    if n_boot:
        rng = np.random.default_rng(seed)
        # A few grid starts besides the full-data optimum guard against a resample sitting in another basin.
        extra = [starts[i] for i in rng.choice(len(starts), size=min(8, len(starts)), replace=False)]
        samples = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(ln_l), size=len(ln_l))
            xb, fb = _best_of([x, *extra], ln_n[idx], ln_d[idx], ln_l[idx], delta)
            pb = _to_fit(xb, fb, 0, delta)
            samples.append((pb.E, pb.A, pb.alpha, pb.B, pb.beta, pb.a))
        arr = np.array(samples)
        fit.ci = {k: _interval(arr[:, j]) for j, k in enumerate(("E", "A", "alpha", "B", "beta", "a"))}
        fit.n_boot = n_boot
    return fit


# ------------------------------------------------------------------------------------------------
# everything a report needs


def _r2(y, yhat) -> float:
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1 - float(np.sum((y - yhat) ** 2)) / ss if ss > 0 else 1.0


@dataclass
class FitConfig:
    param_key: str = "params"  # or params_non_embedding
    loss_key: str = "val_loss"
    n_boot_isoflop: int = 1000
    n_boot_parametric: int = 200
    huber_delta: float = 1e-3
    seed: int = 0
    grid: dict | None = None  # None = the 4500-start Chinchilla grid


def fit_all(rows: list[dict], cfg: FitConfig | None = None) -> dict:
    """IsoFLOP and parametric fits, their comparison and the hold-out-the-largest-budget check, as JSON."""
    cfg = cfg or FitConfig()
    if not rows:
        raise LmstackError("no finished runs to fit")
    iso = fit_isoflop(rows, cfg.param_key, cfg.loss_key, cfg.n_boot_isoflop, cfg.seed)
    n = [r[cfg.param_key] for r in rows]
    d = [r["tokens"] for r in rows]
    y = [r[cfg.loss_key] for r in rows]
    par = fit_parametric(n, d, y, cfg.huber_delta, cfg.grid, cfg.n_boot_parametric, cfg.seed)
    out = {
        "param_key": cfg.param_key, "loss_key": cfg.loss_key, "n_runs": len(rows),
        "budgets": [asdict(m) for m in iso.minima],
        "excluded_budgets": {f"{b:.4g}": why for b, why in iso.excluded.items()},
        "isoflop": {k: asdict(getattr(iso, k)) for k in ("n_opt", "d_opt", "l_opt")}
        | {"n_boot": iso.n_boot, "boot_failures": iso.boot_failures,
           "boot": {k: [[float(f"{e:.6g}"), float(f"{c:.6g}")] for e, c in v] for k, v in iso.boot.items()}},
        "parametric": asdict(par) | {"a": par.a, "r2_loss": _r2(y, par.loss(n, d))},
    }
    floored = fit_above_floor([m.budget for m in iso.minima], [m.l_opt for m in iso.minima], par.E)
    if floored is not None:
        out["isoflop"]["l_opt_above_floor"] = asdict(floored) | {"floor": par.E}
    lo_iso, hi_iso = iso.n_opt.exponent_ci
    lo_par, hi_par = par.ci.get("a", (math.nan, math.nan))
    out["comparison"] = {
        "a_isoflop": iso.a, "a_isoflop_ci": [lo_iso, hi_iso], "a_parametric": par.a,
        "a_parametric_ci": [lo_par, hi_par],
        "intervals_overlap": bool(max(lo_iso, lo_par) <= min(hi_iso, hi_par)),
        "tokens_per_param": [m.d_opt / m.n_opt for m in iso.minima],
    }
    out["extrapolation"] = extrapolation_check(rows, cfg)
    return out


def extrapolation_check(rows: list[dict], cfg: FitConfig) -> dict | None:
    """Fit on the budgets below the largest usable one and predict that budget's optimal loss."""
    held = fit_isoflop(rows, cfg.param_key, cfg.loss_key, n_boot=0).minima
    if len(held) < 3:
        return None
    target = held[-1]
    train_rows = [r for r in rows if float(r["budget"]) < target.budget]
    iso = fit_isoflop(train_rows, cfg.param_key, cfg.loss_key, n_boot=0)
    predicted = float(iso.l_opt(target.budget))
    par = fit_parametric([r[cfg.param_key] for r in train_rows], [r["tokens"] for r in train_rows],
                         [r[cfg.loss_key] for r in train_rows], cfg.huber_delta, cfg.grid, n_boot=0)
    par_pred = float(par.loss(target.n_opt, target.d_opt))
    floored = fit_above_floor([m.budget for m in iso.minima], [m.l_opt for m in iso.minima], par.E)
    floored_pred = par.E + float(floored(target.budget)) if floored is not None else math.nan
    best_run = min((r for r in rows if float(r["budget"]) == target.budget), key=lambda r: r[cfg.loss_key])
    return {
        "held_out_budget": target.budget, "fitted_budgets": [m.budget for m in iso.minima],
        "measured_l_opt": target.l_opt, "best_run_loss": best_run[cfg.loss_key],
        "isoflop_predicted_l_opt": predicted, "isoflop_rel_error": predicted / target.l_opt - 1,
        "isoflop_predicted_n_opt": float(iso.n_opt(target.budget)), "measured_n_opt": target.n_opt,
        "parametric_predicted_loss": par_pred, "parametric_rel_error": par_pred / target.l_opt - 1,
        "floor": par.E, "floored_predicted_l_opt": floored_pred, "floored_rel_error": floored_pred / target.l_opt - 1,
    }

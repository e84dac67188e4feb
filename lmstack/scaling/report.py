"""A fitted sweep as pictures and a page: IsoFLOP curves, the compute-optimal frontier, the parametric
law against the runs, residuals, and report.md with every figure and whether each target was met."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from lmstack.io.files import atomic_open, atomic_write, write_json
from lmstack.scaling.fit import FitConfig, ParametricFit, fit_all
from lmstack.scaling.sweep import read_csv, write_csv

# The targets a sweep is judged by (docs/scaling.md explains them).
TARGETS = {"l_opt_r2": 0.98, "a_range": (0.4, 0.6), "extrapolation_rel_error": 0.02}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png: Path) -> None:
    """Every plot ends the same way: laid out, written atomically as PNG, closed."""
    fig.tight_layout()
    with atomic_open(png, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    _plt().close(fig)


def _by_budget(rows: list[dict]) -> dict[float, list[dict]]:
    out: dict[float, list[dict]] = {}
    for r in rows:
        out.setdefault(float(r["budget"]), []).append(r)
    return dict(sorted(out.items()))


def _log_axes(ax, y: bool = False) -> None:
    """Log axes labelled at powers of ten only: minor tick labels overlap on short ranges."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    if y:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())


def _colors(n: int):
    plt = _plt()
    return plt.cm.viridis(np.linspace(0.05, 0.9, max(n, 1)))


def plot_isoflop(rows: list[dict], fit: dict, png: Path) -> None:
    plt = _plt()
    key = fit["param_key"]
    minima = {m["budget"]: m for m in fit["budgets"]}
    groups = _by_budget(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for col, (b, rs) in zip(_colors(len(groups)), groups.items(), strict=True):
        rs = sorted(rs, key=lambda r: r[key])
        n = np.array([r[key] for r in rs], float)
        y = np.array([r[fit["loss_key"]] for r in rs], float)
        used = b in minima
        ax.plot(n, y, "o" if used else "x", color=col, label=f"C = {b:.2g}" + ("" if used else " (not fitted)"))
        if used:
            m = minima[b]
            xs = np.linspace(np.log(n.min()) - 0.2, np.log(n.max()) + 0.2, 100)
            ax.plot(np.exp(xs), np.polyval(m["coeffs"], xs), "-", color=col, lw=1)
            ax.plot([m["n_opt"]], [m["l_opt"]], "*", color=col, ms=13, mec="k", mew=0.6)
    _log_axes(ax)
    ax.set_xlabel("parameters N (" + ("total" if key == "params" else "non-embedding") + ")")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("IsoFLOP curves: loss against size at fixed compute (* = parabola minimum)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, png)


def plot_frontier(fit: dict, png: Path) -> None:
    plt = _plt()
    cs = np.array([m["budget"] for m in fit["budgets"]])
    grid = np.geomspace(cs.min() / 2, cs.max() * 4, 100)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    labels = {"n_opt": "N_opt (parameters)", "d_opt": "D_opt (tokens)", "l_opt": "L_opt (nats/token)"}
    for ax, k in zip(axes, ("n_opt", "d_opt", "l_opt"), strict=True):
        law = fit["isoflop"][k]
        ax.plot(cs, [m[k] for m in fit["budgets"]], "o", color="C0", label="parabola minima")
        ax.plot(grid, law["coef"] * grid ** law["exponent"], "-", color="C1",
                label=f"fit: exponent {law['exponent']:.3f} [{law['exponent_ci'][0]:.3f}, {law['exponent_ci'][1]:.3f}]")
        draws = fit["isoflop"].get("boot", {}).get(k, [])
        if draws:
            v = np.array([c * grid**e for e, c in draws])
            ax.fill_between(grid, np.quantile(v, 0.025, axis=0), np.quantile(v, 0.975, axis=0), color="C1",
                            alpha=0.2, lw=0, label="bootstrap 95%")
        _log_axes(ax, y=k != "l_opt")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_title(labels[k] + f", R² = {law['r2']:.3f}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _save(fig, png)


def plot_parametric(rows: list[dict], fit: dict, png: Path) -> None:
    """The law through each budget's runs: along a budget, D follows N as the runs' own tokens do."""
    plt = _plt()
    key, lk = fit["param_key"], fit["loss_key"]
    law = ParametricFit.from_dict(fit["parametric"])
    groups = _by_budget(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for col, (b, rs) in zip(_colors(len(groups)), groups.items(), strict=True):
        n = np.array([r[key] for r in rs], float)
        d = np.array([r["tokens"] for r in rs], float)
        ax.plot(n, [r[lk] for r in rs], "o", color=col, label=f"C = {b:.2g}")
        if len(n) >= 2:
            dc = np.polyfit(np.log(n), np.log(d), 1)
            xs = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
            ax.plot(xs, law.loss(xs, np.exp(np.polyval(dc, np.log(xs)))), "-", color=col, lw=1)
    _log_axes(ax)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title(f"L = {law.E:.2f} + {law.A:.3g}/N^{law.alpha:.3f} + {law.B:.3g}/D^{law.beta:.3f}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, png)


def plot_residuals(rows: list[dict], fit: dict, png: Path) -> None:
    plt = _plt()
    key, lk = fit["param_key"], fit["loss_key"]
    law = ParametricFit.from_dict(fit["parametric"])
    minima = {m["budget"]: m for m in fit["budgets"]}
    groups = _by_budget(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for col, (b, rs) in zip(_colors(len(groups)), groups.items(), strict=True):
        n = np.array([r[key] for r in rs], float)
        d = np.array([r["tokens"] for r in rs], float)
        y = np.array([r[lk] for r in rs], float)
        axes[0].plot(n, 100 * (y / law.loss(n, d) - 1), "o", color=col, label=f"C = {b:.2g}")
        if b in minima:
            axes[1].plot(n, 100 * (y / np.polyval(minima[b]["coeffs"], np.log(n)) - 1), "o", color=col,
                         label=f"C = {b:.2g}")
    for ax, title in zip(axes, ("parametric law", "IsoFLOP parabolas (fitted budgets)"), strict=True):
        ax.axhline(0, color="k", lw=0.8)
        _log_axes(ax)
        ax.set_xlabel("parameters N")
        ax.set_title(f"residuals: {title}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("measured / fitted - 1 (%)")
    axes[0].legend(fontsize=8)
    _save(fig, png)


def check_targets(fit: dict) -> list[tuple[str, bool, str]]:
    """(target, met, the measured figure) for each target."""
    iso, cmp_ = fit["isoflop"], fit["comparison"]
    r2 = iso["l_opt"]["r2"]
    a, (alo, ahi) = cmp_["a_isoflop"], cmp_["a_isoflop_ci"]
    lo, hi = TARGETS["a_range"]
    out = [
        (f"R² of L_opt(C) >= {TARGETS['l_opt_r2']}", r2 >= TARGETS["l_opt_r2"], f"{r2:.4f}"),
        (f"IsoFLOP exponent a in [{lo}, {hi}]", lo <= a <= hi, f"a = {a:.3f}, 95% [{alo:.3f}, {ahi:.3f}]"),
    ]
    ex = fit.get("extrapolation")
    if ex:
        # The prediction is the IsoFLOP law above the parametric floor; the floorless power law is shown beside it.
        err, pure = ex["floored_rel_error"], ex["isoflop_rel_error"]
        out.append((f"extrapolated L_opt within {TARGETS['extrapolation_rel_error']:.0%} of measured",
                    abs(err) <= TARGETS["extrapolation_rel_error"],
                    f"{ex['floored_predicted_l_opt']:.4f} predicted (power law above the floor "
                    f"E = {ex['floor']:.3f}) vs {ex['measured_l_opt']:.4f} measured ({err:+.2%}) at "
                    f"C = {ex['held_out_budget']:.2g}; floorless power law {ex['isoflop_predicted_l_opt']:.4f} "
                    f"({pure:+.2%})"))
    else:
        out.append(("extrapolation check", False, "needs three fitted budgets"))
    plo, phi = cmp_["a_parametric_ci"]
    out.append(("parametric and IsoFLOP a consistent", cmp_["intervals_overlap"],
                f"parametric {cmp_['a_parametric']:.3f} [{plo:.3f}, {phi:.3f}] vs IsoFLOP {a:.3f} "
                f"[{alo:.3f}, {ahi:.3f}]"))
    return out


def _ci(v) -> str:
    return f"[{v[0]:.4g}, {v[1]:.4g}]"


def markdown(rows: list[dict], fit: dict) -> str:
    key, lk = fit["param_key"], fit["loss_key"]
    iso, par = fit["isoflop"], fit["parametric"]
    lines = ["# Scaling-law fit", "",
             f"{len(rows)} runs, {len(_by_budget(rows))} compute budgets; N = "
             f"{'total' if key == 'params' else 'non-embedding'} parameters, D = training tokens, "
             f"L = held-out {lk.replace('val_', '')} (nats per token). Compute C = D x training FLOPs per token "
             "(6 x matmul weights + attention).", "", "## Targets", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {t} | {'yes' if ok else '**no**'} | {v} |" for t, ok, v in check_targets(fit)]
    lines += ["", "## IsoFLOP minima", "", "| C (FLOPs) | sizes | N range | N_opt | D_opt | D/N | L_opt |",
              "|---|---|---|---|---|---|---|"]
    for m in fit["budgets"]:
        lines.append(f"| {m['budget']:.3g} | {m['n_points']} | {m['n_range'][0]:,.0f}-{m['n_range'][1]:,.0f} | "
                     f"{m['n_opt']:,.0f} | {m['d_opt']:,.0f} | {m['d_opt'] / m['n_opt']:.1f} | {m['l_opt']:.4f} |")
    for b, why in fit.get("excluded_budgets", {}).items():
        lines.append(f"| {float(b):.3g} | not fitted: {why} | | | | | |")
    lines += ["", "## Power laws through the minima (bootstrap 95% intervals)", "",
              "| quantity | coefficient | exponent | 95% interval | R² |", "|---|---|---|---|---|"]
    for k, name in (("n_opt", "N_opt = k C^a"), ("d_opt", "D_opt = k C^b"), ("l_opt", "L_opt = k C^-g")):
        law = iso[k]
        lines.append(f"| {name} | {law['coef']:.4g} | {law['exponent']:.4f} | {_ci(law['exponent_ci'])} | "
                     f"{law['r2']:.4f} |")
    if "l_opt_above_floor" in iso:
        law = iso["l_opt_above_floor"]
        lines.append(f"| L_opt - E = k C^-g, E = {law['floor']:.4g} (parametric floor) | {law['coef']:.4g} | "
                     f"{law['exponent']:.4f} | | {law['r2']:.4f} |")
    lines += ["", f"{iso['n_boot']} bootstrap replicates ({iso['boot_failures']} left out: a resampled parabola "
              "had no usable minimum).", "", "## Parametric law L(N, D) = E + A/N^alpha + B/D^beta", "",
              f"Huber loss (delta = {par['huber_delta']}) on log L, L-BFGS from {par['n_starts']} starts; "
              f"{par.get('n_boot', 0)} bootstrap refits on resampled runs. R² on L: {par['r2_loss']:.4f}.", "",
              "| | fit | 95% interval |", "|---|---|---|"]
    for k in ("E", "A", "alpha", "B", "beta", "a"):
        ci = par.get("ci", {}).get(k)
        lines.append(f"| {k if k != 'a' else 'a = beta/(alpha+beta)'} | {par[k]:.4g} | {_ci(ci) if ci else ''} |")
    ex = fit.get("extrapolation")
    lines += ["", "## Extrapolation check", ""]
    if ex:
        lines += [f"Fitted on budgets {', '.join(f'{b:.2g}' for b in ex['fitted_budgets'])}; predicted for "
                  f"C = {ex['held_out_budget']:.2g}:", "",
                  "| | predicted | measured | error |", "|---|---|---|---|",
                  f"| L_opt (IsoFLOP power law) | {ex['isoflop_predicted_l_opt']:.4f} | {ex['measured_l_opt']:.4f} | "
                  f"{ex['isoflop_rel_error']:+.2%} |",
                  f"| L_opt (IsoFLOP power law above the parametric floor E = {ex['floor']:.3f}) | "
                  f"{ex['floored_predicted_l_opt']:.4f} | {ex['measured_l_opt']:.4f} | "
                  f"{ex['floored_rel_error']:+.2%} |",
                  f"| N_opt (IsoFLOP power law) | {ex['isoflop_predicted_n_opt']:,.0f} | {ex['measured_n_opt']:,.0f} | "
                  f"{ex['isoflop_predicted_n_opt'] / ex['measured_n_opt'] - 1:+.1%} |",
                  f"| loss at the measured optimum (parametric law) | {ex['parametric_predicted_loss']:.4f} | "
                  f"{ex['measured_l_opt']:.4f} | {ex['parametric_rel_error']:+.2%} |", "",
                  f"The best single run at that budget reached {ex['best_run_loss']:.4f}."]
    else:
        lines.append("Needs at least three fitted budgets.")
    lines += ["", "## Runs", "",
              "| C | layers x dim | N total | N non-emb | D | D/N | steps x batch | loss | bits/byte | s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        batch = f" x {r['batch_size']}" if "batch_size" in r else ""  # older sweeps did not record it
        lines.append(f"| {r['budget']:.2g} | {r['n_layers']} x {r['dim']} | {r['params']:,} | "
                     f"{r['params_non_embedding']:,} | {r['tokens']:,} | {r['tokens_per_param']:.1f} | "
                     f"{r['steps']}{batch} | {r['val_loss']:.4f} | {r['val_bpb']:.4f} | "
                     f"{r['train_seconds'] + r['eval_seconds']:.0f} |")
    lines += ["", "![IsoFLOP curves](isoflop.png)", "", "![frontier](frontier.png)", "",
              "![parametric law](parametric.png)", "", "![residuals](residuals.png)", ""]
    return "\n".join(lines)


def fit_sweep(source: str | Path, out_dir: str | Path | None = None, cfg: FitConfig | None = None) -> dict:
    """Fit a sweep directory (or its results.csv) and write fit.json, report.md, PNGs and the CSV to out_dir."""
    source = Path(source)
    csv_path = source / "results.csv" if source.is_dir() else source
    rows = read_csv(csv_path)
    out = Path(out_dir) if out_dir else csv_path.parent / "fit"
    out.mkdir(parents=True, exist_ok=True)
    fit = fit_all(rows, cfg)
    sweep_json = csv_path.parent / "sweep.json"
    if sweep_json.exists():
        s = json.loads(sweep_json.read_text())
        fit["family"] = {"vocab_size": s["data"]["vocab_size"], "seq_len": s["seq_len"],
                         "train_tokens": s.get("train_tokens")}
        fit["sweep"] = s
    write_json(out / "fit.json", fit)
    if csv_path.resolve() != (out / "results.csv").resolve():
        write_csv(rows, out / "results.csv")
    plot_isoflop(rows, fit, out / "isoflop.png")
    plot_frontier(fit, out / "frontier.png")
    plot_parametric(rows, fit, out / "parametric.png")
    plot_residuals(rows, fit, out / "residuals.png")
    atomic_write(out / "report.md", markdown(rows, fit))
    if sweep_json.exists() and sweep_json.resolve() != (out / "sweep.json").resolve():
        shutil.copyfile(sweep_json, out / "sweep.json")
    return fit


def summary(fit: dict) -> str:
    iso, par = fit["isoflop"], fit["parametric"]
    lines = [f"IsoFLOP: N_opt ~ C^{iso['n_opt']['exponent']:.3f} {_ci(iso['n_opt']['exponent_ci'])}, "
             f"D_opt ~ C^{iso['d_opt']['exponent']:.3f} {_ci(iso['d_opt']['exponent_ci'])}, "
             f"L_opt ~ C^{iso['l_opt']['exponent']:.4f} (R² {iso['l_opt']['r2']:.4f})",
             f"parametric: E={par['E']:.3f} A={par['A']:.4g} alpha={par['alpha']:.3f} B={par['B']:.4g} "
             f"beta={par['beta']:.3f} -> a = {par['a']:.3f} {_ci(par.get('ci', {}).get('a', (math.nan,) * 2))}"]
    for t, ok, v in check_targets(fit):
        lines.append(f"  [{'met' if ok else 'MISSED'}] {t}: {v}")
    return "\n".join(lines)

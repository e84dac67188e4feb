"""Scaling laws: the fits recover laws they are given, the sweep resumes and skips, the CLI plans."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from lmstack.cli import main
from lmstack.errors import LmstackError
from lmstack.io.shards import Batches
from lmstack.model import Transformer
from lmstack.pretrain import DataConfig
from lmstack.scaling import sweep as sweep_mod
from lmstack.scaling.family import ladder, member, model_config, shape
from lmstack.scaling.fit import FitConfig, ParametricFit, fit_all, fit_isoflop, fit_parametric, fit_power_law
from lmstack.scaling.plan import find_fit, load_fit, plan
from lmstack.scaling.sweep import CSV_COLUMNS, SweepConfig, read_csv, run_sweep

# A Chinchilla-like law (Hoffmann et al. 2022, approach 3) to generate data from.
TRUE = ParametricFit(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28, objective=0, n_starts=0, huber_delta=0)
SMALL_GRID = dict(alpha=(0, 1, 2), beta=(0, 1, 2), e=(-1, 0, 1), a=(0, 10, 20), b=(0, 10, 20))
BUDGETS = (1e18, 3e18, 1e19, 3e19, 1e20)


def synthetic_rows(noise: float = 0.003, seed: int = 1, budgets=BUDGETS, span: float = 6.0, sizes: int = 7):
    """Runs on IsoFLOP grids around the true optimum (C = 6ND), losses from TRUE times log-normal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n0, _, _ = TRUE.optimum(c)
        for f in np.geomspace(1 / span, span, sizes):
            n = n0 * f
            d = c / (6 * n)
            loss = float(TRUE.loss(n, d)) * math.exp(rng.normal(0, noise))
            rows.append({"budget": c, "params": n, "tokens": d, "val_loss": loss})
    return rows


# ---- the shape family ---------------------------------------------------------------------------


def test_family_alternates_width_and_depth_and_counts_match_the_model():
    assert [shape(k) for k in range(6)] == [(1, 32), (1, 64), (2, 64), (2, 96), (3, 96), (3, 128)]
    for k in (0, 3, 6):
        m = member(k, vocab_size=300, seq_len=64)
        cfg = model_config(k, 300, 64)
        model = Transformer(cfg)
        # counted from the shape alone: Q, K, V, O, the SwiGLU's three matrices and two norms per layer,
        # the final norm, and the tied embedding once
        d, hd = cfg.dim, cfg.head_dim
        per_layer = d * hd * (2 * cfg.n_heads + 2 * cfg.n_kv_heads) + 3 * d * cfg.ffn_dim + 2 * d
        assert m.params_non_embedding == cfg.n_layers * per_layer + d == model.num_params(True)
        assert m.params == m.params_non_embedding + 300 * d == model.num_params()
        assert m.flops_per_token == model.flops_per_token(64)
        # 6N plus attention: the counting convention the sweep states
        assert m.flops_per_token == 6 * (m.params_non_embedding - m.n_layers * 2 * m.dim - m.dim + 300 * m.dim) \
            + 12 * m.n_layers * 64 * m.dim
    sizes = [m.params for m in ladder(300, 64, max_params=3e6)]
    assert all(b > a for a, b in zip(sizes, sizes[1:], strict=False)) and sizes[-1] <= 3e6


def test_auto_sizes_centre_on_the_budget_and_respect_min_steps():
    cfg = SweepConfig()
    members = ladder(512, cfg.seq_len, max_params=2e7)
    small, big = sweep_mod.auto_sizes(3e11, members, cfg), sweep_mod.auto_sizes(1e14, members, cfg)
    assert small[0] == 0 and len(big) == cfg.n_sizes and big == list(range(big[0], big[0] + cfg.n_sizes))
    assert big[0] > small[0]  # a larger budget moves the window to larger models
    for b, ks in ((3e11, small), (1e14, big)):
        assert all(sweep_mod.steps_for(b, members[k], cfg) >= cfg.min_steps for k in ks)


# ---- fits ---------------------------------------------------------------------------------------


def test_power_law_fit_is_exact_on_a_power_law():
    x = np.geomspace(1e10, 1e14, 6)
    p = fit_power_law(x, 3.0 * x**0.5)
    assert p.coef == pytest.approx(3.0) and p.exponent == pytest.approx(0.5) and p.r2 == pytest.approx(1.0)


def test_isoflop_fit_recovers_the_true_exponents_and_its_intervals_cover_them():
    fit = fit_isoflop(synthetic_rows(), n_boot=300)
    a_true = TRUE.beta / (TRUE.alpha + TRUE.beta)
    assert fit.a == pytest.approx(a_true, abs=0.02)
    assert fit.n_opt.exponent_ci[0] <= a_true <= fit.n_opt.exponent_ci[1]
    assert fit.d_opt.exponent_ci[0] <= 1 - a_true <= fit.d_opt.exponent_ci[1]
    assert fit.n_opt.exponent_ci[1] - fit.n_opt.exponent_ci[0] < 0.1
    # the optimal loss along the frontier, by the true law, lies inside the fitted power law's band
    for m in fit.minima:
        assert m.inside and m.l_opt == pytest.approx(TRUE.optimum(m.budget)[2], rel=0.01)
        assert m.n_opt == pytest.approx(TRUE.optimum(m.budget)[0], rel=0.2)
    assert fit.l_opt.r2 > 0.98 and fit.excluded == {}


def test_isoflop_fit_leaves_out_budgets_whose_optimum_is_not_bracketed():
    rows = synthetic_rows()
    # the smallest budget only sampled on the large side of its optimum
    n0 = TRUE.optimum(BUDGETS[0])[0]
    rows = [r for r in rows if r["budget"] != BUDGETS[0] or r["params"] > n0 * 1.5]
    fit = fit_isoflop(rows, n_boot=0)
    assert set(fit.excluded) == {BUDGETS[0]} and "smallest size" in fit.excluded[BUDGETS[0]]
    assert [m.budget for m in fit.minima] == list(BUDGETS[1:])
    with pytest.raises(LmstackError, match="at least two compute budgets"):
        fit_isoflop([r for r in rows if r["budget"] <= BUDGETS[1]], n_boot=0)


def test_parametric_fit_recovers_the_law_and_its_bootstrap_covers_the_truth():
    rows = synthetic_rows(noise=0.003, seed=2)
    n, d, y = ([r[k] for r in rows] for k in ("params", "tokens", "val_loss"))
    fit = fit_parametric(n, d, y, grid=SMALL_GRID, n_boot=40, seed=0)
    assert fit.alpha == pytest.approx(TRUE.alpha, abs=0.03) and fit.beta == pytest.approx(TRUE.beta, abs=0.03)
    assert fit.E == pytest.approx(TRUE.E, abs=0.1)
    for k in ("alpha", "beta", "E", "a"):
        lo, hi = fit.ci[k]
        assert lo <= getattr(TRUE, k) <= hi, (k, lo, hi)
    n_opt, d_opt, loss = fit.optimum(1e22)
    assert n_opt == pytest.approx(TRUE.optimum(1e22)[0], rel=0.3)
    assert n_opt * d_opt * 6 == pytest.approx(1e22)


def test_huber_loss_shrugs_off_an_outlier_that_least_squares_would_follow():
    rows = synthetic_rows(noise=0.0)
    rows[10]["val_loss"] *= 1.5  # one broken run
    n, d, y = ([r[k] for r in rows] for k in ("params", "tokens", "val_loss"))
    fit = fit_parametric(n, d, y, grid=SMALL_GRID, n_boot=0)
    assert fit.alpha == pytest.approx(TRUE.alpha, abs=0.01) and fit.beta == pytest.approx(TRUE.beta, abs=0.01)


def test_fit_all_compares_the_estimates_and_checks_extrapolation():
    out = fit_all(synthetic_rows(), FitConfig(n_boot_isoflop=100, n_boot_parametric=10, grid=SMALL_GRID))
    cmp_ = out["comparison"]
    assert cmp_["intervals_overlap"] and abs(cmp_["a_isoflop"] - cmp_["a_parametric"]) < 0.03
    ex = out["extrapolation"]
    assert ex["held_out_budget"] == BUDGETS[-1] and ex["fitted_budgets"] == list(BUDGETS[:-1])
    # The parametric law models the loss floor E; a pure power law in C does not, so on a law with a
    # floor it drifts a little when extrapolated (here -2.4% over half a decade).
    assert abs(ex["parametric_rel_error"]) < 0.01 and abs(ex["isoflop_rel_error"]) < 0.05
    assert ex["isoflop_predicted_l_opt"] < ex["measured_l_opt"]  # ...and always downwards
    # Above the parametric floor the power law in C holds, and the drift is gone.
    assert abs(ex["floored_rel_error"]) < 0.005 < abs(ex["isoflop_rel_error"])
    assert ex["floor"] == pytest.approx(TRUE.E, abs=0.05)
    assert out["isoflop"]["l_opt_above_floor"]["r2"] > out["isoflop"]["l_opt"]["r2"]
    json.dumps(out)  # the whole result is plain JSON


# ---- the sweep ----------------------------------------------------------------------------------


def test_the_batch_doubles_for_every_eightfold_budget_unless_fixed():
    cfg = SweepConfig(batch_size=8, batch_budget=5e12)
    assert [cfg.batch_for(c) for c in (5e12 / 8, 5e12, 4e13, 3.2e14)] == [4, 8, 16, 32]
    assert cfg.batch_for(1e3) == 1  # never below one sequence
    fixed = SweepConfig(batch_size=16, batch_exponent=0)
    assert {fixed.batch_for(c) for c in (1e11, 1e13, 1e15)} == {16}
    assert fixed.tokens_per_step(1e11) == 16 * fixed.seq_len


@pytest.fixture
def tiny_sweep(corpus_dir, tokenizer, tmp_path):
    tok_path = tmp_path / "tok.json"
    tokenizer.save(tok_path)
    return SweepConfig(out_dir=str(tmp_path / "sweep"), budgets=[2e9, 4e9], sizes=[0, 1],
                       data=DataConfig(str(corpus_dir / "*.txt"), tokenizer.vocab_size, str(tok_path), 0.2),
                       seq_len=32, batch_size=4, batch_budget=2e9, device="cpu", threads=1)


def test_sweep_trains_each_point_for_its_budget_and_skips_finished_points(tiny_sweep, monkeypatch):
    logs: list[str] = []
    rows = run_sweep(tiny_sweep, progress=False, log=logs.append)
    assert [(r["budget"], r["k"]) for r in rows] == [(2e9, 0), (2e9, 1), (4e9, 0), (4e9, 1)]
    # the batch grows with the budget as C^(1/3): 4 sequences at 2e9, round(4 * 2^(1/3)) = 5 at 4e9
    assert [r["batch_size"] for r in rows] == [4, 4, 5, 5]
    for r in rows:
        assert r["tokens"] == r["steps"] * r["batch_size"] * 32
        assert r["flops"] == pytest.approx(r["budget"], rel=0.02)  # whole steps: within rounding
        assert 0 < r["val_bpb"] < 10 and r["params"] > r["params_non_embedding"]
    assert read_csv(f"{tiny_sweep.out_dir}/results.csv") == [{k: r[k] for k in CSV_COLUMNS} for r in rows]
    # a second run trains nothing: every point is skipped
    monkeypatch.setattr(sweep_mod, "train", lambda *a, **k: pytest.fail("a finished point was trained again"))
    logs.clear()
    again = run_sweep(tiny_sweep, progress=False, log=logs.append)
    assert again == rows and sum(": done" in line for line in logs) == 4


def test_an_interrupted_point_resumes_from_its_checkpoint_to_the_same_result(tiny_sweep, tmp_path, monkeypatch):
    import dataclasses

    one = dataclasses.replace(tiny_sweep, budgets=[2e9], sizes=[0])
    clean = run_sweep(dataclasses.replace(one, out_dir=str(tmp_path / "clean")), progress=False, log=lambda s: None)
    assert clean[0]["steps"] > 60

    class CrashAt60(Batches):
        def get(self, step, micro=0):
            if step == 60:
                raise KeyboardInterrupt  # killed after the step-50 checkpoint
            return super().get(step, micro)

    monkeypatch.setattr(sweep_mod, "Batches", CrashAt60)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(one, progress=False, log=lambda s: None)
    point = tmp_path / "sweep" / "points" / sweep_mod.point_name(2e9, 0)
    assert (point / "ckpt.pt").exists() and not (point / "result.json").exists()
    assert torch.load(point / "ckpt.pt", weights_only=False)["step"] == 50
    monkeypatch.setattr(sweep_mod, "Batches", Batches)
    resumed = run_sweep(one, progress=False, log=lambda s: None)
    assert resumed[0]["val_loss"] == clean[0]["val_loss"] and resumed[0]["train_loss"] == clean[0]["train_loss"]


def test_a_sweep_directory_refuses_other_training_settings(tiny_sweep):
    import dataclasses

    run_sweep(dataclasses.replace(tiny_sweep, budgets=[2e9], sizes=[0]), progress=False, log=lambda s: None)
    with pytest.raises(LmstackError, match="other settings.*lr"):
        run_sweep(dataclasses.replace(tiny_sweep, lr=1e-3), progress=False, log=lambda s: None)


# ---- CLI: fit and plan --------------------------------------------------------------------------


def _write_csv(rows: list[dict], path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for i, r in enumerate(rows):
            full = {k: 0 for k in CSV_COLUMNS} | r
            full |= {"k": i, "params_non_embedding": int(r["params"] * 0.9), "params": int(r["params"]),
                     "tokens": int(r["tokens"]), "flops": r["budget"], "tokens_per_param": r["tokens"] / r["params"]}
            w.writerow(full)


def test_cli_fit_writes_the_report_and_plan_extrapolates_from_it(tmp_path, capsys):
    sweep_dir = tmp_path / "synthetic"
    sweep_dir.mkdir()
    _write_csv(synthetic_rows(), sweep_dir / "results.csv")
    main(["scaling", "fit", str(sweep_dir), "--fast", "--boot", "100", "--boot-parametric", "5"])
    out = capsys.readouterr().out
    assert "[met] R² of L_opt(C)" in out and "IsoFLOP exponent a in [0.4, 0.6]" in out
    fit_dir = sweep_dir / "fit"
    for name in ("fit.json", "report.md", "isoflop.png", "frontier.png", "parametric.png", "residuals.png"):
        assert (fit_dir / name).stat().st_size > 500, name
    assert "| C (FLOPs) |" in (fit_dir / "report.md").read_text()

    main(["scaling", "plan", "--flops", "1e22", "--fit", str(fit_dir)])
    text = capsys.readouterr().out
    assert "IsoFLOP power laws" in text and "parametric L(N, D)" in text and "extrapolation by 2.0 decades" in text
    p = plan(load_fit(find_fit(fit_dir)), 1e22)
    n_true, d_true, l_true = TRUE.optimum(1e22)
    assert p["isoflop"]["n_opt"] == pytest.approx(n_true, rel=0.2)
    assert p["isoflop"]["n_opt_range"][0] <= n_true <= p["isoflop"]["n_opt_range"][1]
    assert p["parametric"]["l_opt"] == pytest.approx(l_true, rel=0.01)


def test_plan_and_fit_reject_bad_input(tmp_path):
    with pytest.raises(LmstackError, match="no fit.json"):
        find_fit(tmp_path)
    (tmp_path / "fit.json").write_text("{not json")
    with pytest.raises(LmstackError, match="cannot read fit"):
        load_fit(tmp_path / "fit.json")
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LmstackError, match="not a sweep results CSV"):
        read_csv(tmp_path / "results.csv")
    with pytest.raises(SystemExit) as e:
        main(["scaling", "plan", "--flops", "-1", "--fit", str(tmp_path / "nope")])
    assert e.value.code == 1


def test_cli_run_trains_a_point_and_rejects_bad_sizes(corpus_dir, tmp_path, capsys):
    out = tmp_path / "cli_sweep"
    argv = ["scaling", "run", str(out), "--data", str(corpus_dir / "*.txt"), "--vocab-size", "300",
            "--budgets", "2e9", "--seq-len", "32", "--batch-size", "4", "--batch-budget", "2e9", "--threads", "1",
            "--device", "cpu"]
    main(argv + ["--sizes", "0"])
    text = capsys.readouterr().out
    assert "[1/1] C=2e+09 k=0" in text and f"next: lmstack scaling fit {out}" in text
    assert len(read_csv(out / "results.csv")) == 1
    for bad in ("x,1", "-1"):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--sizes", bad])
        assert e.value.code == 1
    assert "error: --sizes" in capsys.readouterr().err


def test_plan_finds_the_committed_fit_else_the_newest_run(tmp_path, monkeypatch):
    from lmstack.scaling import plan as plan_mod

    committed = tmp_path / "docs" / "fit.json"
    monkeypatch.setattr(plan_mod, "COMMITTED_FIT", committed)
    runs = tmp_path / "runs"
    for name in ("old", "new"):
        (runs / name / "fit").mkdir(parents=True)
        (runs / name / "fit" / "fit.json").write_text("{}")
    import os

    os.utime(runs / "old" / "fit" / "fit.json", (1, 1))
    assert find_fit(None, runs) == runs / "new" / "fit" / "fit.json"
    committed.parent.mkdir()
    committed.write_text("{}")
    assert find_fit(None, runs) == committed
    assert find_fit(runs / "old") == runs / "old" / "fit" / "fit.json"


def test_the_packaged_fit_is_the_committed_one():
    """plan reads the fit shipped inside the package; it must be the one docs/results/scaling reports."""
    from pathlib import Path

    from lmstack.scaling import plan as plan_mod

    docs = Path(__file__).resolve().parents[1] / "docs" / "results" / "scaling" / "fit.json"
    assert plan_mod.COMMITTED_FIT.read_bytes() == docs.read_bytes()
    assert "lmstack" in plan_mod.COMMITTED_FIT.parts and "docs" not in plan_mod.COMMITTED_FIT.parts

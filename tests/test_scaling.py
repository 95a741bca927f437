"""Scaling laws of robustness: the fit recovers known constants, the compute-optimal closed form
minimises the law on the iso-FLOP line, bad tables fail clearly, and the study runs end to end
and resumes without recomputing."""

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from robcurves.studies import scaling
from robcurves.studies.scaling import PAPER_CONSTANTS as P


def _paper_grid(lo=3.0, hi=10.0, k=6, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.logspace(lo, hi, k), np.logspace(lo, hi, k))
    n, d = n.ravel(), d.ravel()
    loss = P["E"] + P["A"] / n ** P["alpha"] + P["B"] / d ** P["beta"]
    return {"N": n, "D": d, "loss": loss * (1 + noise * rng.standard_normal(n.size))}


@pytest.fixture(scope="module")
def paper_fit():
    return scaling.fit(_paper_grid())


def test_fit_recovers_the_paper_constants(paper_fit):
    law = paper_fit
    assert abs(law.alpha - P["alpha"]) < 0.02
    assert abs(law.beta - P["beta"]) < 0.02
    assert abs(law.E - P["E"]) / P["E"] < 0.02
    target = P["beta"] / (P["alpha"] + P["beta"])
    assert abs(target - 0.483) < 5e-4
    assert abs(law.n_exponent - target) < 0.02
    # the slope of log N* against log C is the exponent (closed form, two budgets)
    n1, _ = scaling.compute_optimal(law, 1e18, 6.0)
    n2, _ = scaling.compute_optimal(law, 1e22, 6.0)
    assert math.log(n2 / n1) / math.log(1e4) == pytest.approx(law.n_exponent, rel=1e-9)


def test_screened_starts_find_the_optimum_of_the_whole_grid():
    table = _paper_grid(seed=3)
    screened = scaling.fit(table)
    every = scaling.fit(table, optimise=None, starts=scaling._default_starts(
        False, table["loss"])[::18])
    assert screened.objective <= every.objective + 1e-9


def test_compute_optimal_minimises_the_law_on_the_iso_flop_line(paper_fit):
    s = 6.0 * 11
    for C in (1e12, 1e16, 1e20):
        n_star, d_star = scaling.compute_optimal(paper_fit, C, s)
        assert n_star * d_star * s == pytest.approx(C, rel=1e-9)
        def on_line(ln, C=C):
            return float(paper_fit.predict(math.exp(ln), C / (s * math.exp(ln))))

        res = minimize_scalar(on_line,
                              bounds=(0.0, math.log(C / s)), method="bounded",
                              options={"xatol": 1e-10})
        assert math.exp(res.x) == pytest.approx(float(n_star), rel=1e-3)
        # and it is a minimum: 10% off either way is worse
        at = float(paper_fit.predict(n_star, d_star))
        for f in (0.9, 1.1):
            assert float(paper_fit.predict(n_star * f, d_star / f)) > at


def test_bad_tables_fail_naming_the_rows():
    good = _paper_grid()
    rows = [{"N": n, "D": d, "loss": v}
            for n, d, v in zip(good["N"], good["D"], good["loss"], strict=True)]
    with pytest.raises(ValueError, match="4 distinct runs"):
        scaling.fit(rows[:4])
    bad = [dict(r) for r in rows]
    bad[3]["N"] = 0
    bad[7]["loss"] = -1.0
    with pytest.raises(ValueError, match=r"rows \[3, 7\].*non-positive"):
        scaling.fit(bad)
    bad = [dict(r) for r in rows]
    bad[5]["D"] = float("nan")
    bad[9]["loss"] = None
    with pytest.raises(ValueError, match=r"rows \[5, 9\].*NaN"):
        scaling.fit(bad)
    with pytest.raises(ValueError, match="no column 'robust_loss'"):
        scaling.fit(rows, y="robust_loss")
    with pytest.raises(TypeError, match="list of dicts"):
        scaling.fit(42)


def test_csv_and_list_tables_give_the_same_fit(tmp_path, paper_fit):
    g = _paper_grid()
    path = tmp_path / "runs.csv"
    lines = ["N,D,loss"] + [f"{float(n)!r},{float(d)!r},{float(v)!r}"
                            for n, d, v in zip(g["N"], g["D"], g["loss"], strict=True)]
    path.write_text("\n".join(lines) + "\n")
    law = scaling.fit(path)
    assert law.alpha == pytest.approx(paper_fit.alpha, rel=1e-6)
    # a worse duplicate of a configuration does not count: each configuration gives its best
    rows = [{"N": n, "D": d, "loss": v} for n, d, v in zip(g["N"], g["D"], g["loss"], strict=True)]
    rows.append({"N": g["N"][0], "D": g["D"][0], "loss": g["loss"][0] * 3})
    assert scaling.fit(rows).alpha == pytest.approx(paper_fit.alpha, rel=1e-6)


def test_quality_term_recovers_gamma():
    rng = np.random.default_rng(1)
    n, d, q = np.meshgrid(np.logspace(3, 10, 5), np.logspace(3, 10, 5), [1.0, 0.6, 0.3])
    n, d, q = n.ravel(), d.ravel(), q.ravel()
    gamma = 1.5
    loss = P["E"] + P["A"] / n ** P["alpha"] + P["B"] / (d * q ** gamma) ** P["beta"]
    loss = loss * (1 + 0.005 * rng.standard_normal(n.size))
    law = scaling.fit({"N": n, "D": d, "loss": loss, "q": q}, quality="q")
    assert abs(law.gamma - gamma) < 0.2
    assert abs(law.beta - P["beta"]) < 0.02


def test_bootstrap_intervals_cover_the_truth(paper_fit):
    b = scaling.bootstrap(paper_fit, replicates=20, seed=0, level=0.95)
    assert b.bootstrap_replicates >= 15
    lo, hi = b.intervals["alpha"]
    assert lo <= b.alpha <= hi and hi - lo < 0.05


def test_count_macs_matches_a_hand_count():
    from robcurves.train import build

    m = build("cnn-small", (1, 28, 28), 10)
    # conv 1->16 4x4 s2 p1: 16*14*14 outputs x 16; conv 16->32: 32*7*7 x 256; dense 1568*100,
    # 100*100, 100*10
    hand = 16 * 14 * 14 * 16 + 32 * 7 * 7 * 16 * 16 + 1568 * 100 + 100 * 100 + 100 * 10
    assert scaling.count_macs(m, (1, 28, 28)) == hand
    assert scaling.training_flops(hand, 1000, 2, 3) == 6 * hand * 4 * 1000 * 2


def test_analyze_and_report_on_synthetic_runs(tmp_path):
    g = _paper_grid(3, 7, 4)
    rows = [{"run": f"r{i}", "N": n, "D": d, "robust_loss": v, "auc": v / 4,
             "robust_accuracy": 1 - v / 4, "flops": 66 * n * d, "quality": 1.0}
            for i, (n, d, v) in enumerate(zip(g["N"], g["D"], g["loss"], strict=True))]
    res = scaling.analyze(rows, bootstrap_replicates=5, held_out_runs=2)
    assert res["loss"]["alpha"] > 0 and res["s"] == pytest.approx(66)
    assert len(res["optimal"]) == 3 and res["held_out"]["rows"]
    # robust accuracy = 1 - loss / 4 exactly, so the map is that line
    assert res["accuracy_map"]["slope"] == pytest.approx(-0.25)
    assert res["plateau_accuracy"] == pytest.approx(1 - res["loss"]["E"] / 4)
    paths = scaling.write_report(res, rows, tmp_path)
    html = (tmp_path / "scaling.html").read_text()
    assert "Compute-optimal allocation" in html and "data:image/png;base64," in html
    assert all(p.exists() for p in paths)
    assert "| robust loss |" in (tmp_path / "scaling.md").read_text()


@pytest.mark.slow
def test_study_cli_end_to_end_and_resume(tmp_path, capsys):
    from robcurves.cli import main

    out = tmp_path / "study"
    argv = ["study", "scaling", "--data", "digits", "--widths", "0.5,1", "--train-sizes",
            "200,400", "--quick", "--epochs", "1", "--test-points", "40", "--eps", "0.1",
            "--bootstrap", "0", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads((out / "runs.json").read_text())
    assert len(rows) == 4
    assert {(r["width"], r["D"]) for r in rows} == {(0.5, 200), (0.5, 400), (1.0, 200),
                                                    (1.0, 400)}
    by = {(r["width"], r["D"]): r for r in rows}
    assert by[(0.5, 200)]["N"] < by[(1.0, 200)]["N"] == by[(1.0, 400)]["N"]
    for r in rows:
        assert r["flops"] == 6 * r["macs"] * (1 + r["attack_steps"]) * r["D"] * r["epochs"]
        assert 0 <= r["robust_accuracy"] <= r["clean_accuracy"] <= 1
        assert r["robust_loss"] > 0 and 0 <= r["auc"] <= 1 and r["test_points"] == 40
        assert (out / r["model"]).is_file()
    assert (out / "scaling.html").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert log.count(": reused") == 4
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()} == stamps
    assert json.loads((out / "runs.json").read_text()) == rows
    # other settings in the same folder are refused, not mixed in
    assert main([*argv[:-2], "--eps", "0.2", "--out", str(out)]) == 2


def test_label_noise_moves_labels_to_other_classes():
    from robcurves.data import load

    ds = load("digits")
    noisy = scaling._noisy(ds, 0.3, seed=0)
    moved = noisy.y != ds.y
    assert 0.25 < moved.mean() < 0.35
    assert noisy.y.min() >= 0 and noisy.y.max() < ds.num_classes
    assert scaling._noisy(ds, 0.0, seed=0) is ds


def test_plateau_is_not_read_from_an_unidentified_E():
    # a pure power law (E = 0) on a narrow grid: E cannot be identified, so no plateau
    n, d = np.meshgrid(np.logspace(4, 6, 3), np.logspace(3, 5, 3))
    n, d = n.ravel(), d.ravel()
    loss = 5 / n ** 0.2 + 6 / d ** 0.3
    rows = [{"N": a, "D": b, "robust_loss": v, "auc": v, "robust_accuracy": 1 - v / 3,
             "flops": 6 * a * b} for a, b, v in zip(n, d, loss, strict=True)]
    res = scaling.analyze(rows, bootstrap_replicates=0, held_out_runs=0)
    assert res["loss"]["E"] < 1e-3 * loss.min() and not res["loss_E_identified"]
    assert "plateau_accuracy" not in res and any("not identified" in x for x in res["notes"])
    assert "plateau" not in res["summary"].split("note:")[0]

"""The Tsipras et al. distribution, its exact population curves and the tradeoff study."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robcurves
from robcurves import data as rdata
from robcurves.data.synthetic import parse_spec, tsipras
from robcurves.population import (
    sup_gap,
    tsipras_classifiers,
    tsipras_linear_curve,
    tsipras_theorem_bound,
)

NORMS = ["linf", "l2", "l1"]
DUAL = {"linf": 1, "l2": 2, "l1": np.inf}


# ---- the distribution

def test_sample_matches_definition():
    ds = tsipras(d=40, p=0.8, n=40000, seed=1)
    assert ds.x.shape == (40000, 41) and ds.bounds == (-math.inf, math.inf)
    y = ds.y * 2 - 1
    assert abs(ds.y.mean() - 0.5) < 3 * 0.5 / math.sqrt(ds.n)
    agree = (ds.x[:, 0] == y).mean()
    assert set(np.unique(ds.x[:, 0])) == {-1.0, 1.0}
    assert abs(agree - 0.8) < 3 * math.sqrt(0.8 * 0.2 / ds.n)
    g = ds.x[:, 1:] * y[:, None]              # y x_j ~ N(eta, 1)
    eta = 3 / math.sqrt(40)
    assert abs(g.mean() - eta) < 3 / math.sqrt(g.size)
    assert abs(g.std() - 1) < 0.01
    again = rdata.load("tsipras:d=40,p=0.8,n=40000,seed=1")
    np.testing.assert_array_equal(again.x, ds.x)
    assert not np.array_equal(rdata.load("tsipras:d=40,p=0.8,n=100,seed=2").x, ds.x[:100])


def test_spec_defaults_and_overrides():
    assert parse_spec("tsipras") == {}
    assert parse_spec("tsipras:d=5, p=0.9,eta=0.5") == {"d": 5, "p": 0.9, "eta": 0.5}
    ds = rdata.load("tsipras:n=10")
    assert ds.x.shape == (10, 1001)
    assert ds.info["eta"] == pytest.approx(3 / math.sqrt(1000)) and ds.info["p"] == 0.95


@pytest.mark.parametrize("spec, match", [
    ("tsipras:eta=0", "eta must be"), ("tsipras:eta=-1", "eta must be"),
    ("tsipras:p=0.5", "p must lie"), ("tsipras:p=1", "p must lie"), ("tsipras:p=0.2", "p must"),
    ("tsipras:d=0", "d must be"), ("tsipras:n=0", "n must be"), ("tsipras:q=3", "unknown"),
    ("tsipras:d=2.5", "integer"), ("tsipras:d=3,d=4", "twice"), ("tsipras:p", "needs a value"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        rdata.load(spec)


def test_bad_direct_arguments():
    with pytest.raises(ValueError, match="eta"):
        tsipras(d=3, eta=float("nan"))
    with pytest.raises(ValueError, match="split"):
        rdata.load("tsipras:n=5", split="test")
    with pytest.raises(ValueError, match="must lie in"):
        rdata.Dataset(x=np.full((2, 3), 2.0, np.float32), y=np.zeros(2, np.int64), name="x")
    with pytest.raises(ValueError, match="p must"):
        tsipras_theorem_bound(0.1, p=1.0)
    with pytest.raises(ValueError, match="zero"):
        tsipras_linear_curve(np.zeros(4), 0.0, "linf", p=0.9, eta=0.3)


# ---- population curves

def test_known_values_of_the_paper():
    d, p = 1000, 0.95
    eta = 3 / math.sqrt(d)
    w = tsipras_classifiers(d, p)
    avg = tsipras_linear_curve(w["averaging"], 0.0, "linf", p=p, eta=eta)
    assert avg.robust_accuracy(0.0) == pytest.approx(0.99865, abs=1e-5)
    assert avg.robust_accuracy(2 * eta) == pytest.approx(0.00135, abs=1e-5)
    for nm in NORMS:
        rob = tsipras_linear_curve(w["robust"], 0.0, nm, p=p, eta=eta)
        np.testing.assert_allclose(rob.robust_accuracy([0, 0.5, 0.999999]), 0.95)
        np.testing.assert_allclose(rob.robust_accuracy([1.0, 3.0]), 0.0)


def _mc_error(x, y, w, b, eps, q):
    """Fraction of points whose worst-case margin y (w.x + b) - eps ||w||_q is <= 0."""
    m = y * (x.astype(np.float64) @ w + b)
    return (m[None, :] <= np.asarray(eps)[:, None] * np.linalg.norm(w, ord=q)).mean(1)


@pytest.mark.parametrize("norm", NORMS)
def test_monte_carlo_agrees_with_closed_form(norm):
    d, p, n = 20, 0.85, 40000
    eta = 3 / math.sqrt(d)
    ds = tsipras(d=d, p=p, n=n, seed=7)
    y = ds.y * 2.0 - 1
    rng = np.random.default_rng(0)
    ws = dict(tsipras_classifiers(d, p))
    ws["random"] = rng.normal(size=d + 1) + 0.3
    eps = np.array([0.0, 0.25 * eta, eta, 2 * eta, 0.5, 1.5])
    for b in (0.0, 0.4):
        for name, w in ws.items():
            pop = tsipras_linear_curve(w, b, norm, p=p, eta=eta, name=name)
            exact = np.asarray(pop.robust_error(eps))
            mc = _mc_error(ds.x, y, w, b, eps, DUAL[norm])
            se = np.sqrt(exact * (1 - exact) / n)
            assert (np.abs(mc - exact) <= 3 * se + 1e-12).all(), (name, b, mc, exact)


@pytest.mark.parametrize("norm", NORMS)
def test_exact_linear_certificates_equal_closed_form_margins(norm):
    d, p = 30, 0.9
    eta = 3 / math.sqrt(d)
    ds = tsipras(d=d, p=p, n=3000, seed=2)
    torch.manual_seed(0)
    lin = nn.Linear(d + 1, 2).double()
    clf = robcurves.wrap(lin, bounds=None)
    dist = robcurves.certify(clf, ds.x, ds.y, norm, method="exact-linear")
    wt = lin.weight.detach().numpy()
    bt = lin.bias.detach().numpy()
    w, b = wt[1] - wt[0], float(bt[1] - bt[0])
    y = ds.y * 2.0 - 1
    margin = np.maximum(y * (ds.x.astype(np.float64) @ w + b), 0) / np.linalg.norm(w, DUAL[norm])
    np.testing.assert_allclose(dist.distances, margin, rtol=1e-6, atol=1e-9)
    curve = robcurves.RobustnessCurve.from_distances(dist, name="lin")
    pop = tsipras_linear_curve(w, b, norm, p=p, eta=eta)
    gap, dkw = sup_gap(curve, pop, level=0.999)
    assert gap <= dkw
    # the same check fails against another distribution's curve (the test can fail)
    wrong = tsipras_linear_curve(w, b, norm, p=0.6, eta=eta)
    assert sup_gap(curve, wrong, level=0.999)[0] > dkw


def test_plot_curves_together(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from robcurves.population import plot_curves

    d, p = 10, 0.9
    eta = 3 / math.sqrt(d)
    pop = tsipras_linear_curve(tsipras_classifiers(d, p)["robust"], 0, "linf", p=p, eta=eta)
    emp = robcurves.RobustnessCurve(distances=np.array([0.0, 1.0, 1.0]), norm=math.inf)
    ax = plot_curves([emp, pop])
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="one norm"):
        plot_curves([emp, tsipras_linear_curve(np.ones(11), 0, "l2", p=p, eta=eta)])


# ---- the study: Theorem 2.1 on every classifier it trains

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem_2_1_holds_for_trained_models(seed):
    from robcurves.attacks import pgd
    from robcurves.studies.tradeoff import linear_weights, theorem_check, train_model

    d, p, n = 60, 0.9, 600
    eta = 3 / math.sqrt(d)
    train = tsipras(d=d, p=p, n=n, seed=100 + seed)
    test = tsipras(d=d, p=p, n=1500, seed=200 + seed)
    informative = 0
    for arch in ("logreg", "mlp"):
        for frac in (0.0, 2.0):
            m = train_model(train.x, train.y, arch, frac * eta, epochs=4, batch_size=64,
                            pgd_steps=3, hidden=16, seed=seed)
            if arch == "logreg":   # exactly, on the population
                w, b = linear_weights(m)
                pop = tsipras_linear_curve(w, b, "linf", p=p, eta=eta)
                bound = tsipras_theorem_bound(pop.clean_error, p)
                assert pop.robust_accuracy(2 * eta) <= bound + 1e-12
                informative += bound < 1
            clf = robcurves.wrap(m, bounds=None)
            xt, yt = torch.as_tensor(test.x), torch.as_tensor(test.y)
            with torch.no_grad():
                wrong = (m(xt).argmax(1) != yt).numpy()
            xa = pgd(clf, xt, yt, norm="inf", eps=2 * eta, steps=10, random_init=False)
            with torch.no_grad():
                robust = (m(xa).argmax(1) == yt).numpy()
            assert not (robust & wrong).any()     # pgd starts at x: errors stay errors
            assert theorem_check(robust, wrong, p)[3]
    assert informative >= 1   # the standard linear model is accurate enough for a real bound


def test_theorem_check_flags_a_violation():
    from robcurves.studies.tradeoff import theorem_check

    wrong = np.zeros(1000, bool)
    wrong[:10] = True                         # 1% error: bound 9 * 0.01 = 0.09 for p = 0.9
    robust = ~wrong                           # 99% robust accuracy: impossible
    bound, slack, se, ok = theorem_check(robust, wrong, 0.9)
    assert bound == pytest.approx(0.09) and slack == pytest.approx(0.09 - 0.99) and not ok
    robust[100:] = False                      # 9% robust accuracy: allowed
    assert theorem_check(robust, wrong, 0.9)[3]


def test_study_runs_and_resumes(tmp_path):
    from robcurves.studies.tradeoff import TradeoffConfig, run

    cfg = TradeoffConfig(dims=(40,), n_train=200, n_test=200, n_attack=30, epochs=1,
                         eps_fractions=(0.0, 2.0), norms=("linf",), hidden=8, pgd_steps=2,
                         vision=None)
    res = run(tmp_path, cfg, threads=1, progress=False)
    assert len(res["models"]) == 4
    html = (tmp_path / "tradeoff.html").read_text()
    assert "<title>robcurves study: accuracy vs robustness (Tsipras et al.)</title>" in html
    assert html.count("<h2>") == 4 and "What robust models see" not in html
    assert (tmp_path / "tradeoff.md").read_text().startswith("# Accuracy vs robustness")
    assert {c["arch"] for c in res["crossings"]} == {"logreg", "mlp"}
    for m in res["models"]:           # the sample check agrees with its own numbers
        assert m["slack"] == pytest.approx(m["bound_2eta"] - m["robust_acc_2eta"])
    stamps = {f: f.stat().st_mtime_ns for f in (tmp_path / "models").glob("*.pt")}
    again = run(tmp_path, cfg, threads=1, progress=False)
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "models").glob("*.pt")} == stamps
    assert again["models"] == res["models"]
    with pytest.raises(ValueError, match="another configuration"):
        run(tmp_path, TradeoffConfig(dims=(41,), n_train=200), progress=False)


def test_cli_curve_on_tsipras_uses_unbounded_inputs(tmp_path, monkeypatch):
    from robcurves.cli import main

    (tmp_path / "tsip_model.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(11, 2))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    rc = main(["curve", "--model", "tsip_model:make", "--data", "tsipras:d=10,n=40",
               "--norms", "linf", "--out", str(out), "--attack", "deepfool",
               "--certify", "exact-linear", "--no-progress"])
    assert rc == 0
    meta = json.loads((out / "curve-linf.json").read_text())["metadata"]
    assert meta["model"]["bounds"] == [None, None]
    assert main(["study", "tradeoff", "--out", str(tmp_path / "s"), "--dims", "3,x"]) == 2


def test_class_mean_alignment():
    from robcurves.studies._tradeoff_vision import class_mean_alignment

    means = np.array([[0.0, 0, 0], [1.0, 2, 0], [0.0, 0, 5]])
    delta = np.array([[2.0, 4, 0], [0.0, 0, 1], [-1.0, -2, 0], [0.0, 0, 0]])
    cos = class_mean_alignment(delta, np.array([0, 0, 0, 0]), np.array([1, 1, 1, 2]), means)
    np.testing.assert_allclose(cos[:3], [1.0, 0.0, -1.0], atol=1e-12)
    assert np.isnan(cos[3])


@pytest.mark.skipif(not (Path(__file__).parents[1] / "../shared/datasets/mnist").exists(),
                    reason="needs ../shared/datasets/mnist")
def test_vision_part_on_mnist(tmp_path, monkeypatch):
    from robcurves.studies._tradeoff_vision import VisionConfig, run_vision

    monkeypatch.setenv("ROBCURVES_DATA", str(Path(__file__).parents[1] / "../shared/datasets"))
    cfg = VisionConfig(n_train=300, n_eval=40, epochs=1, train_steps=2, target_steps=5,
                       width=32, n_show=3)
    res = run_vision(tmp_path, cfg)
    assert set(res["models"]) == {"standard", "robust"}
    for m in res["models"].values():
        assert -1 <= m["cos_mean"] <= 1 and 0 <= m["clean_acc"] <= 1
    assert (tmp_path / "figures" / "saliency.png").exists()
    assert (tmp_path / "figures" / "interpolations.png").exists()
    assert run_vision(tmp_path, cfg) == json.loads((tmp_path / "vision.json").read_text())


def test_page_vision_section_renders_once():
    from robcurves.report.render import render
    from robcurves.studies._tradeoff_vision import VisionConfig
    from robcurves.studies.tradeoff import TradeoffConfig

    vision = {"data": "mnist-test", "config": VisionConfig().__dict__, "models": {
        "standard": {"clean_acc": 0.9, "target_hit_rate": 0.8, "cos_mean": 0.5, "cos_se": 0.01},
        "robust": {"clean_acc": 0.8, "target_hit_rate": 0.7, "cos_mean": 0.7, "cos_se": 0.01}}}
    ctx = {"cfg": TradeoffConfig(), "results": [], "figures": [], "ratio": 19.0,
           "summary": {"seconds": 1.0, "theorem_all_ok": True, "crossings": [],
                       "population": [], "vision": vision}}
    html = render("tradeoff.html.j2", **ctx)
    assert "<title>robcurves study: accuracy vs robustness (Tsipras et al.)</title>" in html
    assert html.count("What robust models see") == 1 and "0.700 &plusmn; 0.010" in html
    md = render("tradeoff.md.j2", **ctx)
    assert md.count("## What robust models see") == 1 and "| robust | 0.800 |" in md
    skipped = {**ctx["summary"], "vision": {"skipped": "MNIST not found"}}
    assert "Left out: MNIST not found" in render("tradeoff.html.j2", **{**ctx, "summary": skipped})

"""Threat-model diagnostics: kinks at the training eps, scale factors and rankings across norms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robcurves.curve import RobustnessCurve
from robcurves.diagnostics import detect_kink, fit_scale, rank_agreement, train_eps_of


def _c(d, name, norm="linf", **kw) -> RobustnessCurve:
    return RobustnessCurve(np.asarray(d, dtype=np.float64), norm, name=name, **kw)


def _kinked(rng, n, t, at):
    """Adversarially-trained-looking distances: few points below ``at``, a pile just after."""
    clean = np.zeros(int(0.1 * n))
    low = rng.uniform(0.0, at, size=int(0.08 * n))
    pile = at + rng.exponential(0.3 * t, size=int(0.5 * n))
    tail = at + rng.uniform(0.0, 4 * t, size=n - clean.size - low.size - int(0.5 * n))
    return np.concatenate([clean, low, pile, tail])


@pytest.mark.parametrize("offset", [1.0, 1.2, 0.8])
def test_planted_kink_is_found_where_it_was_planted(offset):
    rng = np.random.default_rng(int(offset * 10))
    t = 8 / 255
    d = _kinked(rng, 3000, t, at=offset * t)
    curve = _c(d, "adv", metadata={"model": {"train_eps": t, "train_norm": "linf"}})
    k = detect_kink(curve)  # training eps read from the metadata
    assert k.detected and k.train_eps == t
    assert abs(k.location - offset * t) <= 0.05 * t
    assert k.slope_after > 4 * k.slope_before and k.score >= 2


@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.0])
def test_smooth_curve_has_no_kink(sigma):
    rng = np.random.default_rng(5)
    t = 8 / 255
    d = np.where(rng.random(3000) < 0.1, 0.0, rng.lognormal(math.log(t), sigma, size=3000))
    k = detect_kink(_c(d, "std"), train_eps=t)
    assert not k.detected and k.score < 1.0


def test_kink_needs_a_training_eps():
    c = _c([0.1, 0.2], "m")
    with pytest.raises(ValueError, match="no training eps.*train_eps="):
        detect_kink(c)
    other = _c([0.1, 0.2], "m", metadata={"model": {"train_eps": 0.5, "train_norm": "l2"}})
    assert train_eps_of(other) is None  # trained for l2, this is an linf curve
    with pytest.raises(ValueError, match="train_eps must be a positive"):
        detect_kink(c, train_eps=-1.0)


def _linear_model_curves():
    """Exact per-point distances of a logistic regression on 8x8 digits (3 vs 8), 3 norms."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from robcurves._norms import dual_norm, lp_norm_np, parse_norm

    X, y = load_digits(return_X_y=True)
    keep = (y == 3) | (y == 8)
    X, y = X[keep] / 16.0, (y[keep] == 8).astype(int)
    clf = LogisticRegression(C=0.05, max_iter=2000).fit(X[::2], y[::2])
    Xt, yt = X[1::2], y[1::2]
    w, b = clf.coef_[0], float(clf.intercept_[0])
    margin = Xt @ w + b
    pred = (margin > 0).astype(int)
    curves = {}
    for nm in ("linf", "l2", "l1"):
        q = dual_norm(parse_norm(nm))
        d = np.abs(margin) / float(lp_norm_np(w[None], q)[0])
        d[pred != yt] = 0.0
        curves[nm] = RobustnessCurve(distances=d, norm=nm, name="logreg", kind="exact",
                                     indices=np.arange(d.size), labels=yt, predictions=pred)
    return w, curves


def test_linear_model_scale_factor_between_norms_is_ratio_of_dual_norms():
    w, curves = _linear_model_curves()
    assert curves["linf"].clean_error < 0.2  # a real, working classifier
    dual = {"linf": np.abs(w).sum(), "l2": np.linalg.norm(w), "l1": np.abs(w).max()}
    for a, b in [("linf", "l2"), ("linf", "l1"), ("l2", "l1"), ("l2", "linf")]:
        fit = fit_scale(curves[a], curves[b])
        assert fit.factor == pytest.approx(dual[a] / dual[b], rel=1e-9)
        assert fit.log_spread < 1e-9 and fit.misfit == 0.0
        assert (fit.norm_from, fit.norm_to) == (a, b)
    # A curve that is not a rescaling leaves a visible misfit.
    rng = np.random.default_rng(0)
    noisy = RobustnessCurve(curves["l2"].distances * rng.uniform(0.3, 3.0, curves["l2"].n),
                            norm="l2", name="logreg", indices=curves["l2"].indices)
    assert fit_scale(curves["linf"], noisy).misfit > 0.05
    with pytest.raises(ValueError, match="two different norms"):
        fit_scale(curves["l2"], curves["l2"])


def test_rank_agreement_across_norms():
    rng = np.random.default_rng(2)
    base = rng.lognormal(-3, 0.5, size=400)
    cs = [_c(base, "A", "linf"), _c(1.5 * base, "B", "linf"),
          _c(base * 20, "A", "l2"), _c(base * 10, "B", "l2"),
          _c(base * 100, "A", "l1"), _c(base * 300, "B", "l1")]
    res = {(r.norm_a, r.norm_b): r for r in rank_agreement(cs)}
    assert res[("linf", "l2")].ranking_a == ("B", "A")
    assert res[("linf", "l2")].ranking_b == ("A", "B")
    assert not res[("linf", "l2")].holds and res[("linf", "l2")].kendall_tau == -1.0
    assert res[("linf", "l2")].flipped == (("B", "A"),)
    assert res[("linf", "l1")].holds and res[("linf", "l1")].kendall_tau == 1.0
    with pytest.raises(ValueError, match="at least two norms"):
        rank_agreement(cs[:2])
    with pytest.raises(ValueError, match="by must be one of"):
        rank_agreement(cs, by="accuracy")

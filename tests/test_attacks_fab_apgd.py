"""FAB (minimal norm) and APGD (fixed epsilon): the exact box-constrained hyperplane projection,
closed forms on linear models, the box, certified lower bounds, per-point epsilon balls, APGD
against PGD, best-of tracking and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import binaryish, exact_linear_distances, linear_points, recorder
from scipy.optimize import linprog, minimize

import robcurves
from robcurves._norms import dual_norm, lp_norm
from robcurves.attacks import ATTACKS, apgd, fab, get_attack, pgd, pgd_search
from robcurves.attacks._apgd import checkpoints
from robcurves.attacks._fab import project_hyperplane_box
from robcurves.model import wrap

NORMS = [math.inf, 2.0, 1.0]


# -- the projection onto a hyperplane inside the box --------------------------------------------

def _reference_projection(w: np.ndarray, b: float, lo: np.ndarray, hi: np.ndarray,
                          p: float) -> float:
    """min ||d||_p s.t. w.d = b, lo <= d <= hi, by a linear program (l1, l_inf) or SLSQP (l2)."""
    dim = w.size
    if p == 1.0:  # d = u - v, u, v >= 0
        r = linprog(np.ones(2 * dim), A_eq=np.concatenate([w, -w])[None], b_eq=[b],
                    bounds=[(0, h) for h in hi] + [(0, -lo_) for lo_ in lo])
        return float(r.fun)
    if p == math.inf:  # variables d and t, |d_i| <= t
        eye, one = np.eye(dim), np.ones((dim, 1))
        a_ub = np.block([[eye, -one], [-eye, -one]])
        c = np.zeros(dim + 1)
        c[-1] = 1.0
        r = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * dim),
                    A_eq=np.concatenate([w, [0.0]])[None], b_eq=[b],
                    bounds=list(zip(lo, hi, strict=True)) + [(0, None)])
        return float(r.fun)
    r = minimize(lambda v: v @ v, np.zeros(dim), jac=lambda v: 2 * v, method="SLSQP",
                 constraints=[{"type": "eq", "fun": lambda v: w @ v - b}],
                 bounds=list(zip(lo, hi, strict=True)), options={"ftol": 1e-15, "maxiter": 500})
    return math.sqrt(float(r.fun))


@pytest.mark.parametrize("p", NORMS)
def test_hyperplane_box_projection_is_the_exact_minimum(p: float) -> None:
    g = torch.Generator().manual_seed(3)
    n, dim = 24, 7
    w = torch.randn(n, dim, generator=g, dtype=torch.float64)
    w[0, :3] = 0.0  # zero weights must stay untouched
    x = torch.rand(n, dim, generator=g, dtype=torch.float64)
    x[1, :4] = 1.0  # coordinates on the bounds
    lo, hi = -x, 1 - x
    b = torch.randn(n, generator=g, dtype=torch.float64) * 0.7
    b[2] = 0.0
    b[3] = 50.0  # the hyperplane misses the box
    d = project_hyperplane_box(w, b, lo, hi, p)
    assert d.shape == w.shape
    assert bool((d >= lo - 1e-12).all() and (d <= hi + 1e-12).all())
    reach = torch.where(w * torch.sign(b)[:, None] > 0, hi, lo)  # the corner towards sign(b)
    best = (w * reach).sum(1).abs()
    feasible = best >= b.abs()
    assert not feasible[3] and int(feasible.sum()) >= n - 6
    for i in range(n):
        wi, di = w[i].numpy(), d[i].numpy()
        if not feasible[i]:
            # the corner that moves furthest towards the hyperplane (zero where w is zero)
            assert np.allclose(di, np.where(wi != 0, reach[i].numpy(), 0.0))
            continue
        assert abs(wi @ di - float(b[i])) < 1e-9
        ref = _reference_projection(wi, float(b[i]), lo[i].numpy(), hi[i].numpy(), p)
        got = float(np.linalg.norm(di, ord=p))
        assert got <= ref * (1 + 1e-6) + 1e-9, f"row {i}: {got} > optimum {ref}"
    assert float(d[2].abs().max()) == 0.0
    assert float(d[0, :3].abs().max()) == 0.0


# -- FAB: closed forms, the box, certified bounds -----------------------------------------------

@pytest.mark.parametrize("p", NORMS)
def test_fab_matches_the_linear_closed_form(p: float) -> None:
    lin, x, y = linear_points()
    exact = exact_linear_distances(lin, x, y, p)
    d = robcurves.distances(lin, x, y, p, attack="fab")
    assert d.n_unbroken == 0
    ratio = d.distances / exact
    assert ratio.min() >= 1 - 1e-4, f"fab beat the closed form: {ratio.min()}"
    assert ratio.max() <= 1.01, f"fab {p}: worst ratio to the closed form {ratio.max():.4f}"
    # the projection is exact on an affine model: convergence within patience + a few steps
    assert d.cost["forward_per_point"] < 80


@pytest.mark.parametrize("p", [math.inf, 2.0])
def test_apgd_search_matches_the_linear_closed_form(p: float) -> None:
    lin, x, y = linear_points(n=12)
    exact = exact_linear_distances(lin, x, y, p)
    d = robcurves.distances(lin, x, y, p, attack="apgd-search")
    assert d.n_unbroken == 0
    ratio = d.distances / exact
    assert ratio.min() >= 1 - 1e-4 and ratio.max() <= 1.01, (ratio.min(), ratio.max())


def test_targeted_fab_reaches_the_target_boundary() -> None:
    lin, x, y = linear_points(n=12)
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    z = x.double() @ w.T + b
    t = (y + 1) % w.shape[0]
    rows = torch.arange(x.shape[0])
    to_target = (z[rows, y] - z[rows, t]) / lp_norm(w[y] - w[t], dual_norm(2.0))
    adv = fab(wrap(lin), x, y, 2.0, targets=t)
    got = lp_norm((adv - x).double(), 2.0)
    with torch.no_grad():
        assert bool((lin(adv).argmax(1) != y).all())
    # any misclassification counts, so never further than the target's own boundary
    assert bool((got <= to_target * 1.01).all())
    assert bool((got.numpy() >= exact_linear_distances(lin, x, y, 2.0) * (1 - 1e-4)).all())


CASES = [("fab", p) for p in NORMS] + [("apgd-search", p) for p in (math.inf, 2.0)]


@pytest.mark.parametrize("name,p", CASES)
def test_median_within_one_percent_of_auto_on_the_toy(toy, name: str, p: float
                                                       ) -> None:
    """(The box and the CROWN lower bound are checked for these attacks in test_attacks.py.)"""
    net, x, y = toy
    d = robcurves.distances(net, x, y, p, attack=name)
    auto = robcurves.distances(net, x, y, p, attack="auto").distances
    ok = np.isfinite(auto) & (auto > 0)
    # not a tightness benchmark, but FAB must land on the boundary for most points
    assert np.median(d.distances[ok] / auto[ok]) < 1.01


# -- best-of tracking ---------------------------------------------------------------------------

def test_fab_returns_the_best_of_every_queried_iterate() -> None:
    lin, x, y = linear_points(n=16)
    clf = recorder(lin)
    # a large extrapolation and a weak pull-back make the iterates bounce across the boundary;
    # no line search and no early stop: every point is queried at every step
    adv = fab(clf, x, y, 2.0, steps=12, eta=1.6, beta=0.5, restarts=1, patience=0, refine=0)
    got = lp_norm(adv - x, 2.0)
    final_x, final_pred = clf.log[-1]
    final_d = torch.where(final_pred != y, lp_norm(final_x - x, 2.0), torch.inf)
    assert (final_d > got * 1.001).sum() >= 3, "the test needs points whose final query is worse"
    best = torch.full((x.shape[0],), math.inf)
    for q, pred in clf.log:
        assert q.shape[0] == x.shape[0]
        dq = torch.where(pred != y, lp_norm(q - x, 2.0), torch.inf)
        best = torch.minimum(best, dq)
    assert torch.isfinite(best).all()
    assert bool((got <= best * (1 + 1e-6)).all()), "fab returned worse than one of its iterates"
    assert torch.allclose(got, best, rtol=1e-6)


# -- APGD at a fixed, per-point epsilon ---------------------------------------------------------

def test_apgd_checkpoints_follow_the_paper() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == []


@pytest.mark.parametrize("p", NORMS)
@pytest.mark.parametrize("early_stop", [True, False])
def test_apgd_stays_in_each_points_ball_and_the_box(toy, p: float,
                                                    early_stop: bool) -> None:
    for net, x, y in (toy, binaryish()):
        clf = wrap(net)
        g = torch.Generator().manual_seed(5)
        scale = {math.inf: 0.15, 2.0: 0.4, 1.0: 0.8}[p] * (1 if x.shape[1] == 2 else 3)
        eps = scale * torch.rand(x.shape[0], generator=g)
        eps[0] = 0.0
        adv = apgd(clf, x, y, p, eps=eps, steps=15, early_stop=early_stop, loss="margin")
        assert adv.shape == x.shape
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        assert bool((lp_norm(adv - x, p) <= eps * (1 + 1e-5) + 1e-6).all())
        assert torch.equal(adv[0], x[0])
        broken = clf.predict(adv) != y
        assert 0 < int(broken.sum()) < x.shape[0]


@pytest.mark.parametrize("p", [math.inf, 2.0])
def test_apgd_breaks_at_least_as_many_points_as_pgd(toy, p: float) -> None:
    net, x, y = toy
    clf = wrap(net)
    d = np.sort(robcurves.distances(net, x, y, p, attack="fab").distances)
    d = d[np.isfinite(d) & (d > 0)]
    checked = 0
    for q in (0.25, 0.5, 0.75):  # between two points' distances: no point sits on the ball
        i = int(q * len(d))
        eps = torch.full((x.shape[0],), float(d[i] + d[i + 1]) / 2)
        n_pgd = int((clf.predict(pgd(clf, x, y, p, eps=eps, steps=10)) != y).sum())
        n_apgd = int((clf.predict(apgd(clf, x, y, p, eps=eps, steps=10)) != y).sum())
        if 0 < n_pgd < x.shape[0]:
            checked += 1
            assert n_apgd >= n_pgd, f"eps {float(eps[0]):.4f}: apgd {n_apgd} < pgd {n_pgd}"
    assert checked >= 2


def test_apgd_updates_a_given_tracker_with_adversarials_inside_the_ball(toy) -> None:
    from robcurves.attacks._core import BestAdversarial

    net, x, y = toy
    clf = wrap(net)
    tracker = BestAdversarial(x, y, 2.0)
    eps = torch.full((x.shape[0],), 0.2)
    adv = apgd._run(clf, x, y, 2.0, eps=eps, steps=10, tracker=tracker)
    broken = clf.predict(adv) != y
    assert bool((tracker.found == broken).all())
    assert bool((tracker.dist[tracker.found] <= 0.2 * (1 + 1e-5)).all())


# -- bad inputs ---------------------------------------------------------------------------------

def _bad_calls():
    lin, x, y = linear_points(n=4)
    clf = wrap(lin)
    eps = torch.full((4,), 0.1)
    return [
        (lambda: fab(clf, x, y, "l3"), "l3"),
        (lambda: fab(clf, x, y, 2.0, beta=1.5), "1.5"),
        (lambda: fab(clf, x, y, 2.0, eta=0.5), "0.5"),
        (lambda: fab(clf, x, y, 2.0, alpha_max=-0.1), "-0.1"),
        (lambda: fab(clf, x, y, 2.0, steps=0), "fab: steps must be an integer >= 1; got 0"),
        (lambda: fab(clf, x, y, 2.0, targets=y), "targets must differ"),
        (lambda: fab(clf, x, y, 2.0, targets=y[:2]), r"\(2,\)"),
        (lambda: apgd(clf, x, y, "l0", eps=eps), "l0"),
        (lambda: apgd(clf, x, y, 2.0, eps=eps, loss="hinge"), "hinge"),
        (lambda: apgd(clf, x, y, 2.0, eps=torch.full((3,), 0.1)), r"\(3,\)"),
        (lambda: apgd(clf, x, y, 2.0, eps=-eps), "-0.1"),
        (lambda: apgd(clf, x, y, 2.0, eps=eps, steps=0), "got 0"),
        (lambda: apgd(clf, x * 2, y, 2.0, eps=eps), "bounds"),
        (lambda: pgd_search(clf, x, y, 2.0, inner="adam"), "adam"),
        (lambda: get_attack("apgd-search", 1.0), "l1"),
    ]


@pytest.mark.parametrize("case", range(15))
def test_bad_inputs_raise_naming_the_value(case: int) -> None:
    call, match = _bad_calls()[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_dlr_needs_three_classes() -> None:
    lin = torch.nn.Linear(4, 2)
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="3 classes"):
        apgd(wrap(lin), x, torch.zeros(3, dtype=torch.long), "inf", eps=0.1, loss="dlr")


def test_registry() -> None:
    assert ATTACKS["fab"][1] == (math.inf, 2.0, 1.0)
    assert ATTACKS["apgd-search"][1] == (math.inf, 2.0)

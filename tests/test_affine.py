"""The affine threat model of Tramèr & Boneh (issue 15 item 2): exact values on linear models,
the attack against them, labels and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import linear_problem

from robcurves import (
    Distances,
    RobustnessCurve,
    affine_distances,
    build_report,
    certify,
    compare,
    union,
)
from robcurves._norms import affine_label, parse_threat
from robcurves.unions import affine_distances_linear

SCALE = {"linf": 0.008, "l2": 0.024, "l1": 0.04}


@pytest.fixture(scope="module")
def linear():
    torch.manual_seed(0)
    lin, x, y = linear_problem(dim=12, classes=3, n=30)
    exact = {p: certify(lin, x.numpy(), y.numpy(), p, "exact-linear") for p in SCALE}
    return lin, x, y, union(exact, scale=SCALE)


def test_exact_affine_equals_union_on_linear_models(linear):
    lin, x, y, u = linear
    e = affine_distances_linear(lin, x, y, scale=SCALE)
    assert e.kind == "exact" and e.norm == "affine(linf:0.008,l2:0.024,l1:0.04)"
    assert e.settings["box_bound"] == 0
    np.testing.assert_allclose(e.distances, u.distances, rtol=1e-12)


def test_affine_attack_matches_exact_union_on_linear_model(linear):
    lin, x, y, u = linear
    a = affine_distances(lin, x, y, scale=SCALE, seed=0)
    assert a.kind == "upper" and a.norm == "affine(linf:0.008,l2:0.024,l1:0.04)"
    assert a.cost["rejected"] == 0
    ratio = a.distances / u.distances
    # an attack is an upper bound: below the exact value would be an invalid adversarial
    assert ratio.min() >= 1 - 1e-9, ratio.min()
    # stated tolerance: within 0.5% on every point, 0.1% at the median (bisection tol 1e-3)
    assert ratio.max() <= 1.005 and np.median(ratio) <= 1.001, (ratio.max(), np.median(ratio))
    # the weights found are on the simplex
    lam = np.array(a.settings["lambda"], dtype=float)
    np.testing.assert_allclose(lam.sum(1), 1.0)


def test_binding_box_makes_affine_smaller_than_union_and_attack_stays_above_exact():
    # points on the faces of the box: the components of an affine perturbation need not each
    # stay in the box, so the affine distance can drop below the union one
    g = torch.Generator().manual_seed(3)
    dim, n = 6, 24
    w = torch.randn(2, dim, generator=g)
    x = torch.rand(n, dim, generator=g)
    x = torch.where(torch.rand(n, dim, generator=g) < 0.4, (x > 0.5).float(), x)
    lin = torch.nn.Linear(dim, 2)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(-(x @ w.T).mean(0))
        y = lin(x).argmax(1)
    scale = {"linf": 0.1, "l1": 0.3}
    exact = affine_distances_linear(lin, x, y, scale=scale)
    per = {p: certify(lin, x.numpy(), y.numpy(), p, "exact-linear") for p in scale}
    u = union(per, scale=scale)
    assert exact.settings["box_bound"] > 0
    fin = np.isfinite(u.distances)
    assert np.all(exact.distances[fin] <= u.distances[fin] * (1 + 1e-9))
    assert np.any(exact.distances[fin] < u.distances[fin] * (1 - 1e-3))  # strictly smaller
    a = affine_distances(lin, x, y, scale=scale, lambdas=8, seed=0, batch_size=10)
    ok = np.isfinite(exact.distances) & (exact.distances > 0)
    assert np.all(a.distances[ok] >= exact.distances[ok] * (1 - 1e-6))
    assert np.all(a.distances <= u.distances * (1 + 1e-3) + 1e-12)  # vertices: never worse


def test_affine_curve_compares_saves_and_refuses_other_threats(linear, tmp_path):
    lin, x, y, u = linear
    e = affine_distances_linear(lin, x, y, scale=SCALE)
    c = RobustnessCurve.from_distances(e)
    path = c.save(tmp_path / "a.json")
    back = RobustnessCurve.load(path)
    assert back.norm == e.norm and np.array_equal(back.distances, c.distances)
    other = RobustnessCurve(distances=c.distances * 1.2, norm=c.norm, name="b", kind=c.kind,
                            indices=c.indices)
    cmp = compare([c, other], n_boot=20)
    assert cmp.norm_name == e.norm
    with pytest.raises(ValueError, match="different norms"):
        compare([c, u], n_boot=10)
    assert parse_threat("AFFINE(l1:0.040, inf:0.008, l2:0.024)") == e.norm
    rep = build_report([c, other, RobustnessCurve(distances=u.distances, norm=u.norm, name="u",
                                                  kind=u.kind, indices=u.indices)], n_boot=20)
    assert e.norm in rep.comparisons and u.norm in rep.curves
    paths = rep.write(tmp_path / "rep")
    assert "affine(linf:0.008" in paths["markdown"].read_text()


def test_single_norm_affine_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"at least two norms.*\['linf'\].*per-norm"):
        affine_label({"linf": 0.1})
    lin, x, y = linear_problem(dim=4, classes=2, n=3)
    with pytest.raises(ValueError, match="at least two norms"):
        affine_distances(lin, x, y, scale={"l2": 1.0})


@pytest.mark.parametrize("scale, match", [
    ({"linf": 0.1, "l3": 1.0}, "unknown norm 'l3'"),
    ({"linf": 0.1, "l2": 0.0}, "scale of l2 must be positive and finite; got 0.0"),
    ({"linf": -1, "l2": 1.0}, "scale of linf must be positive and finite; got -1"),
    ({"linf": math.inf, "l2": 1.0}, "scale of linf must be positive and finite; got inf"),
    ([("linf", 1)], "scale must be a mapping"),
])
def test_bad_scales_are_refused_before_any_model_pass(scale, match):
    class Counting(torch.nn.Module):
        calls = 0

        def forward(self, z):
            Counting.calls += 1
            return torch.zeros(z.shape[0], 2)

    x = torch.full((2, 3), 0.5)
    with pytest.raises(ValueError, match=match):
        affine_distances(Counting(), x, torch.zeros(2, dtype=torch.long), scale=scale)
    assert Counting.calls == 0


def test_misclassified_points_have_distance_zero_and_adversarials_verify():
    lin, x, y = linear_problem(dim=8, classes=3, n=12)
    y = y.clone()
    y[:3] = (y[:3] + 1) % 3  # three wrong labels
    a = affine_distances(lin, x, y, scale={"linf": 0.05, "l2": 0.1}, lambdas=2, restarts=1,
                         return_adversarials=True)
    assert isinstance(a, Distances)
    assert np.all(a.distances[:3] == 0) and np.all(a.distances[3:] > 0)
    broken = np.isfinite(a.distances) & (a.distances > 0)
    with torch.no_grad():
        pred = lin(torch.as_tensor(a.adversarials[broken])).argmax(1).numpy()
    assert np.all(pred != y.numpy()[broken])

"""robcurves.studies.paper: Theorem 1, Example 1 and Theorem 2 of Risse, Göpfert & Göpfert as
constructions whose exact curves must show what the theory predicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robcurves.studies import paper

NORMS = ("linf", "l2", "l1")


def _errors_between(curve, lo: float, hi: float) -> float:
    """Robust error at the midpoint of (lo, hi)."""
    return float(curve.robust_error(0.5 * (lo + hi)))


@pytest.mark.parametrize("thresholds", [[0.3], [0.1, 0.25, 0.3, 0.7],
                                        [1e-3, 2e-3, 0.5, 0.5001, 3.0, 40.0, 41.0]])
def test_theorem1_curves_cross_exactly_at_the_chosen_eps(thresholds):
    r = paper.theorem1(thresholds, points_per_step=3)
    assert set(r.curves) == set(NORMS)
    for k in NORMS:
        c1, c2 = r.curves[k]
        # distances are the designed coordinates: |x_1| for c1, |x_2| for c2 (closed form)
        np.testing.assert_allclose(c1.distances, np.abs(r.x[:, 0]), rtol=1e-12)
        np.testing.assert_allclose(c2.distances, np.abs(r.x[:, 1]), rtol=1e-12)
        found = r.found[k]
        assert [c.eps for c in found] == pytest.approx(thresholds, rel=1e-12)
        assert [c.eps_end for c in found] == pytest.approx(thresholds, rel=1e-12)
        for i, c in enumerate(found, start=1):
            before, after = ("c1", "c2") if i % 2 else ("c2", "c1")
            assert (c.better_before, c.better_after) == (before, after)
        # the roles, read off the curves directly: just below an odd-numbered threshold c1
        # has the strictly lower robust error, just below an even-numbered one c2 does
        edges = [thresholds[0] / 2] + list(thresholds)
        for i in range(1, len(edges)):
            r1 = _errors_between(c1, edges[i - 1], edges[i])
            r2 = _errors_between(c2, edges[i - 1], edges[i])
            assert (r1 < r2) if i % 2 else (r1 > r2), (k, i, r1, r2)
    assert r.agrees()


def test_theorem1_agreement_check_can_fail_and_markdown_reports_it():
    r = paper.theorem1([0.2, 0.4])
    assert r.agrees("l2")
    shifted = {k: tuple(paper.PredictedCrossing(p.eps * 1.01, p.better_before,
                                                p.better_after) for p in v)
               for k, v in r.predicted.items()}
    swapped = {k: tuple(paper.PredictedCrossing(p.eps, p.better_after, p.better_before)
                        for p in v) for k, v in r.predicted.items()}
    for wrong in (shifted, swapped, {k: v[:1] for k, v in r.predicted.items()}):
        bad = paper.CrossingConstruction(r.title, r.claim, r.x, r.y, r.models, r.curves,
                                         wrong, r.found)
        assert not bad.agrees()
        assert "| NO |" in bad.to_markdown()
    md = r.to_markdown()
    assert "0.2: c1 -> c2" in md and "0.4: c2 -> c1" in md and "| NO |" not in md


def test_theorem1_crossings_are_significant_with_enough_points():
    r = paper.theorem1([0.1, 0.25, 0.3, 0.7], points_per_step=10)
    assert all(c.significant for c in r.found["l2"])


@pytest.mark.parametrize("bad, match", [([], "at least one"), ([0.2, 0.1], "increasing"),
                                        ([0.1, 0.1], "increasing"), ([0.0, 1.0], "> 0"),
                                        ([0.1, math.nan], "finite"),
                                        ([0.1, math.inf], "finite")])
def test_theorem1_rejects_bad_thresholds(bad, match):
    with pytest.raises(ValueError, match=match):
        paper.theorem1(bad)


def test_theorem1_rejects_bad_points_per_step():
    with pytest.raises(ValueError, match="points_per_step"):
        paper.theorem1([0.1], points_per_step=0)


def test_example1_crosses_in_l2_not_in_linf():
    r = paper.example1()
    assert r.agrees()
    (cross,) = r.found["l2"]
    assert cross.eps == pytest.approx(1.0, rel=1e-12)
    assert (cross.better_before, cross.better_after) == ("c1", "c2")
    assert r.found["linf"] == ()
    # independently of compare(): in l_inf c1's robust error never exceeds c2's, in l2 it
    # does on one side of 1 and not on the other
    c1, c2 = r.curves["linf"]
    knots = np.unique(np.concatenate([c1.distances, c2.distances]))
    assert np.all(c1.robust_error(knots) <= c2.robust_error(knots))
    c1, c2 = r.curves["l2"]
    assert c1.robust_error(0.9) < c2.robust_error(0.9)
    assert c1.robust_error(1.1) > c2.robust_error(1.1)
    # closed forms: c2's l_inf distances are its l2 distances / sqrt 2, c1's are equal
    np.testing.assert_allclose(r.curves["linf"][1].distances,
                               r.curves["l2"][1].distances / math.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(r.curves["linf"][0].distances, r.curves["l2"][0].distances,
                               rtol=1e-12)
    assert sorted(set(np.round(r.curves["l2"][1].distances, 12))) == list(paper.EXAMPLE1_L2)
    md = r.to_markdown()
    assert "| linf | none | none | yes |" in md


def test_theorem2_linear_curves_are_scaled_copies_when_the_box_does_not_bind():
    r = paper.theorem2(n=150, dim=8, seed=3)
    assert r.holds()
    assert all(v == 0 for v in r.n_box_binding.values())
    w = r.w
    for row in r.rows:
        q = {"linf": 1, "l2": 2, "l1": math.inf}
        expected = np.linalg.norm(w, q[row.norm_from]) / np.linalg.norm(w, q[row.norm_to])
        assert row.predicted == pytest.approx(expected, rel=1e-12)
        assert row.fit.factor == pytest.approx(expected, rel=1e-9)
        assert row.fit.misfit <= 1e-9
    # the curves are exact: |w.x + b| / ||w||_q on correctly classified points, 0 elsewhere
    f = r.x @ w + r.b
    correct = (f > 0).astype(int) == r.y
    assert 0 < correct.sum() < len(r.y)  # some points misclassified: distance 0 in every norm
    for k, q in (("linf", 1), ("l2", 2), ("l1", math.inf)):
        expected = np.where(correct, np.abs(f) / np.linalg.norm(w, q), 0.0)
        np.testing.assert_allclose(r.curves[k].distances, expected, rtol=1e-9, atol=1e-15)
    assert "The theorem holds here." in r.to_markdown()


def test_theorem2_fails_when_the_box_binds():
    dim = 9
    r = paper.theorem2(n=200, dim=dim, box_binds=True, seed=1)
    assert not r.holds()
    assert r.n_box_binding["linf"] > 0 and r.n_box_binding["l2"] > 0
    for row in r.rows:
        assert row.fit.misfit > 0.1, row
    # the mechanism: free points keep Theorem 2's ratio sqrt(dim) between l2 and l_inf,
    # saturated points (every coordinate but one at 1) have the same distance in every norm
    dinf, d2 = r.curves["linf"].distances, r.curves["l2"].distances
    n_free = 200 // 4 + 200 // 4
    np.testing.assert_allclose(d2[:n_free] / dinf[:n_free], math.sqrt(dim), rtol=1e-6)
    np.testing.assert_allclose(d2[n_free:], dinf[n_free:], rtol=1e-6)
    assert "does not hold here" in r.to_markdown()


def test_linear_scaling_rejects_bad_input():
    x = np.zeros((3, 2))
    y = np.zeros(3, dtype=int)
    with pytest.raises(ValueError, match=r"x must be \(N, 3\)"):
        paper.linear_scaling(np.ones(3), 0.0, x, y)
    with pytest.raises(ValueError, match="all zero"):
        paper.linear_scaling(np.zeros(2), 0.0, x, y)
    with pytest.raises(ValueError, match="two different norms"):
        paper.linear_scaling(np.ones(2), 0.0, x, y, norms=("l2", "l2"))


def test_theorem1_norm_choice():
    r = paper.theorem1([0.5], norms=("l2", "2"))
    assert list(r.curves) == ["l2"] and r.agrees()
    with pytest.raises(ValueError, match="at least one norm"):
        paper.theorem1([0.5], norms=())
    with pytest.raises(ValueError, match="l5"):
        paper.theorem1([0.5], norms=("l5",))

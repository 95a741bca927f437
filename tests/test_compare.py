"""Properties of robcurves.comparison: exact crossings, win intervals, significance, tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robcurves.comparison import compare, dkw_halfwidth
from robcurves.curve import RobustnessCurve


def _curve(d, name, norm="linf", indices=None, **kw) -> RobustnessCurve:
    d = np.asarray(d, dtype=np.float64)
    idx = np.arange(d.size) if indices is None else indices
    return RobustnessCurve(distances=d, norm=norm, name=name, indices=idx, **kw)


def _interleaved(rng: np.random.Generator, m: int):
    """Random disjoint threshold sets T1 (A must win) and T2 (B must win), and distances.

    Walk the thresholds in order keeping the count difference c = #A<=eps - #B<=eps at -1 on T1
    thresholds and +1 on T2 thresholds; each change of the required sign is made by two point
    masses of one model placed in the gap before the threshold, either at one location (the
    curves swap in one step) or at two (they are tied in between). Returns T1, T2, the
    distances of A and B, and the list of expected crossings (eps, eps_end, before, after).
    """
    t = np.sort(rng.uniform(0.05, 1.0, size=m))
    while np.min(np.diff(t)) < 1e-3:
        t = np.sort(rng.uniform(0.05, 1.0, size=m))
    want = rng.choice([-1, 1], size=m)  # -1: A wins at t, +1: B wins
    a: list[float] = []
    b: list[float] = []
    c = 0
    crossings = []
    prev = 0.0
    for k in range(m):
        lo, hi = prev, t[k]
        if c != want[k]:
            locs = np.sort(rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), size=2))
            if c == 0 or rng.random() < 0.5:
                locs[:] = locs[0]
            n_pts = abs(want[k] - c)
            target = b if want[k] < c else a  # B points lower c, A points raise it
            target.extend(locs[:n_pts] if n_pts == 2 else locs[:1])
            if c != 0:
                before = "A" if c < 0 else "B"
                after = "A" if want[k] < 0 else "B"
                crossings.append((locs[0], locs[1], before, after))
            c = int(want[k])
        prev = hi
    n = max(len(a), len(b)) + 3
    da = np.array(a + [math.inf] * (n - len(a)))
    db = np.array(b + [math.inf] * (n - len(b)))
    return t[want < 0], t[want > 0], da, db, crossings


@pytest.mark.parametrize("seed", range(8))
def test_interleaved_point_masses_give_the_planted_win_intervals_and_crossings(seed):
    rng = np.random.default_rng(seed)
    t1, t2, da, db, expected = _interleaved(rng, m=int(rng.integers(3, 9)))
    A, B = _curve(da, "A"), _curve(db, "B")
    # Sanity of the construction itself (independent of compare).
    assert np.all(A.robust_error(t1) < B.robust_error(t1))
    assert np.all(A.robust_error(t2) > B.robust_error(t2))
    cmp = compare([A, B], n_boot=50)
    ivs = cmp.pair("A", "B").intervals
    for eps in t1:
        hits = [iv for iv in ivs if iv.contains(eps)]
        assert len(hits) == 1 and hits[0].winner == "A" and hits[0].loser == "B"
        assert hits[0].max_diff >= 1 / A.n - 1e-12
    for eps in t2:
        hits = [iv for iv in ivs if iv.contains(eps)]
        assert len(hits) == 1 and hits[0].winner == "B"
    got = [(c.eps, c.eps_end, c.better_before, c.better_after) for c in cmp.crossings]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[0] == e[0] and g[1] == e[1] and g[2:] == e[2:]
    # Between consecutive crossings the winner is constant and alternates.
    for c1, c2 in zip(cmp.crossings[:-1], cmp.crossings[1:], strict=True):
        assert c1.better_after == c2.better_before
        assert c1.eps_end <= c2.eps
    # Every crossing exposes eps and both model names.
    for c in cmp.crossings:
        assert set(c.models) == {"A", "B"}


def test_crossing_of_two_step_curves_is_exact():
    # A: errors at 0.1, 0.2, 0.3; B: errors at 0.05, 0.25, 0.26, and one point never broken.
    A = _curve([0.1, 0.2, 0.3, 0.4], "A")
    B = _curve([0.05, 0.25, 0.26, math.inf], "B")
    cmp = compare([A, B], n_boot=20)
    # R_A - R_B: [0,.05): 0; [.05,.1): -1/4 (A wins); [.1,.2): 0; [.2,.25): +1/4 (B wins);
    # [.25,.26): 0; [.26,.3): -1/4 (A wins); [.3,.4): 0; [.4, inf): +1/4 (B wins).
    ivs = cmp.pair("A", "B").intervals
    assert [(iv.lo, iv.hi, iv.winner) for iv in ivs] == [
        (0.05, 0.1, "A"), (0.2, 0.25, "B"), (0.26, 0.3, "A"), (0.4, math.inf, "B")]
    assert all(iv.max_diff == pytest.approx(0.25) for iv in ivs)
    assert [(c.eps, c.eps_end) for c in cmp.crossings] == [(0.1, 0.2), (0.25, 0.26), (0.3, 0.4)]


def test_identical_curves_have_no_crossing_and_no_significant_difference():
    rng = np.random.default_rng(1)
    d = np.where(rng.random(300) < 0.1, 0.0, rng.gamma(2.0, 0.02, size=300))
    d[:7] = math.inf
    cmp = compare([_curve(d, "A"), _curve(d.copy(), "B")], n_boot=200)
    p = cmp.pair("A", "B")
    assert cmp.crossings == () and p.intervals == ()
    assert not p.significant and p.max_abs_diff == 0.0 and p.p_value == 1.0
    tab = cmp.table([0.01, 0.03, 0.1])
    assert not tab.misleading.any() and not tab.diff_significant.any()
    assert (tab.ranks == 1).all()  # tied models share rank 1


def test_same_model_on_random_subsets_false_positive_rate_is_near_nominal():
    """Two halves of one distance distribution, paired arbitrarily: the null hypothesis holds.

    The fraction of seeds on which compare calls any difference significant must be near
    1 - level (the simultaneous band controls the family-wise error over all eps).
    """
    n, seeds, level = 120, 300, 0.95
    rng = np.random.default_rng(12345)
    hits = 0
    for s in range(seeds):
        pool = np.where(rng.random(2 * n) < 0.15, 0.0, rng.lognormal(-3.0, 0.6, size=2 * n))
        pool[rng.random(2 * n) < 0.05] = math.inf
        cmp = compare([_curve(pool[:n], "A"), _curve(pool[n:], "B")], n_boot=199, seed=s,
                      level=level)
        hits += cmp.pair("A", "B").significant
    fpr = hits / seeds
    # Binomial sd at p=0.05 over 300 seeds is 0.0126: allow ~2.4 sd either way.
    assert 0.02 <= fpr <= 0.08, fpr


def test_a_real_difference_is_significant_and_crossing_localised():
    rng = np.random.default_rng(3)
    n = 400
    base = rng.lognormal(-3.0, 0.5, size=n)
    # B: more clean errors (worse at small eps) but far more robust at large eps.
    db = np.where(rng.random(n) < 0.3, 0.0, 2.5 * base)
    cmp = compare([_curve(base, "A"), _curve(db, "B")], n_boot=300)
    p = cmp.pair("A", "B")
    assert p.significant and p.p_value < 0.01
    sig = [c for c in cmp.crossings if c.significant]
    assert len(sig) >= 1
    lo, hi = sig[0].region
    assert lo <= sig[0].eps <= hi and sig[0].better_before == "A"


def test_dkw_band_halfwidth_and_coverage_in_the_comparison():
    n = 500
    assert dkw_halfwidth(n, 0.95) == pytest.approx(math.sqrt(math.log(40.0) / 1000.0))
    rng = np.random.default_rng(4)
    cmp = compare([_curve(rng.exponential(size=n), "A"), _curve(rng.exponential(size=n), "B")],
                  n_boot=20)
    lo, hi = cmp.band("A", [0.5, 1.0])
    r = cmp.curves[0].robust_error([0.5, 1.0])
    assert np.allclose(hi - r, cmp.dkw) and np.allclose(r - lo, cmp.dkw)
    # True exponential CDF inside the band.
    truth = 1 - np.exp(-np.array([0.5, 1.0]))
    assert np.all((lo <= truth) & (truth <= hi))


def test_pointwise_table_ranks_and_misleading_rows():
    A = _curve([0.0, 0.1, 0.2, 0.3, 0.9, math.inf], "A")
    B = _curve([0.05, 0.06, 0.07, 0.5, 0.6, 0.7], "B")
    C = _curve([0.0, 0.0, 0.15, 0.2, 0.25, 0.3], "C")
    cmp = compare([A, B, C], n_boot=50)
    tab = cmp.table([0.04, 0.08, 0.55])
    assert tab.errors == pytest.approx(np.array([[1, 0, 2], [1, 3, 2], [4, 4, 6]]) / 6)
    assert tab.ranks.tolist() == [[2, 1, 3], [1, 3, 2], [1, 1, 3]]
    assert tab.misleading.tolist() == [True, True, True]
    rev = tab.reversals()
    assert (0.04, 0.08, "B", "A") in rev
    # With a single eps, nothing can be contradicted.
    assert not cmp.table([0.08]).misleading.any()


def test_global_summaries():
    A = _curve([0.0, 0.1, 0.2, 0.4, math.inf], "A")
    B = _curve([0.1, 0.1, 0.3, 0.3, 0.3], "B")
    cmp = compare([A, B], n_boot=20, eps_max=0.5)
    sa, sb = cmp.summaries
    assert sa.auc == pytest.approx((0.5 + 0.4 + 0.3 + 0.1) / 5)
    assert sa.auc_normalized == pytest.approx(sa.auc / 0.5)
    assert sa.median_distance == pytest.approx(0.2) and sa.eps_50 == pytest.approx(0.2)
    assert sa.eps_90 == math.inf and sa.n_unbroken == 1 and sa.clean_error == pytest.approx(0.2)
    assert sb.eps_90 == pytest.approx(0.3) and sb.eps_50 == pytest.approx(0.3)


def test_pairs_by_indices_and_intersection():
    A = _curve([0.1, 0.2, 0.3, 0.4], "A", indices=np.array([3, 1, 2, 0]))
    B = _curve([0.4, 0.2, 0.3, 0.1], "B", indices=np.array([0, 1, 2, 3]))
    cmp = compare([A, B], n_boot=20)
    assert np.array_equal(cmp.curves[0].indices, cmp.curves[1].indices)
    assert np.array_equal(cmp.curves[0].distances, cmp.curves[1].distances)
    assert cmp.crossings == ()
    C = _curve([0.5, 0.2, 0.3], "C", indices=np.array([7, 1, 2]))
    with pytest.raises(ValueError, match="different point sets.*intersect=True"):
        compare([A, C])
    cmp = compare([A, C], intersect=True, n_boot=20)
    assert cmp.n == 2 and cmp.curves[0].indices.tolist() == [1, 2]
    assert any("2 points common" in note for note in cmp.notes)


@pytest.mark.parametrize("bad, exc, message", [
    (lambda: compare([_curve([0.1], "A")]), ValueError,
     "compare needs at least two curves; got 1"),
    (lambda: compare([_curve([0.1, 0.2], "A"), _curve([0.1, 0.2], "B", norm="l2")]), ValueError,
     "curves of different norms cannot be compared (A: linf, B: l2); compare each norm "
     "separately, or use robcurves.report for several norms"),
    (lambda: compare([_curve([0.1, 0.2], "A"), _curve([0.1, 0.2], "A")]), ValueError,
     "model names must be unique; repeated: ['A']"),
    (lambda: compare([_curve([0.1, 0.2], "A"), RobustnessCurve(np.array([0.1]), "linf",
                                                               name="B")]), ValueError,
     "curves ['B'] have no point indices while others do; cannot pair points"),
    (lambda: compare([RobustnessCurve(np.array([0.1, 0.2]), "linf", name="A"),
                      RobustnessCurve(np.array([0.1]), "linf", name="B")]), ValueError,
     "curves without point indices must have the same number of points to be paired by "
     "position; got {'A': 2, 'B': 1}"),
    (lambda: compare([_curve([0.1, 0.2], "A", indices=np.array([0, 1])),
                      _curve([0.1, 0.2], "B", indices=np.array([5, 6]))], intersect=True),
     ValueError, "curves have no point in common (A: 2 points, B: 2 points)"),
    (lambda: compare([_curve([0.1, 0.2], "A", indices=np.array([1, 1])),
                      _curve([0.1, 0.2], "B")]), ValueError,
     "curve 'A' has 1 repeated point indices"),
    (lambda: compare([_curve([0.1], "A"), _curve([0.1], "B")], level=1.5), ValueError,
     "level must lie strictly between 0 and 1; got 1.5"),
    (lambda: compare([_curve([0.1], "A"), _curve([0.1], "B")], n_boot=0), ValueError,
     "n_boot must be a positive integer; got 0"),
    (lambda: compare([_curve([0.1], "A"), _curve([0.1], "B")], eps_max=-1.0), ValueError,
     "eps_max must be a positive finite number; got -1.0"),
    (lambda: compare([_curve([0.1], "A"), np.array([0.1])]), TypeError,
     "expected RobustnessCurve objects; got ndarray"),
    (lambda: compare([_curve([0.1], "A"), _curve([0.1], "B")], n_boot=5).table([-1.0]),
     ValueError, "eps must be >= 0 and not NaN; got [-1.0]"),
    (lambda: compare([_curve([0.1], "A"), _curve([0.1], "B")], n_boot=5).pair("A", "Z"),
     KeyError, "no pair ('A', 'Z'); models are ['A', 'B']"),
])
def test_bad_inputs_fail_clearly(bad, exc, message):
    """Each bad input raises the one type its docstring names (a wrong value: ValueError; an
    object that is not a curve: TypeError; an unknown model: KeyError), with this message."""
    with pytest.raises(exc) as info:
        bad()
    assert type(info.value) is exc  # not a subclass either
    assert info.value.args == (message,)


def test_too_few_points_are_never_significant():
    cmp = compare([_curve([0.0] * 5, "A"), _curve([1.0] * 5, "B")], n_boot=50)
    p = cmp.pair("A", "B")
    assert p.max_abs_diff == 1.0 and not p.significant
    assert any("too few for the bootstrap" in note for note in cmp.notes)
    # The same gap on 40 points is significant.
    cmp = compare([_curve([0.0] * 40, "A"), _curve([1.0] * 40, "B")], n_boot=50)
    assert cmp.pair("A", "B").significant

"""Union curves over several norms (issue 15, Tramèr & Boneh): closed forms, bounds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import exact_linear_distances, linear_problem

import robcurves
from robcurves import Distances, RobustnessCurve, band, certify, compare, union, union_surface

SCALE = {"linf": 0.008, "l2": 0.024, "l1": 0.04}  # about the median distances


@pytest.fixture(scope="module")
def linear():
    torch.manual_seed(0)
    lin, x, y = linear_problem(dim=12, classes=3, n=40)
    exact = {p: certify(lin, x.numpy(), y.numpy(), p, "exact-linear")
             for p in ("linf", "l2", "l1")}
    return lin, x, y, exact


def test_union_of_exact_linear_distances_is_min_of_scaled_closed_forms(linear):
    lin, x, y, exact = linear
    u = union(exact, scale=SCALE, name="lin")
    closed = np.minimum.reduce([exact_linear_distances(lin, x, y, p) / s
                                for p, s in ((math.inf, 0.008), (2.0, 0.024), (1.0, 0.04))])
    np.testing.assert_allclose(u.distances, closed, rtol=1e-6)
    assert u.kind == "exact"
    assert u.norm == "union(linf:0.008,l2:0.024,l1:0.04)"
    # every norm is the closest one for some point here, or the test would not test the min
    counts = u.metadata["closest_norm_counts"]
    assert sum(counts.values()) == u.n and min(counts.values()) > 0, counts


def test_union_lower_below_upper_and_band(linear):
    lin, x, y, exact = linear
    lower, upper = {}, {}
    for p in ("linf", "l2", "l1"):
        d = exact[p]
        rng = np.random.default_rng(1)
        # certified bounds below, attack bounds above the exact distances
        lower[p] = Distances(distances=d.distances * rng.uniform(0.5, 1.0, d.n),
                             labels=d.labels, predictions=d.predictions, indices=d.indices,
                             norm=p, method="cert", kind="lower")
        upper[p] = Distances(distances=d.distances * rng.uniform(1.0, 1.6, d.n),
                             labels=d.labels, predictions=d.predictions, indices=d.indices,
                             norm=p, method="attack", kind="upper")
    lo, up = union(lower, scale=SCALE), union(upper, scale=SCALE)
    assert lo.kind == "lower" and up.kind == "upper"
    assert np.all(lo.distances <= up.distances)
    b = band(lo, up)
    assert b.norm == lo.norm and 0 < b.max_gap <= 1
    with pytest.raises(ValueError, match="attack distances .* certified"):
        union({"linf": lower["linf"], "l2": upper["l2"]}, scale={"linf": 1, "l2": 1})


def test_union_curve_compares_saves_and_reports(linear, tmp_path):
    lin, x, y, exact = linear
    a = union(exact, scale=SCALE, name="a")
    shifted = {p: RobustnessCurve.from_distances(d, name="b") for p, d in exact.items()}
    shifted = {p: RobustnessCurve(distances=c.distances * 1.3, norm=c.norm, name="b",
                                  kind=c.kind, indices=c.indices) for p, c in shifted.items()}
    b = union(shifted, scale={"l1": 0.04, "linf": 0.008, "l2": 0.024})  # order does not matter
    cmp = compare([a, b], n_boot=50)
    assert cmp.norm_name == a.norm
    assert cmp.summaries[0].median_distance < cmp.summaries[1].median_distance
    other = union(exact, scale={**SCALE, "l2": 0.4}, name="c")
    plain = RobustnessCurve.from_distances(exact["l2"], name="l2 model")
    for bad in (other, plain):
        with pytest.raises(ValueError, match="different norms"):
            compare([a, bad], n_boot=10)
    path = a.save(tmp_path / "u.json")
    back = RobustnessCurve.load(path)
    assert back.norm == a.norm and np.array_equal(back.distances, a.distances)
    rep = robcurves.build_report([a, b, plain], n_boot=20)
    assert a.norm in rep.comparisons and "l2" in rep.curves
    paths = rep.write(tmp_path / "rep")
    assert "union" in paths["markdown"].read_text()


def test_union_surface_matches_direct_count(linear):
    lin, x, y, exact = linear
    ea, eb = [0.0, 0.01, 0.03], [0.0, 0.2, 0.5, 1.0]
    s = union_surface(exact["linf"], exact["l2"], eps_a=ea, eps_b=eb)
    da, db = exact["linf"].distances, exact["l2"].distances
    for i, e1 in enumerate(ea):
        for j, e2 in enumerate(eb):
            assert s.robust_error[i, j] == pytest.approx(np.mean((da <= e1) | (db <= e2)))
    # monotone in both radii, and the union curve is its diagonal along the threat vector
    assert np.all(np.diff(s.robust_error, axis=0) >= 0)
    assert np.all(np.diff(s.robust_error, axis=1) >= 0)
    u = union({"linf": exact["linf"], "l2": exact["l2"]}, scale={"linf": 0.01, "l2": 0.2})
    t = union_surface(exact["linf"], exact["l2"], eps_a=[0.01 * 1.7], eps_b=[0.2 * 1.7])
    assert t.robust_error[0, 0] == pytest.approx(u.robust_error(1.7))
    import matplotlib
    matplotlib.use("Agg")
    assert s.plot().get_xlabel() == "eps (linf)"


def test_union_refuses_bad_input(linear):
    lin, x, y, exact = linear
    with pytest.raises(ValueError, match="unknown norm 'l3'"):
        union(exact, scale={**SCALE, "l3": 1.0})
    with pytest.raises(ValueError, match=r"no scale for \['l1'\]"):
        union(exact, scale={"linf": 0.008, "l2": 0.024})
    with pytest.raises(ValueError, match=r"no distances for \['l1'\]"):
        union({"linf": exact["linf"], "l2": exact["l2"]}, scale=SCALE)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="scale of l2 must be positive and finite"):
            union(exact, scale={**SCALE, "l2": bad})
    moved = exact["l2"].subset(np.arange(exact["l2"].n))
    moved = Distances(distances=moved.distances, labels=moved.labels,
                      predictions=moved.predictions, indices=moved.indices + 1000, norm="l2",
                      method="x", kind="exact")
    with pytest.raises(ValueError, match="different points"):
        union({**exact, "l2": moved}, scale=SCALE)
    with pytest.raises(ValueError, match="different points"):
        union({**exact, "l2": exact["l2"].subset(np.arange(10))}, scale=SCALE)
    with pytest.raises(ValueError, match="holds l2 distances"):
        union({"linf": exact["l2"]}, scale={"linf": 1})


def test_union_pairs_points_by_index(linear):
    lin, x, y, exact = linear
    perm = np.random.default_rng(0).permutation(exact["l2"].n)
    shuffled = exact["l2"].subset(perm)
    a = union({"linf": exact["linf"], "l2": exact["l2"]}, scale={"linf": 0.008, "l2": 0.024})
    b = union({"linf": exact["linf"], "l2": shuffled}, scale={"linf": 0.008, "l2": 0.024})
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_cli_plots_and_compares_union_curves_beside_plain_ones(linear, tmp_path) -> None:
    from robcurves.cli import main

    lin, x, y, exact = linear
    a = union(exact, scale=SCALE, name="a")
    b = RobustnessCurve(distances=a.distances * 1.2, norm=a.norm, name="b", kind=a.kind,
                        indices=a.indices)
    files = [c.save(tmp_path / f"{n}.json") for n, c in
             (("a", a), ("b", b), ("l2", RobustnessCurve.from_distances(exact["l2"])))]
    main(["plot", *map(str, files), "--out", str(tmp_path / "p.png")])
    assert (tmp_path / "p.png").stat().st_size > 0
    main(["compare", str(files[0]), str(files[1]), "--out", str(tmp_path / "rep")])
    assert a.norm in (tmp_path / "rep" / "report.md").read_text()


def test_threat_labels_are_canonical_and_never_an_lp_norm() -> None:
    from robcurves._norms import parse_norm, parse_threat

    assert parse_threat("UNION(l1: 8.0, inf:0.10)") == "union(linf:0.1,l1:8)"
    assert parse_threat("spatial(px:3,deg:30.0)") == "spatial(deg:30,px:3)"
    assert parse_threat("l2") == 2.0
    with pytest.raises(ValueError, match="unknown norm 'union"):
        parse_norm("union(linf:0.1,l1:8)")  # an attack never takes a label for a norm
    with pytest.raises(ValueError, match="spatial needs exactly deg"):
        parse_threat("spatial(deg:30)")
    with pytest.raises(ValueError, match="scale of l1 must be positive"):
        RobustnessCurve(distances=[0.1], norm="union(l1:0)")

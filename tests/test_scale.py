"""Inter-class distances agree with brute-force NumPy, ties and duplicates included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from robcurves.scale import InterclassDistances, interclass_distances

NORMS = [math.inf, 2.0, 1.0]


def brute(x: np.ndarray, y: np.ndarray, p: float, same: bool = False) -> tuple[np.ndarray, ...]:
    x = x.reshape(len(x), -1).astype(np.float64)
    diff = x[:, None, :] - x[None, :, :]
    if p == math.inf:
        full = np.abs(diff).max(-1)
    elif p == 1.0:
        full = np.abs(diff).sum(-1)
    else:
        full = np.sqrt((diff ** 2).sum(-1))
    d = full.copy()
    bad = (y[:, None] != y[None]) | np.eye(len(x), dtype=bool) if same else y[:, None] == y[None]
    d[bad] = np.inf
    return d.min(1), full


def check(r: InterclassDistances, x: np.ndarray, y: np.ndarray, p: float) -> None:
    ref, full = brute(x, y, p)
    np.testing.assert_allclose(r.distances, ref, rtol=1e-12, atol=0)
    has = r.neighbors >= 0
    assert np.array_equal(has, np.isfinite(ref))
    rows = np.flatnonzero(has)
    # the neighbour attains the distance and has another label
    np.testing.assert_allclose(full[rows, r.neighbors[rows]], ref[rows], rtol=1e-12, atol=0)
    assert not np.any(y[rows] == y[r.neighbors[rows]])


@pytest.mark.parametrize("p", NORMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_continuous(p: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(40, 160)), int(rng.integers(1, 50))
    x = rng.random((n, d)).astype(np.float32)
    y = rng.integers(0, 4, n)
    r = interclass_distances(x, y, p, k=3, block_size=32, same_class=True)
    check(r, x, y, p)
    ref_same, _ = brute(x, y, p, same=True)
    np.testing.assert_allclose(r.same_distances, ref_same, rtol=1e-12, atol=0)


@pytest.mark.parametrize("p", NORMS)
def test_quantised_ties_and_duplicates(p: float) -> None:
    rng = np.random.default_rng(7)
    x = (rng.integers(0, 3, size=(150, 12)) / 2).astype(np.float32)  # values {0, .5, 1}: ties
    y = rng.integers(0, 3, 150)
    x[10] = x[20]
    y[10], y[20] = 0, 1  # conflicting duplicate
    x[30] = x[31]
    y[30] = y[31]  # harmless duplicate, same label
    r = interclass_distances(x, y, p, k=2, block_size=17, same_class=True)
    check(r, x, y, p)
    assert r.distances[10] == 0.0 and r.distances[20] == 0.0
    assert [10, 20] in r.conflicts.tolist()
    assert r.excluded[10] and r.excluded[20] and not r.excluded[30]
    assert r.same_distances[30] == 0.0 and r.same_distances[31] == 0.0
    assert r.summary()["used"] == int(r.valid.sum()) <= 148


def test_image_shaped_input_and_array_protocol() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((60, 1, 4, 5)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    r = interclass_distances(x, y, "linf")
    check(r, x, y, math.inf)
    assert np.array_equal(np.asarray(r), r.distances) and r.dim == 20
    assert r.eps_limit == pytest.approx(r.distances.min() / 2)


def test_former_singular_names_warn_and_json_keys_stay() -> None:
    rng = np.random.default_rng(5)
    x = rng.random((30, 4)).astype(np.float32)
    y = np.repeat(np.arange(3), 10)
    r = interclass_distances(x, y, "l2", same_class=True)
    for old, new in [("distance", "distances"), ("neighbor", "neighbors"),
                     ("same_distance", "same_distances"), ("same_neighbor", "same_neighbors")]:
        with pytest.warns(DeprecationWarning, match=f"InterclassDistances.{old} is deprecated; "
                                                    f"use .{new}"):
            assert getattr(r, old) is getattr(r, new)
        with pytest.raises(AttributeError):
            setattr(r, old, None)
        # scale.json keeps its keys, so files written before the rename read the same way
        assert r.to_dict()[old] == getattr(r, new).tolist()


def test_corrupted_points_reported_and_skipped() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((50, 6)).astype(np.float32)
    y = rng.integers(0, 2, 50)
    x[5, 2] = np.nan
    x[9, 0] = 1.5
    r = interclass_distances(x, y, "l2")
    assert r.corrupted.tolist() == [5, 9]
    assert np.isnan(r.distances[[5, 9]]).all() and (r.neighbors[[5, 9]] == -1).all()
    keep = np.setdiff1d(np.arange(50), [5, 9])
    sub = interclass_distances(x[keep], y[keep], 2)
    np.testing.assert_allclose(r.distances[keep], sub.distances, rtol=0, atol=0)
    assert set(r.neighbors[keep]).isdisjoint({5, 9})
    s = r.summary()
    assert s["corrupted"] == 2 and s["used"] == 48
    assert s["min"] == pytest.approx(float(sub.distances.min()))


def test_duplicate_tolerance_and_single_class() -> None:
    x = np.array([[0.0, 0.0], [0.0, 0.001], [1.0, 1.0], [1.0, 0.5]], dtype=np.float32)
    y = np.array([0, 1, 0, 0])
    r = interclass_distances(x, y, 1, duplicate_tol=0.01)
    assert r.conflicts.tolist() == [[0, 1]]
    r0 = interclass_distances(x, np.zeros(4, dtype=int), 1)
    assert np.isinf(r0.distances).all() and (r0.neighbors == -1).all()
    assert math.isnan(r0.separation)


def test_bad_arguments_are_named() -> None:
    x = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="unknown norm 'l3'"):
        interclass_distances(x, np.arange(3), "l3")
    with pytest.raises(ValueError, match="shapes"):
        interclass_distances(x, np.arange(4), 2)
    with pytest.raises(ValueError, match="integer labels"):
        interclass_distances(x, np.array([0.5, 1.0, 2.0]), 2)


def test_real_mnist_subset_matches_brute_force() -> None:
    from conftest import shared_data

    from robcurves.data import load

    root = shared_data("mnist")

    d = load(root).subset(slice(0, 150))
    for p in NORMS:
        check(interclass_distances(d.x, d.y, p, block_size=64), d.x, d.y, p)


@pytest.mark.parametrize("cache", [True, False])
def test_linf_indicator_cache_on_and_off(cache: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The l_inf certificate gives the brute-force answer whether or not the reference-side
    indicators are cached (large sets recompute them per block)."""
    import robcurves._interclass_engine as engine

    monkeypatch.setattr(engine, "_INDICATOR_CACHE_BYTES", (1 << 30) if cache else 0)
    rng = np.random.default_rng(11)
    x = (rng.integers(0, 256, size=(300, 40)) / 255).astype(np.float32)
    x[rng.random(x.shape) < 0.6] = 0.0  # sparse, MNIST-like: many near-1.0 ties
    x[rng.random(x.shape) < 0.1] = 1.0
    y = rng.integers(0, 5, 300)
    check(interclass_distances(x, y, math.inf, block_size=37, levels=2), x, y, math.inf)


@pytest.mark.parametrize("dim", [40, 700])
def test_linf_dense_fallback_matches_brute_force(dim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Continuous data: the indicator certificate proves little, so pass 2 switches to float32
    l_inf bounds (on a coordinate subset when D > 512); the answer stays exact."""
    import robcurves._interclass_engine as engine

    monkeypatch.setattr(engine, "_DENSE_SWITCH", 0.0)
    rng = np.random.default_rng(dim)
    x = rng.random((260, dim)).astype(np.float32)
    y = rng.integers(0, 4, 260)
    check(interclass_distances(x, y, math.inf, block_size=50, k=2), x, y, math.inf)


@pytest.mark.parametrize("dim", [41, 300])
def test_l1_pooled_fallback_matches_brute_force(dim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the switch forced, l1 pass 2 prunes by group sums (D not a multiple of the group
    size included); the answer stays exact."""
    import robcurves._interclass_engine as engine

    monkeypatch.setattr(engine, "_DENSE_SWITCH", 0.0)
    rng = np.random.default_rng(dim)
    x = rng.random((240, dim)).astype(np.float32)
    x[:60] = np.round(x[:60] * 4) / 4  # some quantised rows: ties
    y = rng.integers(0, 4, 240)
    check(interclass_distances(x, y, 1, block_size=50, k=2), x, y, 1.0)


@pytest.fixture(scope="module")
def gtsrb_240():
    """The first 240 GTSRB test images, loaded once for the three norms (the file holds 12,630).
    """
    from conftest import shared_data

    from robcurves.data import load

    return load(shared_data("gtsrb/gtsrb_test_32x32.npz")).subset(slice(0, 240))


@pytest.mark.parametrize("p", NORMS)
def test_real_gtsrb_subset_matches_brute_force(gtsrb_240, p: float) -> None:
    """Natural images (GTSRB, 3072 dims), where l_inf and l1 take the dense fallbacks: exact
    against a float64 brute force, row by row."""
    d = gtsrb_240
    x = d.x.reshape(len(d.x), -1)
    r = interclass_distances(x, d.y, p, block_size=64)
    x64 = x.astype(np.float64)
    for i in range(len(x)):
        diff = np.abs(x64 - x64[i])
        full = diff.max(1) if p == math.inf else (diff.sum(1) if p == 1.0
                                                  else np.sqrt((diff ** 2).sum(1)))
        other = d.y != d.y[i]
        ref = full[other].min() if other.any() else np.inf
        np.testing.assert_allclose(r.distances[i], ref, rtol=1e-12, atol=0)
        if np.isfinite(ref):
            np.testing.assert_allclose(full[r.neighbors[i]], ref, rtol=1e-12, atol=0)
            assert d.y[r.neighbors[i]] != d.y[i]


def test_cli_scale_reports_a_one_class_set_and_carries_on(tmp_path: Path, capsys) -> None:
    """Issue 13.9: a subset holding one class crashed the JSON writer (nan summary)."""
    import json

    from robcurves.cli import main

    rng = np.random.default_rng(0)
    one = tmp_path / "one.npz"
    np.savez(one, x=rng.random((12, 5)).astype(np.float32), y=np.full(12, 3))
    two = tmp_path / "two.npz"
    x2 = rng.random((16, 5)).astype(np.float32)
    y2 = np.arange(16) % 2
    np.savez(two, x=x2, y=y2)
    dup = tmp_path / "dup.npz"  # two points, equal, of different classes: nothing left to measure
    np.savez(dup, x=np.zeros((2, 5), np.float32), y=np.array([0, 1]))
    out = tmp_path / "out"
    assert main(["scale", str(one), str(two), str(dup), "--norms", "2",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "no inter-class pairs" in printed and "class 3" in printed
    res = json.loads((out / "scale.json").read_text())["data"]
    assert [e["name"] for e in res] == ["one", "two", "dup"]
    assert res[0]["norms"] == {} and "no inter-class pairs" in res[0]["note"]
    brute = min(np.linalg.norm(x2[i] - x2[j]) for i in range(16) for j in range(16)
                if y2[i] != y2[j])
    assert res[1]["norms"]["l2"]["summary"]["min"] == pytest.approx(brute, rel=1e-6)
    assert res[2]["norms"]["l2"]["summary"]["min"] is None  # no valid point: null, not a crash
    assert "no inter-class pairs" in (out / "scale.md").read_text()

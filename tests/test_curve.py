import json
import math

import numpy as np
import pytest

from robcurves import Distances, RobustnessCurve, parse_norm


def test_parse_norm_accepts_all_spellings_and_rejects_others():
    for v in ("inf", "linf", "LINF", float("inf")):
        assert parse_norm(v) == math.inf
    for v in (2, "l2", 2.0, "2"):
        assert parse_norm(v) == 2.0
    for v in (1, "l1", "1"):
        assert parse_norm(v) == 1.0
    for bad in ("l3", 3, 0, "", None, True):
        with pytest.raises(ValueError, match="unknown norm"):
            parse_norm(bad)


def test_robust_error_is_exact_right_continuous_ecdf():
    rng = np.random.default_rng(1)
    d = np.concatenate([np.zeros(7), rng.exponential(0.1, 90), np.full(3, np.inf)])
    rng.shuffle(d)
    c = RobustnessCurve.from_distances(d, norm="l2")
    eps = np.concatenate([[0.0], np.sort(d[np.isfinite(d)]), rng.uniform(0, 0.5, 200)])
    counted = np.array([(d <= e).mean() for e in eps])
    np.testing.assert_array_equal(c.robust_error(eps), counted)
    # right-continuous: at a knot the step is already taken, just below it is not
    k = float(np.sort(d[d > 0])[10])
    assert c.robust_error(k) > c.robust_error(np.nextafter(k, 0))
    assert c.clean_error == pytest.approx(0.07)
    np.testing.assert_allclose(c.robust_accuracy(eps), 1 - counted)
    grid = np.linspace(0, 1, 500)
    assert np.all(np.diff(c.robust_error(grid)) >= 0)
    assert c.robust_error(1e9) == pytest.approx(0.97)  # unbroken points never count


def test_auc_and_quantiles_match_their_definitions():
    d = np.array([0.0, 0.1, 0.2, 0.4, np.inf])
    c = RobustnessCurve.from_distances(d, norm=1)
    # integral of the step function on [0, 0.3]: (0.3 + 0.2 + 0.1 + 0 + 0) / 5
    assert c.auc(0.3) == pytest.approx(0.6 / 5)
    grid = np.linspace(0, 0.3, 300001)
    r = c.robust_error(grid)
    assert c.auc(0.3) == pytest.approx(np.sum((r[1:] + r[:-1]) / 2 * np.diff(grid)), abs=1e-5)
    assert c.eps_at_error(0.5) == 0.2
    assert c.eps_at_error(0.4) == 0.1
    assert c.eps_at_error(1.0) == math.inf
    assert c.median_distance == 0.2


def test_save_load_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(2)
    d = Distances(distances=np.r_[0.0, rng.random(20) / 3, np.inf], labels=np.arange(22) % 3,
                  predictions=np.arange(22) % 3, indices=np.arange(100, 122), norm="l2",
                  method="pgd-search", settings={"steps": 20}, cost={"forward_per_point": 3.5})
    c = RobustnessCurve.from_distances(d, name="m", metadata={"model": {"train_eps": 0.1}})
    path = c.save(tmp_path / "c.json")
    back = RobustnessCurve.load(path)
    np.testing.assert_array_equal(back.distances, c.distances)
    np.testing.assert_array_equal(back.indices, c.indices)
    assert (back.name, back.norm, back.kind) == ("m", 2.0, "upper")
    assert back.metadata == c.metadata
    assert back.to_dict() == c.to_dict()


def test_loading_another_format_or_version_fails_clearly(tmp_path):
    c = RobustnessCurve.from_distances([0.1, 0.2], norm="inf")
    obj = c.to_dict()
    obj["version"] = 99
    (tmp_path / "v.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="version 99"):
        RobustnessCurve.load(tmp_path / "v.json")
    (tmp_path / "o.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a robcurves curve file"):
        RobustnessCurve.load(tmp_path / "o.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RobustnessCurve.load(tmp_path / "missing.json")


def test_bad_distances_are_refused():
    with pytest.raises(ValueError, match="norm is required"):
        RobustnessCurve.from_distances([0.1])
    with pytest.raises(ValueError, match=">= 0"):
        RobustnessCurve.from_distances([0.1, -0.2], norm=2)
    with pytest.raises(ValueError, match="NaN"):
        RobustnessCurve.from_distances([np.nan], norm=2)
    c = RobustnessCurve.from_distances([0.1], norm=2)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        c.robust_error(-1.0)


def test_plot_draws_a_step_line(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    c = RobustnessCurve.from_distances([0.0, 0.1, 0.3], norm="inf", name="m")
    ax = c.plot(eps_markers=[0.2])
    line = ax.get_lines()[0]
    assert line.get_label() == "m"
    assert line.get_drawstyle() == "steps-post"
    ax.figure.savefig(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000

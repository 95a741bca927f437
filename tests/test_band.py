"""The band between certified and attack curves: numbers by hand, clear refusals, the plot."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from robcurves import RobustnessCurve  # noqa: E402
from robcurves.bands import Band, band  # noqa: E402
from robcurves.results import Distances  # noqa: E402


def _curves(lower, upper, norm="inf", idx_upper=None):
    n = len(lower)
    lo = RobustnessCurve(distances=lower, norm=norm, kind="lower", indices=np.arange(n),
                         name="cert")
    up = RobustnessCurve(distances=upper, norm=norm, kind="upper", name="att",
                         indices=np.arange(n) if idx_upper is None else idx_upper)
    return lo, up


def test_band_numbers_by_hand():
    lo, up = _curves([0.0, 0.1, 0.2, 0.3], [0.0, 0.1005, 0.4, math.inf])
    b = band(lo, up)
    assert isinstance(b, Band)
    # pinned: point 0 (both 0), point 1 (0.1005 <= 1.01 * 0.1); not points 2, 3
    assert b.pinned == pytest.approx(0.5)
    assert b.eps_max == pytest.approx(0.4)
    # area = mean(min(u, 0.4) - min(l, 0.4)) = (0 + 0.0005 + 0.2 + 0.1) / 4
    assert b.area == pytest.approx(0.3005 / 4)
    # on [0.3, 0.4) the certified curve is at 1.0, the attack curve at 0.5
    assert b.max_gap == pytest.approx(0.5)
    assert b.gap(0.35) == pytest.approx(0.5)
    assert b.gap(0.05) == pytest.approx(0.0)
    s = b.summary()
    assert s["norm"] == "linf" and s["n"] == 4


def test_band_of_identical_curves_is_empty():
    d = np.array([0.0, 0.3, 0.5, 0.7])
    lo, up = _curves(d, d)
    b = band(lo, up)
    assert b.max_gap == 0.0 and b.area == 0.0 and b.pinned == 1.0


def test_band_accepts_distances():
    kw = dict(labels=[0, 1, 1], predictions=[0, 1, 1], indices=[4, 5, 6], norm=2)
    lo = Distances(distances=[0.1, 0.2, 0.3], method="crown", kind="lower", **kw)
    up = Distances(distances=[0.2, 0.2, 0.6], method="pgd", kind="upper", **kw)
    b = band(lo, up)
    assert b.pinned == pytest.approx(1 / 3)
    assert b.summary()["lower_method"] == "crown"


def test_band_refuses_mismatches():
    lo, up = _curves([0.1, 0.2], [0.2, 0.3], idx_upper=np.array([0, 7]))
    with pytest.raises(ValueError, match="different point sets: 1 of 2 indices differ"):
        band(lo, up)
    lo2 = RobustnessCurve(distances=[0.1, 0.2], norm=2, kind="lower")
    up2 = RobustnessCurve(distances=[0.1, 0.2], norm="inf", kind="upper")
    with pytest.raises(ValueError, match="different norms: lower l2, upper linf"):
        band(lo2, up2)
    with pytest.raises(ValueError, match="different numbers of points"):
        band(RobustnessCurve(distances=[0.1], norm=2, kind="lower"),
             RobustnessCurve(distances=[0.1, 0.2], norm=2, kind="upper"))
    lo3, up3 = _curves([0.1, 0.5], [0.2, 0.3])
    with pytest.raises(ValueError, match="certified distance above the attack distance"):
        band(lo3, up3)
    with pytest.raises(ValueError, match="pass certified distances"):
        band(up3, up3)


def test_band_plot_shades_the_region():
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    lo, up = _curves([0.0, 0.1, 0.2, 0.3], [0.0, 0.15, 0.4, math.inf])
    ax = band(lo, up).plot()
    assert any(isinstance(c, PolyCollection) for c in ax.collections)
    assert len(ax.lines) == 2
    plt.close("all")

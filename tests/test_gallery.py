"""The adversarial-example gallery (robcurves.report.gallery, ``robcurves gallery``)."""

from __future__ import annotations

import pickle

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from robcurves import data as rdata  # noqa: E402
from robcurves import distances, wrap  # noqa: E402
from robcurves.cli import main  # noqa: E402
from robcurves.report.gallery import gallery, pick_points, to_image  # noqa: E402


@pytest.fixture(scope="module")
def model():
    """Logistic regression on digits 200.. and the estimator itself (for a model file)."""
    from sklearn.linear_model import LogisticRegression

    ds = rdata.load("digits")
    lr = LogisticRegression(max_iter=300).fit(ds.x[200:].reshape(-1, 64), ds.y[200:])
    return wrap(lr), ds, lr


def test_pick_points_evenly_spaced_ranks():
    d = np.array([0.0, 0.5, np.inf, 0.1, 0.3, 0.2, 0.4, 0.9])
    y = np.zeros(8, dtype=int)
    pred = np.array([0, 0, 0, 0, 0, 0, 0, 1])  # the last point is misclassified
    # correct and broken: 0.5, 0.1, 0.3, 0.2, 0.4 -> sorted positions 3, 5, 4, 6, 1
    assert pick_points(d, y, pred, 3).tolist() == [3, 4, 1]
    assert pick_points(d, y, pred, 5).tolist() == [3, 5, 4, 6, 1]
    assert pick_points(d, y, pred, 50).tolist() == [3, 5, 4, 6, 1]
    with pytest.raises(ValueError, match="n must be >= 1"):
        pick_points(d, y, pred, 0)


def test_to_image_refuses_vectors():
    assert to_image(np.zeros((1, 4, 5))).shape == (4, 5)
    assert to_image(np.zeros((3, 4, 5))).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"got shape \(64,\)"):
        to_image(np.zeros(64))


def test_gallery_shows_the_minimal_distances(model):
    net, ds, _ = model
    x, y = ds.x[:24], ds.y[:24]
    fig = gallery(net, x, y, "inf", n=5)
    d = distances(net, x, y, "inf")
    want = d.distances[pick_points(d.distances, d.labels, d.predictions, 5)]
    axes = np.array(fig.axes).reshape(3, 5)
    shown = [float(ax.get_title().split("\n")[0].removeprefix("d*=")) for ax in axes[1]]
    np.testing.assert_allclose(shown, want, rtol=5e-3)  # titles round to 3 digits
    assert shown == sorted(shown)
    for top, bottom in zip(axes[0], axes[2], strict=True):  # the prediction changed
        assert top.get_title().split("f=")[1] != bottom.get_title().removeprefix("f=")


def test_gallery_command(model, tmp_path):
    _, _, lr = model
    path = tmp_path / "m.pkl"
    with open(path, "wb") as f:
        pickle.dump(lr, f)
    out = tmp_path / "g.png"
    assert main(["gallery", "--model", str(path), "--data", "digits", "--norm", "2", "--n", "3",
                 "--pool", "12", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["gallery", "--model", str(path), "--data", "digits", "--norm", "2,inf",
                 "--out", str(out)]) == 2

"""wrap(): one dispatch without import cycles, preprocessing broadcast on flat and image inputs,
and inputs without a box (bounds=None), checked against closed forms."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robcurves
from robcurves.classifier import Preprocess, as_bounds

SRC = Path(__file__).resolve().parents[1] / "src"


def _mlp(d: int = 10, k: int = 3) -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, k))


# ----------------------------------------------------------------------------- structure
def _robcurves_imports(path) -> set[str]:
    """Modules of robcurves that a source file imports (absolute dotted names), by its AST."""
    tree = ast.parse(path.read_text())
    pkg = list(path.relative_to(SRC).parent.parts)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("robcurves")}


def test_the_interface_and_bridges_never_import_wrap():
    # classifier.py is the interface's one home; the bridges build on it and only model.py
    # (wrap) imports the bridges: no module on that side may import robcurves.model.
    files = [SRC / "robcurves" / "classifier.py",
             *sorted((SRC / "robcurves" / "bridges").glob("*.py"))]
    seen = {f.name: _robcurves_imports(f) for f in files}
    assert "robcurves.classifier" in seen["jax.py"]  # the parser resolves relative imports
    bad = {f: sorted(m for m in mods if m.startswith("robcurves.model"))
           for f, mods in seen.items()}
    assert not any(bad.values()), bad


def test_model_module_reexports_the_one_interface():
    import robcurves.classifier as c
    import robcurves.model as m

    assert m.Classifier is c.Classifier and m.TorchClassifier is c.TorchClassifier
    assert robcurves.Classifier is c.Classifier
    clf = robcurves.wrap(_mlp())
    assert type(clf) is c.TorchClassifier and robcurves.wrap(clf) is clf


# ----------------------------------------------------------------------------- preprocessing
def test_scalar_preprocessing_on_flat_inputs_keeps_the_batch_shape():
    mlp = _mlp()
    x = torch.rand(150, 10)
    clf = robcurves.wrap(mlp, bounds=(0, 1), preprocessing={"mean": [0.5], "std": [0.1]})
    z = clf.logits(x)
    assert z.shape == (150, 3)
    with torch.no_grad():
        torch.testing.assert_close(z, mlp((x - 0.5) / 0.1))


def test_per_feature_preprocessing_on_flat_inputs():
    mlp = _mlp()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 10, generator=g)
    mean, std = torch.rand(10, generator=g), 0.1 + torch.rand(10, generator=g)
    clf = robcurves.wrap(mlp, preprocessing={"mean": mean.tolist(), "std": std.tolist()})
    with torch.no_grad():
        torch.testing.assert_close(clf.logits(x), mlp((x - mean) / std))


def test_per_channel_preprocessing_on_images_is_unchanged():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    x = torch.rand(6, 3, 6, 6)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    clf = robcurves.wrap(cnn, preprocessing={"mean": mean, "std": std})
    ref = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(clf.logits(x), cnn(ref))


@pytest.mark.parametrize("shape, values, needs", [
    ((8, 10), 2, "need 1 or 10, one per feature along axis 1"),
    ((8, 3, 5, 5), 5, "need 1 or 3, one per channel along axis 1"),
])
def test_preprocessing_of_the_wrong_length_is_refused_naming_the_shapes(shape, values, needs):
    pre = Preprocess({"mean": [0.1] * values, "std": 1.0})
    with pytest.raises(ValueError, match=needs) as err:
        pre(torch.rand(shape))
    assert f"has {values} values" in str(err.value)
    assert "inputs of shape (N, " + ", ".join(map(str, shape[1:])) + ")" in str(err.value)


def test_bad_preprocessing_is_refused_when_wrapping():
    for pre, match in [({"mean": 0.0, "std": 0.0}, "std must be > 0"),
                       ({"mean": math.nan}, "must be finite"),
                       ({"mean": 0.0, "axis": "c"}, "axis must be an integer"),
                       ({"scale": 2.0}, "unknown")]:
        with pytest.raises(ValueError, match=match):
            robcurves.wrap(_mlp(), preprocessing=pre)


def test_flat_preprocessing_is_folded_into_certified_radii():
    # an affine model behind per-feature standardisation is the affine model (w/s, b - w.m/s);
    # its exact l2 radius is |margin| / ||w_diff / s||_2 in raw space
    g = torch.Generator().manual_seed(2)
    lin = nn.Linear(6, 2)
    mean, std = torch.rand(6, generator=g), 0.5 + torch.rand(6, generator=g)
    x = mean + 0.3 * torch.randn(20, 6, generator=g)
    clf = robcurves.wrap(lin, bounds=None, preprocessing={"mean": mean.tolist(),
                                                          "std": std.tolist()})
    y = clf.predict(x)
    cert = robcurves.certify(clf, x, y, 2, method="exact-linear")
    with torch.no_grad():
        w = ((lin.weight[0] - lin.weight[1]) / std).double()
        b = float(lin.bias[0] - lin.bias[1]) - float((w * mean.double()).sum())
        exact = ((x.double() @ w + b).abs() / w.norm()).numpy()
    np.testing.assert_allclose(cert.distances, exact, rtol=1e-4)


# ----------------------------------------------------------------------------- no box
def test_bounds_none_and_infinite_sides_are_accepted():
    assert as_bounds(None) == (-math.inf, math.inf)
    assert as_bounds((None, None)) == (-math.inf, math.inf)
    assert as_bounds((0, None)) == (0.0, math.inf)
    assert as_bounds((-math.inf, 1)) == (-math.inf, 1.0)
    assert robcurves.wrap(_mlp(), bounds=None).bounds == (-math.inf, math.inf)
    for bad in [(1, 0), (0, 0), (math.nan, 1), (math.inf, math.inf), (0,), "01", 3]:
        with pytest.raises(ValueError, match="bounds"):
            as_bounds(bad)


def _affine_far_from_the_unit_box(n: int = 30, d: int = 8):
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, d, generator=g))
        lin.bias.copy_(torch.tensor([3.0, -2.0]))
        x = 20 * torch.randn(n, d, generator=g) + 5  # far outside [0, 1]
        y = lin(x).argmax(1)
        w = (lin.weight[0] - lin.weight[1]).double()
        b = float(lin.bias[0] - lin.bias[1])
    exact = ((x.double() @ w + b).abs() / w.norm()).numpy()
    return lin, x, y, w, b, exact


@pytest.mark.parametrize("attack", ["deepfool", "fmn"])
@pytest.mark.parametrize("bounds", [None, (None, None), (-math.inf, math.inf)])
def test_unbounded_distances_match_the_closed_form(attack, bounds):
    lin, x, y, _, _, exact = _affine_far_from_the_unit_box()
    assert (x.abs() > 1).float().mean() > 0.9
    clf = robcurves.wrap(lin, bounds=bounds)
    d = robcurves.distances(clf, x, y, 2, attack=attack, return_adversarials=True)
    assert np.isfinite(d.distances).all()
    assert (d.distances >= exact * (1 - 1e-5)).all()  # attack distances are upper bounds
    np.testing.assert_allclose(d.distances, exact, rtol=1e-3)
    # the same through an unwrapped module and explicit infinite bounds
    d2 = robcurves.distances(lin, x, y, 2, attack=attack, bounds=(None, None))
    np.testing.assert_allclose(d2.distances, d.distances, rtol=1e-6)


def _l2_to_hyperplane_above_zero(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """Exact min ||delta||_2 with w.(x + delta) + b = 0 and x + delta >= 0, per row: by KKT
    delta_i = max(lam * w_i, -x_i), and w.delta is nondecreasing in lam (bisection)."""
    out = np.empty(x.shape[0])
    for i, xi in enumerate(x):
        t = -(xi @ w + b)
        lo, hi = -1e6, 1e6
        for _ in range(200):
            lam = (lo + hi) / 2
            if w @ np.maximum(lam * w, -xi) < t:
                lo = lam
            else:
                hi = lam
        out[i] = np.linalg.norm(np.maximum(hi * w, -xi))
    return out


def test_a_half_infinite_box_binds_only_on_its_finite_side():
    lin, *_ = _affine_far_from_the_unit_box()
    g = torch.Generator().manual_seed(1)
    x = (4 * torch.randn(40, 8, generator=g)).abs() + 0.05  # in (0, inf), most far above 1
    with torch.no_grad():
        lin.bias[0] = lin.bias[1] - (lin.weight[0] - lin.weight[1]) @ x.mean(0)
        y = lin(x).argmax(1)
        w = (lin.weight[0] - lin.weight[1]).double().numpy()
        b = float(lin.bias[0] - lin.bias[1])
    xd = x.double().numpy()
    free = np.abs(xd @ w + b) / np.linalg.norm(w)  # the box ignored
    exact = _l2_to_hyperplane_above_zero(xd, w, b)
    # the box binds on several points by more than the attack tolerance below
    assert (exact >= free * (1 - 1e-9)).all() and (exact > free * (1 + 2e-3)).sum() >= 3
    clf = robcurves.wrap(lin, bounds=(0.0, None))
    d = robcurves.distances(clf, x, y, 2, return_adversarials=True)
    # never below the box-constrained minimum: no adversarial crosses the side at 0
    assert (d.distances >= exact * (1 - 1e-5)).all()
    unbound = exact <= free * (1 + 1e-12)
    np.testing.assert_allclose(d.distances[unbound], exact[unbound], rtol=1e-3)
    # where the box binds, the default pipeline stays within 0.5% of the exact minimum
    np.testing.assert_allclose(d.distances[~unbound], exact[~unbound], rtol=5e-3)
    assert (d.adversarials >= 0).all() and (d.adversarials > 1).any()


def test_a_curve_of_unbounded_inputs_saves_its_bounds_as_null(tmp_path):
    lin, x, y, _, _, exact = _affine_far_from_the_unit_box(n=10)
    d = robcurves.distances(robcurves.wrap(lin, bounds=None), x, y, 2, attack="deepfool")
    c = robcurves.RobustnessCurve.from_distances(
        d, metadata={"bounds": [-math.inf, math.inf], "model": {"box": (0.0, math.inf)}})
    back = robcurves.RobustnessCurve.load(c.save(tmp_path / "c.json"))
    assert back.metadata["bounds"] == [None, None]
    assert back.metadata["model"]["box"] == [0.0, None]
    np.testing.assert_array_equal(back.distances, d.distances)
    assert back.robust_error(float(np.median(exact))) == c.robust_error(float(np.median(exact)))


def test_an_unbounded_scikit_learn_model_keeps_its_exact_copy():
    from sklearn.linear_model import LogisticRegression

    from robcurves.bridges.sklearn import SklearnLinearClassifier

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)) * 3.0  # standardised-looking features, far outside [0, 1]
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) > 0.3).astype(int)
    est = LogisticRegression().fit(x, y)
    clf = robcurves.wrap(est, bounds=None)
    assert isinstance(clf, SklearnLinearClassifier)  # not the label-only fallback
    xs = x[:20].astype(np.float32)
    d = robcurves.distances(clf, xs, est.predict(xs), 2, attack="deepfool")
    exact = np.abs(xs @ est.coef_[0] + est.intercept_[0]) / np.linalg.norm(est.coef_[0])
    np.testing.assert_allclose(d.distances, exact, rtol=1e-4)

"""Bridges: the same classifier in torch, JAX, Keras and ONNX gives the same logits, gradients
and distances; scikit-learn models through exact copies or decision-based attacks; missing
optional frameworks name their extra."""

from __future__ import annotations

import io
import math
import pickle
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import exact_linear_distances, linear_problem
from torch import nn

import robcurves
from robcurves.attacks import ATTACKS
from robcurves.attacks._core import margin_loss
from robcurves.bridges import LabelOnlyClassifier, detect_framework, load_any_model
from robcurves.model import TorchClassifier


def _mlp() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, 4))


def _cnn() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 3))


def _images(seq: nn.Sequential, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = (0.5 + 0.1 * torch.randn(n, 2, 10, 10, generator=g)).clamp(0, 1)
    with torch.no_grad():
        return x, seq(x).argmax(1)


def _models() -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    lin, x, y = linear_problem(dim=20, classes=4, n=16)
    mlp = _mlp()
    with torch.no_grad():
        ym = mlp(x).argmax(1)
    cnn = _cnn()
    return {"linear": (lin, x, y), "relu-mlp": (mlp, x, ym), "relu-cnn": (cnn, *_images(cnn))}


_REFERENCE: dict[tuple[str, str], np.ndarray] = {}


def _check_same(name: str, other: robcurves.Classifier) -> None:
    """Logits and gradients to 1e-5 and distances to 1e-4 (relative) of the torch original.

    Distances: DeepFool on every model (it differentiates every candidate class) and the
    default seeded pipeline on the linear model (cheap enough on this shared machine).
    """
    torch_model, x, y = _models()[name]
    ref = TorchClassifier(torch_model)
    z0, v0, g0 = ref.value_and_grad(x, y, margin_loss)
    z1, v1, g1 = other.value_and_grad(x, y, margin_loss)
    assert g1.shape == x.shape
    assert torch.allclose(z1, z0, atol=1e-5, rtol=0), float((z1 - z0).abs().max())
    assert torch.allclose(g1, g0, atol=1e-5, rtol=0), float((g1 - g0).abs().max())
    assert other.n_backward == x.shape[0]
    for attack in ("deepfool", "auto") if name == "linear" else ("deepfool",):
        if (name, attack) not in _REFERENCE:
            _REFERENCE[name, attack] = robcurves.distances(ref, x, y, 2, attack=attack,
                                                           seed=7).distances
        d0 = _REFERENCE[name, attack]
        d1 = robcurves.distances(other, x, y, 2, attack=attack, seed=7).distances
        assert np.isfinite(d0).all()
        np.testing.assert_allclose(d1, d0, rtol=1e-4, err_msg=attack)


@pytest.mark.parametrize("name", ["linear", "relu-mlp", "relu-cnn"])
def test_jax_same_logits_gradients_distances(name):
    pytest.importorskip("jax")
    from robcurves.bridges.mirror import jax_mirror

    seq, x, y = _models()[name]
    fn, params = jax_mirror(seq if isinstance(seq, nn.Sequential) else nn.Sequential(seq))
    clf = robcurves.wrap(fn, framework="jax", params=params)
    _check_same(name, clf)


@pytest.mark.parametrize("name", ["linear", "relu-mlp", "relu-cnn"])
def test_keras_same_logits_gradients_distances(name):
    pytest.importorskip("tensorflow")
    from robcurves.bridges.mirror import keras_mirror

    seq, x, y = _models()[name]
    model = keras_mirror(seq if isinstance(seq, nn.Sequential) else nn.Sequential(seq),
                         tuple(x.shape[1:]))
    assert detect_framework(model) == "tf"
    clf = robcurves.wrap(model, channels_last=x.ndim == 4)  # detected by type
    _check_same(name, clf)


def test_keras_saved_file_loads_and_matches(tmp_path):
    pytest.importorskip("tensorflow")
    from robcurves.bridges.mirror import keras_mirror

    seq, x, _ = _models()["relu-cnn"]
    path = tmp_path / "cnn.keras"
    keras_mirror(seq, tuple(x.shape[1:])).save(path)
    clf = robcurves.wrap(load_any_model(path), channels_last=True)
    with torch.no_grad():
        np.testing.assert_allclose(clf.predict_logits(x), seq(x), atol=1e-5, rtol=0)


def _onnx_bytes(seq: nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(seq.eval(), (x[:2],), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    return buf.getvalue()


@pytest.mark.parametrize("name", ["relu-mlp", "relu-cnn"])
def test_onnx_export_same_distances(name, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    seq, x, y = _models()[name]
    path = tmp_path / "model.onnx"
    path.write_bytes(_onnx_bytes(seq, x))
    assert detect_framework(str(path)) == "onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a convertible graph must not fall back to label-only
        clf = robcurves.wrap(load_any_model(path))
        _check_same(name, clf)
    assert not clf.label_only


def test_onnx_unsupported_operator_is_label_only_with_warning():
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = np.array([[1.0, -1.0], [0.5, 2.0]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["s"]), helper.make_node("MatMul", ["s", "w"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 2])],
        [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.warns(UserWarning, match="only decision-based attacks apply.*looser"):
        clf = robcurves.wrap(model)
    assert clf.label_only
    x = torch.tensor([[0.3, 0.6], [0.7, 0.2]])
    expected = np.sin(x.numpy()) @ w
    np.testing.assert_allclose(clf.predict_logits(x), expected, rtol=1e-6)
    with pytest.raises(TypeError, match="hsja"):
        clf.value_and_grad(x, torch.tensor([0, 1]), margin_loss)


def _blobs(n: int = 300, d: int = 10, k: int = 3, seed: int = 0):
    """Gaussian classes around 0.5, far inside [0, 1] (the box does not bind)."""
    rng = np.random.default_rng(seed)
    centers = 0.5 + 0.08 * rng.standard_normal((k, d))
    labels = rng.integers(0, k, n)
    x = np.clip(centers[labels] + 0.05 * rng.standard_normal((n, d)), 0.25, 0.75)
    return x.astype(np.float32), labels


def _exact_lr_l2(lr, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    lin = nn.Linear(x.shape[1], len(lr.classes_))
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(lr.coef_))
        lin.bias.copy_(torch.as_tensor(lr.intercept_))
    return exact_linear_distances(lin, torch.as_tensor(x), torch.as_tensor(y), 2.0)


def test_sklearn_linear_is_exact():
    from sklearn.linear_model import LogisticRegression

    x, labels = _blobs()
    lr = LogisticRegression(C=10.0, max_iter=2000).fit(x, labels)
    clf = robcurves.wrap(lr)
    assert not getattr(clf, "label_only", False)
    xs = x[:20]
    np.testing.assert_allclose(clf.predict_logits(xs), lr.decision_function(xs), atol=1e-5)
    y = lr.predict(xs)
    d = robcurves.distances(clf, xs, y, 2, attack="deepfool", overshoot=1e-5)
    np.testing.assert_allclose(d.distances, _exact_lr_l2(lr, xs, y), rtol=1e-4)


def test_sklearn_logistic_regression_hsja_within_5_percent():
    from sklearn.linear_model import LogisticRegression

    x, labels = _blobs()
    lr = LogisticRegression(C=10.0, max_iter=2000).fit(x, labels)
    xs = x[:30]
    y = lr.predict(xs)
    exact = _exact_lr_l2(lr, xs, y)
    assert xs.min() - exact.max() > 0 and xs.max() + exact.max() < 1  # box cannot bind
    with pytest.warns(UserWarning, match="label-only"):
        clf = robcurves.wrap(lr, exact=False)
    assert isinstance(clf, LabelOnlyClassifier)
    budget = 3000
    d = robcurves.distances(clf, xs, y, 2, attack="hsja", budget=budget, n_targets=2)
    assert ATTACKS["hsja"][0].black_box and d.method == "hsja"
    ratio = d.distances / exact
    assert (ratio >= 1 - 1e-4).all(), ratio.min()  # an attack gives upper bounds
    assert (ratio <= 1.05).all(), ratio.max()
    # the per-point budget holds (the driver adds a few predictions of its own)
    assert d.cost["forward_per_point"] <= budget + 10


def test_sklearn_logistic_regression_boundary_refinement():
    from sklearn.linear_model import LogisticRegression

    x, labels = _blobs(seed=1)
    lr = LogisticRegression(C=10.0, max_iter=2000).fit(x, labels)
    xs = x[:12]
    y = lr.predict(xs)
    exact = _exact_lr_l2(lr, xs, y)
    clf = robcurves.wrap(lr.predict, framework="label", classes=lr.classes_, flatten=True)
    d = robcurves.distances(clf, xs, y, 2, attack="boundary", init_queries=800,
                            budget=2000, n_targets=2)
    ratio = d.distances / exact
    assert (ratio >= 1 - 1e-4).all() and np.median(ratio) <= 1.01, (ratio.min(), ratio.max())
    assert d.cost["forward_per_point"] <= 2000 + 10


@pytest.mark.parametrize("norm", ["l2", "inf"])
def test_random_forest_adversarials_are_verified(norm):
    from sklearn.ensemble import RandomForestClassifier

    x, labels = _blobs(n=200, seed=2)
    rf = RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0).fit(x, labels)
    xs, ys = x[:16], labels[:16]
    with pytest.warns(UserWarning, match="only decision-based attacks apply"):
        clf = robcurves.wrap(rf)
    d = robcurves.distances(clf, xs, ys, norm, attack="hsja", budget=600,
                            return_adversarials=True)
    broken = np.isfinite(d.distances) & (d.distances > 0)
    assert broken.sum() >= 12
    adv = d.adversarials[broken]
    assert np.all(rf.predict(adv) != ys[broken])  # re-checked with the forest itself
    assert adv.min() >= 0 and adv.max() <= 1
    p = math.inf if norm == "inf" else 2
    norms = np.linalg.norm((adv - xs[broken]).astype(np.float64), ord=p, axis=1)
    np.testing.assert_allclose(norms, d.distances[broken], rtol=1e-6)
    clean_wrong = rf.predict(xs) != ys
    np.testing.assert_array_equal(d.distances[clean_wrong], 0.0)


def test_label_only_refuses_gradient_attacks():
    clf = robcurves.wrap(lambda a: (a.sum(1) > 1).astype(int), framework="label", num_classes=2,
                         flatten=True)
    x = torch.full((2, 1, 2, 2), 0.2)
    np.testing.assert_array_equal(clf.predict(x), [0, 0])
    with pytest.raises(TypeError, match="attack='hsja'"):
        robcurves.distances(clf, x, torch.tensor([0, 0]), 2, attack="deepfool")


def test_pickled_estimator_loads_with_warning(tmp_path):
    from sklearn.linear_model import LogisticRegression

    x, labels = _blobs(n=60)
    lr = LogisticRegression().fit(x, labels)
    path = tmp_path / "lr.pkl"
    path.write_bytes(pickle.dumps(lr))
    with pytest.warns(UserWarning, match="trust"):
        loaded = load_any_model(path)
    np.testing.assert_array_equal(loaded.predict(x), lr.predict(x))
    with pytest.raises(ValueError, match="cannot load model"):
        load_any_model(tmp_path.joinpath("x.txt").write_text("") or tmp_path / "x.txt")
    from robcurves.cli._common import load_model_spec

    with pytest.warns(UserWarning, match="trust"):
        assert isinstance(load_model_spec(str(path)), LogisticRegression)
    (tmp_path / "my_factory.py").write_text(
        "import pickle, pathlib\n"
        "def make():\n"
        "    return pickle.loads(pathlib.Path(__file__).with_name('lr.pkl').read_bytes())\n")
    sys.path.insert(0, str(tmp_path))
    try:
        clf = robcurves.wrap(load_model_spec("my_factory:make"))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_factory", None)
    np.testing.assert_array_equal(clf.predict(x), lr.predict(x))


@pytest.mark.parametrize("module, extra, make", [
    ("jax", "jax", lambda: robcurves.wrap(lambda x: x, framework="jax")),
    ("tensorflow", "tf", lambda: robcurves.wrap(lambda x: x, framework="tf")),
    ("onnxruntime", "onnx", lambda: robcurves.wrap("missing.onnx")),
])
def test_missing_extra_names_it(monkeypatch, module, extra, make):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ImportError, match=rf"pip install robcurves\[{extra}\]"):
        make()


def test_unknown_model_type_asks_for_framework():
    with pytest.raises(TypeError, match="framework="):
        robcurves.wrap(lambda x: x)

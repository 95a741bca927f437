"""scikit-learn classifiers as robcurves classifiers.

* Linear classifiers (``LogisticRegression``, ``LinearSVC``, ``SGDClassifier``,
  ``RidgeClassifier``, ``Perceptron``, ``LinearDiscriminantAnalysis``... anything whose
  ``predict`` is the argmax of ``x @ coef_.T + intercept_``) become exact torch models: their
  logits are that decision function, so gradients are exact and gradient attacks and the
  closed-form linear certificate apply.
* ``MLPClassifier`` becomes the same network in torch (logits before the output activation).
* Anything else (forests, boosting, k-NN, SVMs with kernels, pipelines) is label-only through
  ``predict``: only decision-based attacks apply (a warning says so).

An exact copy is used only after it reproduces ``estimator.predict`` on random inputs from the
box; otherwise the estimator falls back to label-only. Labels are class *indices*, positions in
``estimator.classes_`` (the same as the labels when the classes are ``0..K-1``). Inputs of any
shape are flattened to ``(N, D)`` as scikit-learn expects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..classifier import Bounds, Classifier, Preprocess
from .label import LabelOnlyClassifier, warn_label_only

__all__ = ["SklearnLinearClassifier", "SklearnMLPClassifier", "wrap_sklearn"]

_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "logistic": torch.sigmoid,
                "identity": lambda t: t}


class _FlatTorchClassifier(Classifier):
    def __init__(self, estimator: Any, bounds: Bounds, preprocessing: dict | None,
                 device: str | None, batch_size: int) -> None:
        classes = np.asarray(estimator.classes_)
        super().__init__(bounds=bounds, device=device, batch_size=batch_size,
                         num_classes=len(classes))
        self.estimator = estimator
        self.classes = classes
        self.pre = Preprocess(preprocessing, self.device)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=self.device)

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self._scores(self.pre(x).reshape(x.shape[0], -1).to(torch.float32))
        if s.shape[1] == 1:  # binary: predict is class 1 where the score is > 0
            s = torch.cat([torch.zeros_like(s), s], dim=1)
        return s

    def agrees_with_predict(self, dim: int, n: int = 256, seed: int = 0) -> bool:
        """Whether argmax of the torch logits equals ``estimator.predict`` on ``n`` random
        inputs of dimension ``dim`` (see :func:`_probe`; ``predict`` sees them after
        preprocessing)."""
        x = torch.as_tensor(_probe(self.bounds, (n, dim), seed), dtype=torch.float32)
        with torch.no_grad():
            mine = self.logits(x.to(self.device)).argmax(1).cpu().numpy()
            self.n_forward -= n
        xs = self.pre(x.to(self.device)).cpu().numpy()
        theirs = np.asarray(self.estimator.predict(xs))
        return bool(np.array_equal(self.classes[mine], theirs))


def _probe(bounds: tuple[float, float], shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random inputs in the box: uniform where it is finite; on an unbounded side a standard
    normal (unbounded) or its absolute value measured from the finite side."""
    rng = np.random.default_rng(seed)
    lo, hi = bounds
    if np.isfinite(lo) and np.isfinite(hi):
        return rng.uniform(lo, hi, size=shape)
    z = rng.standard_normal(size=shape)
    if np.isfinite(lo):
        return lo + np.abs(z)
    if np.isfinite(hi):
        return hi - np.abs(z)
    return z


class SklearnLinearClassifier(_FlatTorchClassifier):
    """Exact logits ``x @ coef_.T + intercept_`` of a fitted linear scikit-learn classifier
    (binary: ``[0, score]``)."""

    def __init__(self, estimator: Any, bounds: Bounds = (0.0, 1.0),
                 preprocessing: dict | None = None, device: str | None = None,
                 batch_size: int = 256) -> None:
        super().__init__(estimator, bounds, preprocessing, device, batch_size)
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
        b = np.broadcast_to(np.asarray(getattr(estimator, "intercept_", 0.0), np.float64),
                            (coef.shape[0],))
        self.weight = self._t(coef)
        self.bias = self._t(b)

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


class SklearnMLPClassifier(_FlatTorchClassifier):
    """A fitted ``MLPClassifier`` as the same network in torch (logits before the output
    activation)."""

    def __init__(self, estimator: Any, bounds: Bounds = (0.0, 1.0),
                 preprocessing: dict | None = None, device: str | None = None,
                 batch_size: int = 256) -> None:
        super().__init__(estimator, bounds, preprocessing, device, batch_size)
        act = estimator.activation
        if act not in _ACTIVATIONS:
            raise ValueError(f"unknown MLPClassifier activation {act!r}")
        self.act = _ACTIVATIONS[act]
        self.weights = [self._t(w) for w in estimator.coefs_]
        self.biases = [self._t(b) for b in estimator.intercepts_]

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = self.act(x)
        return x


def _input_dim(estimator: Any) -> int | None:
    n = getattr(estimator, "n_features_in_", None)
    return int(n) if n is not None else None


def wrap_sklearn(estimator: Any, bounds: Bounds = (0.0, 1.0),
                 preprocessing: dict | None = None, device: str | None = None,
                 batch_size: int = 256, exact: bool = True) -> Classifier:
    """The most exact classifier available for a fitted scikit-learn estimator.

    Args:
        estimator: a fitted classifier (with ``predict`` and ``classes_``).
        exact: try the exact torch copies (linear, MLP) before falling back to label-only.
        bounds, preprocessing, device, batch_size: as for :func:`robcurves.wrap`.
    """
    if not hasattr(estimator, "predict") or not hasattr(estimator, "classes_"):
        raise TypeError(f"expected a fitted scikit-learn classifier (with predict and "
                        f"classes_); got {type(estimator).__name__}")
    from sklearn.neural_network import MLPClassifier

    dim = _input_dim(estimator)
    kind = None
    if exact and dim is not None:
        if isinstance(estimator, MLPClassifier):
            kind = SklearnMLPClassifier
        elif hasattr(estimator, "coef_") and hasattr(estimator, "intercept_") and \
                np.ndim(estimator.coef_) == 2 and np.shape(estimator.coef_)[1] == dim:
            kind = SklearnLinearClassifier
    if kind is not None:
        clf = kind(estimator, bounds=bounds, preprocessing=preprocessing, device=device,
                   batch_size=batch_size)
        if clf.agrees_with_predict(dim):
            return clf
        why = f"its {kind.__name__} copy does not reproduce predict"
    else:
        why = "scikit-learn gives no gradients for it"
    warn_label_only(f"scikit-learn {type(estimator).__name__}", why)
    return LabelOnlyClassifier(estimator.predict, classes=estimator.classes_, flatten=True,
                               bounds=bounds, preprocessing=preprocessing, device=device,
                               batch_size=batch_size)

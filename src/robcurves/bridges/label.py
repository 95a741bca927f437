"""Classifiers that give labels only: any ``predict`` callable.

A label-only model has no gradients, so only decision-based attacks apply to it
(``attack="hsja"`` or ``attack="boundary"``, see :mod:`robcurves.attacks._hsja`). Their distances
are verified upper bounds like any other, but usually looser than those of gradient attacks on a
differentiable model, so curves from them lie further below the truth.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..classifier import Bounds, Classifier, Preprocess

__all__ = ["LabelOnlyClassifier", "LABEL_ONLY_HINT", "warn_label_only"]

LABEL_ONLY_HINT = ("only decision-based attacks apply (attack='hsja' or attack='boundary'); their "
                   "distances are verified but looser than gradient attacks', so the curve lies "
                   "further below the true one")


def warn_label_only(what: str, why: str) -> None:
    """Warn once per call site that ``what`` is used label-only because ``why``."""
    warnings.warn(f"{what} is used as a label-only model ({why}): {LABEL_ONLY_HINT}",
                  UserWarning, stacklevel=3)


class LabelOnlyClassifier(Classifier):
    """Wrap ``predict(x: np.ndarray) -> labels`` as a :class:`~robcurves.classifier.Classifier`.

    ``logits`` returns one-hot scores of the predicted labels (so ``argmax`` is the prediction
    and the margin is +-1); asking for gradients raises ``TypeError`` that points to the
    decision-based attacks.

    Args:
        predict: called with a float32 numpy batch (after preprocessing, reshaped by
            ``flatten``) and returning one label per input.
        num_classes: number of classes K; labels must lie in ``0..K-1`` unless ``classes`` is
            given.
        classes: the labels ``predict`` returns, in the order of robcurves' class indices
            (e.g. a scikit-learn estimator's ``classes_``); predictions are mapped to their
            position in it.
        flatten: pass inputs as ``(N, D)`` (scikit-learn style) instead of their own shape.
        bounds, preprocessing, device, batch_size: as for :func:`robcurves.wrap`.
    """

    label_only = True

    def __init__(self, predict: Callable[[np.ndarray], object], num_classes: int | None = None,
                 *, classes: object = None, flatten: bool = False,
                 bounds: Bounds = (0.0, 1.0), preprocessing: dict | None = None,
                 device: str | None = None, batch_size: int = 256) -> None:
        if not callable(predict):
            raise TypeError(f"predict must be callable; got {type(predict).__name__}")
        self.classes = None if classes is None else np.asarray(classes)
        if num_classes is None and self.classes is not None:
            num_classes = len(self.classes)
        if num_classes is None or int(num_classes) < 2:
            raise ValueError(f"a label-only model needs num_classes >= 2 (the number of "
                             f"classes); got {num_classes!r}")
        super().__init__(bounds=bounds, device=device, batch_size=batch_size,
                         num_classes=int(num_classes))
        self._predict = predict
        self.flatten = bool(flatten)
        self.pre = Preprocess(preprocessing, self.device)

    def labels_of(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class indices (int64, on ``self.device``) from the wrapped callable."""
        xs = self.pre(x.detach()).to(torch.float32).cpu().numpy()
        if self.flatten:
            xs = xs.reshape(xs.shape[0], -1)
        raw = np.asarray(self._predict(xs)).reshape(-1)
        if raw.shape[0] != x.shape[0]:
            raise ValueError(f"predict returned {raw.shape[0]} labels for {x.shape[0]} inputs")
        if self.classes is not None:
            order = np.argsort(self.classes, kind="stable")
            pos = np.minimum(np.searchsorted(self.classes[order], raw), len(order) - 1)
            idx = order[pos]
            bad = self.classes[idx] != raw
            if bad.any():
                raise ValueError(f"predict returned label {raw[bad][0]!r}, which is not one of "
                                 f"the classes {self.classes.tolist()}")
            raw = idx
        lab = torch.as_tensor(raw.astype(np.int64), device=self.device)
        if lab.numel() and (lab.min() < 0 or lab.max() >= self.num_classes):
            raise ValueError(f"predict returned labels outside 0..{self.num_classes - 1}: "
                             f"min {int(lab.min())}, max {int(lab.max())}")
        return lab

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise TypeError(f"{type(self).__name__} gives labels only, so gradient attacks "
                            f"cannot run on it: {LABEL_ONLY_HINT}")
        lab = self.labels_of(x)
        return torch.nn.functional.one_hot(lab, self.num_classes).to(torch.float32)


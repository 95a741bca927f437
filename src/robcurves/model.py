""":func:`wrap`: turn a classifier of any supported framework into the one interface the
attacks call, :class:`~robcurves.classifier.Classifier`.

This is the one place that picks an implementation: :class:`~robcurves.classifier.TorchClassifier`
for torch modules, a bridge of :mod:`robcurves.bridges` for the other frameworks. The interface
itself (:class:`Classifier`, :class:`TorchClassifier`, :class:`Preprocess`, :func:`margin`) lives
in :mod:`robcurves.classifier` and is importable from here too.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ._device import set_deterministic
from .bridges import FRAMEWORKS, detect_framework
from .bridges.jax import JaxClassifier
from .bridges.label import LabelOnlyClassifier
from .bridges.onnx import OnnxClassifier
from .bridges.sklearn import wrap_sklearn
from .bridges.tf import TFClassifier
from .classifier import Bounds, Classifier, Preprocess, TorchClassifier, as_bounds, margin

__all__ = ["Bounds", "Classifier", "Preprocess", "TorchClassifier", "as_bounds", "as_classifier",
           "margin", "wrap"]


def wrap(model: nn.Module | Classifier | Any, bounds: Bounds = (0.0, 1.0),
         preprocessing: dict | None = None, device: str | None = None,
         batch_size: int = 256, framework: str | None = None, deterministic: bool = False,
         **options: Any) -> Classifier:
    """Turn a classifier into the :class:`Classifier` interface the attacks use.

    Args:
        model: a ``torch.nn.Module`` returning logits ``(N, K)`` (put in eval mode), an
            existing :class:`Classifier` (returned unchanged), or a model of another framework
            (see ``framework``).
        bounds: valid range ``(low, high)`` of raw inputs; adversarials never leave it.
            ``None`` means unbounded inputs (standardised features, Gaussian data), and a
            ``None`` or infinite side is unbounded on that side: the box never binds there.
        preprocessing: ``{"mean": m, "std": s}`` applied inside the model as ``(x - m) / s``;
            distances stay in raw input space. ``m`` and ``s`` are numbers or one value per
            channel of ``(N, C, H, W)`` images / per feature of ``(N, D)`` inputs (``axis=``
            names another axis); see :class:`Preprocess`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... or ``"auto"`` (CUDA when available);
            default: a torch module's own device (where its parameters live), CPU for other
            frameworks. A device this machine lacks is refused, naming those it has.
        batch_size: largest batch sent to the model at once.
        framework: ``None`` detects torch modules, Keras/TensorFlow models, ONNX models
            (``ModelProto`` or ``.onnx`` path) and scikit-learn estimators by type; a plain
            callable needs ``"jax"`` (``fn(params, x)`` with ``params=``, or ``fn(x)``),
            ``"tf"`` or ``"label"`` (a ``predict`` returning labels, with ``num_classes=``).
            See :mod:`robcurves.bridges`.
        deterministic: reproducible GPU kernels from now on in this process (cuDNN
            deterministic, no autotuning, ``torch.use_deterministic_algorithms``); see
            :func:`robcurves.set_deterministic`.
        **options: passed to the bridge of a non-torch framework: ``params=`` and ``jit=`` for
            JAX, ``channels_last=`` and ``compile=`` for TensorFlow, ``gradients=``,
            ``providers=``, ``rtol=`` for ONNX, ``exact=`` for scikit-learn, ``num_classes=``,
            ``classes=``, ``flatten=`` for ``"label"``.
    """
    if deterministic:
        set_deterministic(True)
    if isinstance(model, Classifier):
        return model
    common = {"bounds": bounds, "preprocessing": preprocessing, "device": device,
              "batch_size": batch_size}
    fw = framework if framework is not None else detect_framework(model)
    if fw is None:
        raise TypeError(f"cannot tell which framework a {type(model).__module__}."
                        f"{type(model).__name__} belongs to; pass framework= one of "
                        f"{', '.join(FRAMEWORKS)} (a plain JAX function needs framework='jax', "
                        "a predict callable framework='label')")
    if fw == "torch":
        if options:
            raise TypeError(f"torch models take no options; got {sorted(options)}")
        return TorchClassifier(model, **common)
    if fw == "jax":
        return JaxClassifier(model, **options, **common)
    if fw == "tf":
        return TFClassifier(model, **options, **common)
    if fw == "onnx":
        return OnnxClassifier(model, **options, **common)
    if fw == "sklearn":
        return wrap_sklearn(model, **options, **common)
    if fw == "label":
        return LabelOnlyClassifier(getattr(model, "predict", model), **options, **common)
    raise ValueError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")


def as_classifier(model: nn.Module | Classifier | Any, bounds: Bounds | None = None
                  ) -> Classifier:
    """``model`` as a :class:`Classifier` for an entry point that takes ``bounds=``: a wrapped
    model is used as it is (``bounds``, if given, must be its own: refused otherwise, never
    silently ignored), anything else is wrapped with ``bounds`` (default ``(0, 1)``)."""
    if isinstance(model, Classifier):
        if bounds is not None and as_bounds(bounds) != model.bounds:
            raise ValueError(f"bounds {tuple(bounds)} differ from the wrapped model's bounds "
                             f"{model.bounds}; wrap the model with the bounds you want")
        return model
    return wrap(model, bounds=(0.0, 1.0) if bounds is None else bounds)

"""Bridges: classifiers from JAX, TensorFlow/Keras, ONNX and scikit-learn, and label-only
``predict`` callables, as the one :class:`~robcurves.classifier.Classifier` interface the attacks
use.

:func:`robcurves.wrap` (:mod:`robcurves.model`) picks the bridge; the bridges build on
:mod:`robcurves.classifier` and never import :mod:`robcurves.model`. Every framework
is an optional extra and is imported only when a model of that kind is wrapped; a missing one
raises ``ImportError`` naming the extra (``pip install robcurves[jax]``, ``[tf]``, ``[onnx]``).

===========  =======================================  =========================================
framework    what                                      gradients
===========  =======================================  =========================================
``"jax"``    ``fn(params, x)`` or ``fn(x)``            ``jax.vjp`` (exact), DLPack exchange
``"tf"``     ``keras.Model`` or TF callable            ``tf.GradientTape`` (exact), DLPack
``"onnx"``   ``.onnx`` path, bytes, ``ModelProto``     torch copy of the graph, else label-only
``"sklearn"`` fitted estimator                         exact for linear models and MLPs, else
                                                       label-only
``"label"``  any ``predict(x) -> labels``              none: decision-based attacks only
===========  =======================================  =========================================
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

from .label import LabelOnlyClassifier

__all__ = ["FRAMEWORKS", "detect_framework", "load_any_model", "LabelOnlyClassifier"]

FRAMEWORKS = ("torch", "jax", "tf", "onnx", "sklearn", "label")


def _modules_of(obj: Any) -> set[str]:
    return {c.__module__.split(".")[0] for c in type(obj).__mro__}


def detect_framework(model: Any) -> str | None:
    """The framework of ``model`` judged by its type (no framework is imported), or None.

    torch modules, Keras models and ``tf.Module``, ``onnx.ModelProto``, ``.onnx`` paths and
    fitted scikit-learn estimators are recognised; a plain function is not (JAX code is plain
    Python): pass ``framework="jax"``, ``"tf"`` or ``"label"`` for those.
    """
    mods = _modules_of(model)
    if "torch" in mods:
        import torch

        if isinstance(model, torch.nn.Module):
            return "torch"
    if mods & {"keras", "tf_keras", "tensorflow"}:
        return "tf"
    if "onnx" in mods and type(model).__name__ == "ModelProto":
        return "onnx"
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx"):
        return "onnx"
    if "sklearn" in mods or "imblearn" in mods or "xgboost" in mods or "lightgbm" in mods:
        return "sklearn"
    return None


_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def load_any_model(spec: str | os.PathLike) -> Any:
    """Load a model saved by a non-torch framework, for ``robcurves curve --model``.

    Accepted:

    * a Keras model file (``.keras``, ``.h5``/``.hdf5``) or a TensorFlow SavedModel folder
      (one containing ``saved_model.pb``; loaded as ``keras.layers.TFSMLayer`` with its
      serving signature);
    * an ONNX file (``.onnx``): returned as the path, which :func:`robcurves.wrap` recognises;
    * a pickled scikit-learn estimator (``.pkl``, ``.pickle``, ``.joblib``). Unpickling runs
      code from the file: load only files you trust (a warning repeats this).

    Returns the loaded object (wrap it with :func:`robcurves.wrap`), or raises ``ValueError``
    for a path of another kind and ``FileNotFoundError`` for one that does not exist.
    ``module:factory`` specs are resolved by the CLI, which passes the object to ``wrap``.
    """
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(spec)!r} does not exist")
    suffix = path.suffix.lower()
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ValueError(f"folder {str(spec)!r} is not a TensorFlow SavedModel (no "
                             "saved_model.pb)")
        from ._common import require

        keras = require("keras")
        return keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    if suffix in _KERAS_SUFFIXES:
        from ._common import require

        keras = require("keras")
        return keras.models.load_model(str(path), compile=False)
    if suffix == ".onnx":
        return str(path)
    if suffix in _PICKLE_SUFFIXES:
        warnings.warn(f"loading the pickled model {str(spec)!r}: unpickling runs code from the "
                      "file, so load only files from sources you trust", UserWarning,
                      stacklevel=2)
        if suffix == ".joblib":
            import joblib

            return joblib.load(path)
        with open(path, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 - documented and warned above
    raise ValueError(f"cannot load model {str(spec)!r}: expected a .keras/.h5 Keras file, a "
                     "SavedModel folder, an .onnx file or a .pkl/.joblib scikit-learn pickle")

"""Argument parsing shared by the subcommands: norms, eps lists, models and data."""

from __future__ import annotations

import importlib
import math
import sys
from fractions import Fraction
from pathlib import Path

from .._norms import parse_norm

__all__ = ["parse_norms", "parse_eps", "parse_eps_list", "load_model_spec"]


def parse_norms(text: str) -> list[float]:
    """``"linf,l2,l1"`` (any :data:`~robcurves.NormLike` spellings) -> ``[inf, 2.0, 1.0]``
    (duplicates removed, order kept)."""
    out: list[float] = []
    for part in text.split(","):
        if part.strip():
            p = parse_norm(part.strip())
            if p not in out:
                out.append(p)
    if not out:
        raise ValueError(f"no norm given in {text!r}; expected e.g. linf,l2,l1")
    return out


def parse_eps(text: str) -> float:
    """One eps: a decimal (``0.03``) or a fraction (``8/255``); must be >= 0."""
    try:
        v = float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot read eps {text!r}; expected a number like 0.03 or 8/255"
                         ) from None
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"eps must be a finite number >= 0; got {text!r}")
    return v


def parse_eps_list(text: str) -> list[float]:
    """``"1/255,4/255,0.1"`` -> floats."""
    return [parse_eps(t) for t in text.split(",") if t.strip()]


def load_model_spec(spec: str):
    """Load a torch model from a CLI spec.

    Accepted: a robcurves model file (``robcurves train`` output), a TorchScript file, a
    ``torch.export`` archive (``.pt2``), a Keras file or SavedModel folder, an ONNX file, a
    pickled scikit-learn estimator (see :func:`robcurves.bridges.load_any_model`), or
    ``package.module:factory`` (a callable returning any of these or a robcurves
    ``Classifier``; the current folder is importable). Returns the model for ``wrap``.
    """
    import torch

    path = Path(spec)
    if path.exists():
        try:  # robcurves' own model files carry their architecture and metadata
            from ..train import is_model_file, load_model

            if is_model_file(path):
                return load_model(path)
        except ImportError:
            pass
        if path.is_dir() or path.suffix.lower() in (".keras", ".h5", ".hdf5", ".onnx", ".pkl",
                                                    ".pickle", ".joblib"):
            from ..bridges import load_any_model  # Keras, SavedModel, ONNX, scikit-learn

            return load_any_model(path)
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module()
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - report what the file is not
            raise ValueError(f"cannot load model {spec!r}: not a robcurves model file, "
                             f"TorchScript file or torch.export archive ({exc})") from None
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"cannot import module {mod_name!r} of model spec {spec!r}: {exc}"
                             ) from None
        obj = mod
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"module {mod_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        from ..bridges import detect_framework
        from ..model import Classifier

        model = obj() if callable(obj) and detect_framework(obj) is None else obj

        if not isinstance(model, Classifier) and detect_framework(model) is None:
            raise ValueError(f"{spec!r} returned a {type(model).__name__}; expected a "
                             "torch.nn.Module, a Keras, ONNX or scikit-learn model, or a "
                             "robcurves Classifier (e.g. wrap(fn, framework='jax', params=p))")
        return model
    raise FileNotFoundError(f"model {spec!r} is neither an existing file nor a "
                            "package.module:factory spec")

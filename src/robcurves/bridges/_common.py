"""Helpers every bridge shares: optional imports that name their extra, preprocessing in torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..model import _preprocessing_tensors

__all__ = ["require", "Preprocess"]

#: module -> (pip extra, what it is needed for)
_EXTRAS = {
    "jax": ("jax", "JAX models"),
    "tensorflow": ("tf", "TensorFlow/Keras models"),
    "keras": ("tf", "Keras models"),
    "onnx": ("onnx", "ONNX models"),
    "onnxruntime": ("onnx", "ONNX models"),
}


def require(module: str) -> ModuleType:
    """Import an optional framework; if it is missing, raise ``ImportError`` naming the extra.

    >>> require("jax")  # doctest: +SKIP
    ImportError: robcurves needs 'jax' for JAX models; install it with `pip install robcurves[jax]`
    """
    extra, what = _EXTRAS.get(module.split(".")[0], (None, module))
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = (f"`pip install robcurves[{extra}]`" if extra is not None
                else f"`pip install {module.split('.')[0]}`")
        raise ImportError(f"robcurves needs {module.split('.')[0]!r} for {what}; install it with "
                          f"{hint} ({exc})") from exc


class Preprocess:
    """``(x - mean) / std`` in torch, before a bridge hands inputs to its framework.

    Done on the torch side so that gradients flow through it and distances stay in raw input
    space; ``preprocessing`` is the same dict :func:`robcurves.wrap` takes for torch models.
    """

    def __init__(self, preprocessing: dict | None, device: torch.device) -> None:
        self.mean, self.std = _preprocessing_tensors(preprocessing, device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        return (x - self.mean) / self.std


def to_torch(a: Any, device: torch.device,
             export: Callable[[Any], Any] | None = None) -> torch.Tensor:
    """A framework array as a torch tensor on ``device``: through DLPack without a copy where
    the frameworks allow (``export`` turns ``a`` into a DLPack capsule when the array does not
    speak the protocol itself), else copied once through numpy."""
    try:
        out = torch.from_dlpack(a if export is None else export(a))
    except Exception:  # noqa: BLE001 - any DLPack refusal: copy once instead
        out = torch.from_numpy(np.asarray(a))
    return out.to(device)

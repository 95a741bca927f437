"""Helpers every bridge shares: optional imports that name their extra, DLPack exchange."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["require", "dlpack_or_copy", "to_torch", "from_torch"]

T = TypeVar("T")

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


def dlpack_or_copy(share: Callable[[], T], copy: Callable[[], T]) -> T:
    """``share()`` (a DLPack exchange, no copy where the frameworks allow); where DLPack refuses
    (another device, an unsupported layout or dtype), ``copy()`` once instead."""
    try:
        return share()
    except Exception:  # noqa: BLE001 - any DLPack refusal: copy once instead
        return copy()


def to_torch(a: Any, device: torch.device,
             export: Callable[[Any], Any] | None = None) -> torch.Tensor:
    """A framework array as a torch tensor on ``device``, through :func:`dlpack_or_copy`
    (``export`` turns ``a`` into a DLPack capsule when the array does not speak the protocol
    itself; the copy goes through numpy)."""
    out = dlpack_or_copy(lambda: torch.from_dlpack(a if export is None else export(a)),
                         lambda: torch.from_numpy(np.asarray(a)))
    return out.to(device)


def from_torch(t: torch.Tensor, take: Callable[[Any], Any], from_numpy: Callable[[Any], Any],
               capsule: bool = False) -> Any:
    """A torch tensor as a framework array, through :func:`dlpack_or_copy`: ``take`` imports a
    DLPack tensor (or its capsule with ``capsule=True``), ``from_numpy`` the copy."""
    t = t.detach().contiguous()
    return dlpack_or_copy(lambda: take(t.__dlpack__() if capsule else t),
                          lambda: from_numpy(t.cpu().numpy()))

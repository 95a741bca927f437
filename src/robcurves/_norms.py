"""The one place where norms are named, parsed and computed.

A norm has one canonical form in robcurves: the float ``p`` in ``{inf, 2.0, 1.0}``, the value of
every ``.norm`` attribute (:class:`~robcurves.Distances`, :class:`~robcurves.RobustnessCurve`,
:class:`~robcurves.comparison.Comparison`, :class:`~robcurves.train.ThreatModel`,
:class:`~robcurves.diagnostics.Kink`...). Every function taking a norm accepts any
:data:`NormLike` spelling and turns it into that float with :func:`parse_norm`. Names in files,
folders, tables and reprs are spelled ``"linf"``, ``"l2"``, ``"l1"`` (:func:`norm_name`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["NormLike", "parse_norm", "norm_name", "dual_norm", "lp_norm", "lp_norm_np"]

#: Any accepted spelling of a norm: ``math.inf``/``"inf"``/``"linf"``, ``2``/``"l2"``,
#: ``1``/``"l1"`` (strings case-insensitive). Attributes hold the parsed float.
NormLike = float | int | str

_ALIASES = {
    "inf": math.inf, "linf": math.inf, "l_inf": math.inf, "infinity": math.inf,
    "2": 2.0, "l2": 2.0, "1": 1.0, "l1": 1.0,
}


def parse_norm(value: NormLike) -> float:
    """Return ``math.inf``, ``2.0`` or ``1.0`` for the accepted spellings of a norm.

    Accepted: ``"inf"``, ``"linf"``, ``float("inf")``, ``2``, ``"l2"``, ``1``, ``"l1"``
    (case-insensitive). Anything else raises ``ValueError`` naming the value.
    """
    if isinstance(value, bool):
        raise ValueError(f"unknown norm {value!r}; expected one of inf, linf, 2, l2, 1, l1")
    if isinstance(value, (int, float)):
        if value == math.inf or value in (1, 2):
            return float(value)
    elif isinstance(value, str):
        p = _ALIASES.get(value.strip().lower())
        if p is not None:
            return p
    raise ValueError(f"unknown norm {value!r}; expected one of inf, linf, 2, l2, 1, l1")


def norm_name(p: NormLike) -> str:
    """``"linf"``, ``"l2"`` or ``"l1"`` for any spelling of a norm."""
    return {math.inf: "linf", 2.0: "l2", 1.0: "l1"}[parse_norm(p)]


def dual_norm(p: NormLike) -> float:
    """The q with 1/p + 1/q = 1."""
    p = parse_norm(p)
    return {math.inf: 1.0, 2.0: 2.0, 1.0: math.inf}[p]


def lp_norm(delta: torch.Tensor, p: float) -> torch.Tensor:
    """Per-sample l_p norm of a batch ``(N, ...)``, computed in the tensor's dtype."""
    flat = delta.reshape(delta.shape[0], -1)
    if p == math.inf:
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    return torch.linalg.vector_norm(flat, ord=p, dim=1)


def lp_norm_np(delta: np.ndarray, p: float) -> np.ndarray:
    """Per-sample l_p norm of a batch ``(N, ...)`` in float64 (the reported distances)."""
    flat = np.asarray(delta, dtype=np.float64).reshape(delta.shape[0], -1)
    if p == math.inf:
        return np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(flat.shape[0])
    return np.linalg.norm(flat, ord=p, axis=1)

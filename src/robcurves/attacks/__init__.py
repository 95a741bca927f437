"""Minimal-norm attacks: plain functions on batches, ``attack(model, x, y, norm, ...)`` returning
adversarials (the clean input where a point was not broken). The driver
:func:`robcurves.distances` verifies every adversarial and turns them into distances.

``ATTACKS`` maps a name to ``(function, supported norms)``; ``"auto"`` is the default pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .boundary import boundary
from .deepfool import deepfool
from .hsja import hsja
from .pgd import pgd
from .search import pgd_search

__all__ = ["ATTACKS", "get_attack", "pgd", "deepfool", "pgd_search", "hsja", "boundary"]

ALL_NORMS = (math.inf, 2.0, 1.0)

#: name -> (minimal-norm attack, norms it supports)
ATTACKS: dict[str, tuple[Callable, tuple[float, ...]]] = {
    "auto": (pgd_search, ALL_NORMS),
    "pgd-search": (pgd_search, ALL_NORMS),
    "deepfool": (deepfool, ALL_NORMS),
    "hsja": (hsja, (math.inf, 2.0)),  # decision-based (labels only): black-box distances
    "boundary": (boundary, (2.0,)),  # decision-based l2 refinement of hsja: black-box
}


def get_attack(name: str, norm: float) -> Callable:
    """The attack function registered as ``name``; raises naming the choices if unknown or if
    it does not support ``norm``."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; expected one of {', '.join(sorted(ATTACKS))}")
    fn, norms = ATTACKS[name]
    if norm not in norms:
        from .._norms import norm_name

        raise ValueError(f"attack {name!r} does not support norm {norm_name(norm)}; it supports "
                         f"{', '.join(norm_name(p) for p in norms)}")
    return fn

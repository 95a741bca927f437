"""Minimal-norm attacks: plain functions on batches, ``attack(model, x, y, norm, ...)`` returning
adversarials (the clean input where a point was not broken). The driver
:func:`robcurves.distances` verifies every adversarial and turns them into distances.

Each attack lives in a private module (``_fmn.py`` holds :func:`fmn`), so no public name is
both a module and a function; import attacks from this package.

``ATTACKS`` maps a name to ``(function, supported norms)``; ``"auto"`` is the default pipeline
(:func:`robcurves.attacks._ensemble.auto`: FMN aimed at the nearest linearised classes, then
untargeted, best-of under a budget). Fixed-eps attacks (:func:`pgd`, :func:`apgd`, :func:`square`)
are not in ``ATTACKS``: they take ``eps`` and find any adversarial inside that ball.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ._apgd import apgd
from ._boundary import boundary
from ._cw import cw
from ._ddn import ddn
from ._deepfool import deepfool, linear_targets
from ._ead import ead
from ._ensemble import auto, ensemble
from ._fab import fab
from ._fmn import fmn
from ._hsja import hsja
from ._pgd import pgd
from ._search import apgd_search, pgd_search
from ._square import square

__all__ = ["ATTACKS", "get_attack", "pgd", "deepfool", "pgd_search", "fmn", "ddn", "auto",
           "ensemble", "linear_targets", "hsja", "boundary", "fab", "apgd", "apgd_search",
           "cw", "ead", "square"]

ALL_NORMS = (math.inf, 2.0, 1.0)

#: name -> (minimal-norm attack, norms it supports)
ATTACKS: dict[str, tuple[Callable, tuple[float, ...]]] = {
    "auto": (auto, ALL_NORMS),
    "fmn": (fmn, ALL_NORMS),
    "ddn": (ddn, (2.0,)),
    "pgd-search": (pgd_search, ALL_NORMS),
    "fab": (fab, ALL_NORMS),
    "apgd-search": (apgd_search, (math.inf, 2.0)),
    "cw": (cw, (2.0,)),
    "ead": (ead, (1.0,)),
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

"""Adversarial attacks: plain functions on batches, one contract for all of them.

Every attack is called ``name(model, x, y, norm, *, <hyperparameters>)`` and returns
adversarials shaped like ``x`` (the clean input where a point was not broken):

* ``model``: a :class:`~robcurves.model.Classifier`, or anything :func:`robcurves.wrap` takes (a
  plain ``torch.nn.Module`` is wrapped with the default bounds ``(0, 1)``);
* ``x``: raw inputs ``(N, ...)`` inside the model's bounds, finite; ``y``: integer labels
  ``(N,)``. Every attack checks both at entry and raises naming the bad value;
* ``norm``: ``"inf"``/``"linf"``/``math.inf``, ``2``/``"l2"`` or ``1``/``"l1"``; an attack
  made for one norm (``ddn``, ``cw``: l2; ``ead``: l1; ``hsja``: l2, l_inf; ``boundary``: l2)
  refuses the others;
* hyperparameters are keyword-only, and one name means one thing everywhere:
  ``eps`` the radius of a fixed-epsilon attack (``pgd``, ``apgd``; a float or a per-point
  ``(N,)`` tensor), ``steps`` iterations per run, ``restarts`` extra runs, ``seed`` the int seed of
  every random draw (``pgd`` and ``apgd`` also take a ``torch.Generator``, used as it is, or
  None for torch's global generator, as a training loop needs), ``budget`` model passes
  per point at most (``auto``, ``hsja``, ``boundary``), ``targets`` a per-point ``(N,)`` tensor of
  classes to aim at (``fmn``, ``fab``), ``n_targets`` and ``candidates`` counts of classes,
  ``x_init`` per-point starting points, ``refine`` steps of the final line search towards
  ``x``, ``tol``/``patience`` the per-point stop rule, ``early_stop`` freezing a point at its
  first adversarial. Names taken from a paper's notation (``alpha``, ``beta``, ``gamma``,
  ``eta``, ``kappa``) mean what that attack's paper means; each docstring says. Values are
  checked before the model is queried (:func:`robcurves.attacks._core.check_hyperparameters`,
  also run by :func:`robcurves.distances` before any work): the type the annotation names
  (``int``, ``float`` finite, ``bool``, ``str``, ``None`` where allowed), the least value of
  the shared counts (``steps`` >= 1, ``restarts`` >= 0, ``budget`` >= 1, ``patience`` >= 0...)
  and ``tol`` > 0; a ``ValueError`` names the attack, the option and the value.

Unbounded inputs: a model wrapped with an infinite bound (``bounds=(-math.inf, math.inf)``) is
attacked the same way; the box simply never binds (searches that need a finite scale, the
epsilon doubling of ``pgd_search`` and the random starts of ``hsja``, use the box the batch
spans, widened by its width on each side).

The driver :func:`robcurves.distances` verifies every adversarial and turns them into distances.
Each attack lives in a private module (``_fmn.py`` holds :func:`fmn`), so no public name is
both a module and a function; import attacks from this package.

``ATTACKS`` maps a name to ``(function, supported norms)``; ``"auto"`` is the default pipeline
(:func:`robcurves.attacks._ensemble.auto`: FMN aimed at the nearest linearised classes, then
untargeted, best-of under a budget). ``linear_targets`` (the linearised class ranking ``auto``
uses) is called the same way. Fixed-eps attacks (:func:`pgd`, :func:`apgd`, :func:`square`,
:func:`slide`) are not in ``ATTACKS``: they take ``eps`` and find any adversarial inside that
ball.

:func:`spatial` (rotations and translations) measures no l_p norm: it takes no ``norm`` and is
not in ``ATTACKS``; :func:`robcurves.spatial_distances` runs it and verifies its adversarials.
``"slide"`` in ``ATTACKS`` is :func:`slide_search`, the minimal-l1 search around the
fixed-eps :func:`slide`.
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
from ._slide import slide, slide_direction, slide_search
from ._spatial import spatial, spatial_grid, spatial_transform
from ._square import square

__all__ = ["ATTACKS", "get_attack", "pgd", "deepfool", "pgd_search", "fmn", "ddn", "auto",
           "ensemble", "linear_targets", "hsja", "boundary", "fab", "apgd", "apgd_search",
           "cw", "ead", "spatial", "spatial_grid", "spatial_transform", "slide", "slide_search",
           "slide_direction", "square"]

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
    "slide": (slide_search, (1.0,)),  # SLIDE (Tramèr & Boneh) in a per-point eps bisection
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

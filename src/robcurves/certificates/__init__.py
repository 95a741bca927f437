"""Certified lower bounds (and exact values) of per-point minimal adversarial distances.

- :func:`certify`: the entry point, ``certify(model, x, y, norm, method)`` -> :class:`Distances`
  with ``kind="lower"`` (``"exact"`` for linear models and fully solved MILPs).
- :func:`ibp_bounds`: interval bounds on a ``nn.Sequential``'s outputs over an input box
  (differentiable; usable as a certified-training loss).
- :class:`Normalize`: an explicit ``(x - mean) / std`` layer the certifiers understand.

Supported networks: ``nn.Sequential`` (nested ones flattened) of ``Linear``, ``Conv2d``,
``ReLU``, ``Flatten``, ``BatchNorm1d/2d`` (eval), ``AvgPool2d``, ``Identity``, ``Dropout``
(eval) and :class:`Normalize`; the wrapper's mean/std preprocessing is folded in, so radii are
in raw input space, and every domain is the l_p ball intersected with the wrapper's bounds.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn

from .._norms import norm_name, parse_norm
from ..model import Classifier, TorchClassifier, wrap
from ..results import Distances
from ._layers import SUPPORTED_LAYERS, Affine, Normalize, affine_blocks, forward, sequential_layers
from .crown import certified_radius
from .ibp import ibp_bounds
from .linear import as_affine, linear_distances
from .milp import MILPResult, milp_distances

__all__ = ["METHODS", "SUPPORTED_LAYERS", "MILPResult", "Normalize", "certify", "ibp_bounds",
           "network_steps"]

#: method -> norms it supports
METHODS = {
    "crown": (math.inf, 2.0, 1.0),
    "ibp": (math.inf, 2.0, 1.0),
    "milp": (math.inf, 1.0),
    "exact-linear": (math.inf, 2.0, 1.0),
}


def network_steps(model: TorchClassifier, input_shape: tuple[int, ...]) -> list:
    """The wrapped module (float64 copy) with its preprocessing, as certifier steps."""
    module = copy.deepcopy(model.module).double().eval()
    mean = None if model.mean is None else model.mean.detach().cpu().double()
    std = None if model.std is None else model.std.detach().cpu().double()
    return sequential_layers(module, input_shape, mean=mean, std=std,
                             like=torch.zeros((), dtype=torch.float64))


def _as_numpy(a: object) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def certify(model: object, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
            norm: object = "inf", method: str = "crown", *,
            upper: Distances | np.ndarray | None = None,
            bounds: tuple[float, float] | None = None, batch_size: int = 32,
            iters: int = 14, time_limit: float = 10.0, indices: np.ndarray | None = None,
            progress: bool = False) -> Distances:
    """Certified lower bounds on each point's minimal adversarial distance.

    Args:
        model: a :class:`Classifier` from :func:`robcurves.wrap` (its preprocessing and bounds
            are used) or an ``nn.Module`` (wrapped with bounds ``(0, 1)``). For
            ``method="exact-linear"`` also an ``nn.Linear``-only network, a scikit-learn linear
            model (labels are indices into ``classes_``) or a ``(W, b)`` pair.
        x, y: raw inputs ``(N, ...)`` inside the bounds, integer labels ``(N,)``.
        norm: ``"inf"``, ``2`` or ``1`` (MILP: ``"inf"`` and ``1``).
        method: ``"crown"`` (backward linear relaxation), ``"ibp"`` (interval propagation),
            ``"milp"`` (exact for small ReLU nets, within ``time_limit`` seconds per point) or
            ``"exact-linear"`` (affine classifiers: closed form, LP or QP).
        upper: attack distances on the same points (a :class:`Distances` of kind ``"upper"``
            or an array, ``inf`` = unbroken): the bisection bracket for crown/ibp and the
            search radius of the MILP. Optional, but the MILP is far slower without it.
        bounds: input bounds when ``model`` is not a :class:`Classifier` (default ``(0, 1)``).
        batch_size: points bounded at once (crown/ibp).
        iters: bisection steps for crown/ibp (precision ``bracket / 2**iters``, rounded down).
        time_limit: MILP seconds per point.
        indices: positions of the points in their data set (default ``0..N-1``).

    Returns:
        :class:`Distances` with ``kind="lower"`` (``0`` for misclassified points, ``inf`` where
        the whole box is certified), ``"exact"`` for exact-linear and for MILP runs where every
        point was solved to optimality. The MILP's per-point status and upper bounds are in
        ``settings``.
    """
    p = parse_norm(norm)
    if method not in METHODS:
        raise ValueError(f"unknown certification method {method!r}; expected one of "
                         f"{', '.join(METHODS)}")
    if p not in METHODS[method]:
        raise ValueError(f"method {method!r} does not support norm {norm_name(p)}; it supports "
                         f"{', '.join(norm_name(q) for q in METHODS[method])}")
    x_np = _as_numpy(x).astype(np.float64)
    y_np = _as_numpy(y).astype(np.int64)
    if x_np.ndim < 2 or y_np.shape != (x_np.shape[0],):
        raise ValueError(f"x must be (N, ...) and y (N,); got {x_np.shape} and {y_np.shape}")
    n = x_np.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    up = None
    if upper is not None:
        up_np = upper.distances if isinstance(upper, Distances) else np.asarray(upper, float)
        if isinstance(upper, Distances) and upper.norm != p:
            raise ValueError(f"upper distances are in {upper.norm_name}; expected {norm_name(p)}")
        if up_np.shape != (n,):
            raise ValueError(f"upper must have one distance per point ({n}); got {up_np.shape}")
        up = torch.as_tensor(up_np, dtype=torch.float64)
    t0 = time.perf_counter()
    settings: dict = {"bounds": None}

    # ---- affine models that are not torch classifiers
    if method == "exact-linear" and not isinstance(model, (Classifier, nn.Sequential)):
        bnds = tuple(bounds) if bounds is not None else (0.0, 1.0)
        w, b = as_affine(model)
        classes = getattr(model, "classes_", None)
        if classes is not None and not np.array_equal(classes, np.arange(len(classes))):
            y_np = np.searchsorted(classes, y_np)
        _check_box(x_np, bnds)
        d, pred, n_box = linear_distances(w, b, x_np, y_np, p, bnds)
        settings.update(bounds=list(bnds), n_box_binding=n_box)
        return Distances(distances=d, labels=y_np, predictions=pred, indices=idx, norm=p,
                         method=method, kind="exact", settings=settings,
                         cost={"seconds": time.perf_counter() - t0})

    clf = wrap(model, bounds=bounds or (0.0, 1.0)) if isinstance(model, nn.Module) else model
    if not isinstance(clf, TorchClassifier):
        raise TypeError(f"certify needs a torch model (a robcurves TorchClassifier or an "
                        f"nn.Module); got {type(model).__name__}")
    bnds = clf.bounds
    settings["bounds"] = list(bnds)
    _check_box(x_np, bnds)
    steps = network_steps(clf, x_np.shape[1:])
    xt = torch.as_tensor(x_np, dtype=torch.float64)
    yt = torch.as_tensor(y_np)
    with torch.no_grad():
        pred = forward(steps, xt).argmax(1).numpy()

    if method == "exact-linear":
        if not all(isinstance(s, Affine) for s in steps):
            raise ValueError("method 'exact-linear' needs an affine model (no ReLU); use "
                             "'crown', 'ibp' or 'milp' for ReLU networks")
        (w, b), = affine_blocks(steps)
        w = np.asarray(w.todense())
        d, pred, n_box = linear_distances(w, b, x_np.reshape(n, -1), y_np, p, bnds)
        settings["n_box_binding"] = n_box
        kind = "exact"
    elif method in ("crown", "ibp"):
        from tqdm.auto import tqdm

        parts = []
        for s0 in tqdm(range(0, n, batch_size), disable=not progress, desc=method):
            sl = slice(s0, s0 + batch_size)
            parts.append(certified_radius(steps, xt[sl], yt[sl], p, bnds, method=method,
                                          upper=None if up is None else up[sl], iters=iters))
        d = torch.cat(parts).numpy() if parts else np.zeros(0)
        settings.update(iters=iters, bracket="attack" if up is not None else "box")
        kind = "lower"
    else:  # milp
        res = milp_distances(steps, xt, yt, p, bnds, upper=up, time_limit=time_limit,
                             progress=progress)
        d = res.lower
        settings.update(time_limit=time_limit, status=res.status, n_solved=res.n_solved,
                        upper=[None if math.isinf(v) else float(v) for v in res.upper],
                        n_binary=[int(v) for v in res.n_binary])
        kind = "exact" if res.n_solved == n else "lower"
    return Distances(distances=d, labels=y_np, predictions=pred, indices=idx, norm=p,
                     method=method, kind=kind, settings=settings,
                     cost={"seconds": time.perf_counter() - t0,
                           "seconds_per_point": (time.perf_counter() - t0) / max(n, 1)})


def _check_box(x: np.ndarray, bounds: tuple[float, float]) -> None:
    if x.size and (x.min() < bounds[0] or x.max() > bounds[1] or not np.isfinite(x).all()):
        raise ValueError(f"inputs must lie in bounds {tuple(bounds)}; found min {x.min()}, "
                         f"max {x.max()}")

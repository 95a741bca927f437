"""Certified lower bounds (and exact values) of per-point minimal adversarial distances.

- :func:`certify`: the entry point, ``certify(model, x, y, norm, method)`` -> :class:`Distances`
  with ``kind="lower"`` (``"exact"`` for linear models and fully solved MILPs). The default
  ``method="auto"`` is exact for affine models and CROWN otherwise; ``store=`` keeps each
  finished batch on disk so a long run resumes.
- :func:`ibp_bounds`: interval bounds on a ``nn.Sequential``'s outputs over an input box
  (differentiable; usable as a certified-training loss).
- :class:`Normalize`: an explicit ``(x - mean) / std`` layer the certifiers understand.

Supported networks: ``nn.Sequential`` (nested ones flattened) of ``Linear``, ``Conv2d``,
``ReLU``, ``Flatten``, ``BatchNorm1d/2d`` (eval), ``AvgPool2d``, ``Identity``, ``Dropout``
(eval) and :class:`Normalize`; the wrapper's mean/std preprocessing is folded in, so radii are
in raw input space, and every domain is the l_p ball intersected with the wrapper's bounds (the
ball alone for unbounded inputs, ``bounds=(-inf, inf)``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._norms import NormLike, norm_name, parse_norm
from .._ray import backend_options, run_batches_ray
from ..classifier import check_finite_logits
from ..model import Classifier, TorchClassifier, wrap
from ..results import Distances
from ..store import BatchStore, fingerprint_data, fingerprint_model, run_batches
from ._layers import SUPPORTED_LAYERS, Affine, Normalize, affine_blocks, forward, sequential_layers
from .crown import certified_radius
from .ibp import ibp_bounds
from .linear import as_affine, linear_distances
from .milp import MILPResult, milp_distances

__all__ = ["METHODS", "SUPPORTED_LAYERS", "MILPResult", "Normalize", "certify", "ibp_bounds",
           "network_steps"]

#: method -> norms it supports ("auto": exact-linear for affine models, else crown)
METHODS = {
    "auto": (math.inf, 2.0, 1.0),
    "crown": (math.inf, 2.0, 1.0),
    "ibp": (math.inf, 2.0, 1.0),
    "milp": (math.inf, 1.0),
    "exact-linear": (math.inf, 2.0, 1.0),
}


def network_steps(model: TorchClassifier, input_shape: tuple[int, ...]) -> list:
    """The wrapped module (float64 copy) with its preprocessing, as certifier steps."""
    module = copy.deepcopy(model.module).double().eval()
    mean, std = (None if t is None else t.detach().cpu().double()
                 for t in model.pre.stats(input_shape))
    return sequential_layers(module, input_shape, mean=mean, std=std,
                             like=torch.zeros((), dtype=torch.float64))


def _as_numpy(a: object) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def certify(model: object, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
            norm: NormLike = "linf", method: str = "auto", *,
            upper: Distances | np.ndarray | None = None,
            bounds: tuple[float, float] | None = None, batch_size: int = 32,
            iters: int = 14, time_limit: float = 10.0, indices: np.ndarray | None = None,
            store: str | Path | None = None, progress: bool = False, backend: str = "local",
            ray_address: str | None = None, workers: int | None = None,
            gpus_per_worker: float = 0.0) -> Distances:
    """Certified lower bounds on each point's minimal adversarial distance.

    Args:
        model: a :class:`Classifier` from :func:`robcurves.wrap` (its preprocessing and bounds
            are used) or an ``nn.Module`` (wrapped with ``bounds``). For ``"auto"`` and
            ``"exact-linear"`` also an ``nn.Linear``, a scikit-learn linear model (labels are
            indices into ``classes_``) or a ``(W, b)`` pair.
        x, y: raw inputs ``(N, ...)`` inside the bounds, integer labels ``(N,)``.
        norm: ``"inf"``, ``2`` or ``1`` (MILP: ``"inf"`` and ``1``).
        method: ``"auto"`` (default: ``"exact-linear"`` for affine models, i.e. no ReLU, else
            ``"crown"``), ``"crown"`` (backward linear relaxation), ``"ibp"`` (interval
            propagation), ``"milp"`` (exact for small ReLU nets, within ``time_limit`` seconds
            per point) or ``"exact-linear"`` (affine classifiers: closed form, LP or QP).
        upper: attack distances on the same points (a :class:`Distances` of kind ``"upper"``
            or an array, ``inf`` = unbroken): the bisection bracket for crown/ibp and the
            search radius of the MILP. Optional, but the MILP is far slower without it, and on
            unbounded inputs it needs a finite one for every point.
        bounds: input bounds when ``model`` is not a :class:`Classifier` (default ``(0, 1)``;
            ``(-inf, inf)`` for inputs without a box).
        batch_size: points bounded at once (and per stored batch).
        iters: bisection steps for crown/ibp (precision ``bracket / 2**iters``, rounded down).
        time_limit: MILP seconds per point.
        indices: positions of the points in their data set (default ``0..N-1``).
        store: a folder where each finished batch is saved; rerunning with the same settings
            (model, points, upper bounds, method) resumes and recomputes nothing already done.
        progress: show a progress bar (it moves within a batch, per bisection step or point;
            with Ray, per finished batch).
        backend: ``"local"`` (this process) or ``"ray"``: the same batches computed by Ray
            actors, each receiving the network (the float64 certifier copy) once through Ray's
            object store and using this process's torch thread count, so the bounds are
            byte-identical to the local backend's. Workers write nothing: this process puts
            each finished batch into ``store`` as it arrives, so a killed worker or driver
            loses only the batches in flight and rerunning resumes. Needs
            ``pip install "robcurves[ray]"``.
        ray_address, workers, gpus_per_worker: for ``backend="ray"``, as in
            :func:`robcurves.distances`.

    Returns:
        :class:`Distances` with ``kind="lower"`` (``0`` for misclassified points, ``inf`` where
        the whole box is certified), ``"exact"`` for exact-linear and for MILP runs where every
        point was solved to optimality; ``method`` is the method used (never ``"auto"``). The
        MILP's per-point status and upper bounds are in ``settings``.
    """
    p = parse_norm(norm)
    if method not in METHODS:
        raise ValueError(f"unknown certification method {method!r}; expected one of "
                         f"{', '.join(METHODS)}")
    if p not in METHODS[method]:
        raise ValueError(f"method {method!r} does not support norm {norm_name(p)}; it supports "
                         f"{', '.join(norm_name(q) for q in METHODS[method])}")
    for name, value in (("batch_size", batch_size), ("iters", iters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds; got {time_limit!r}")
    ray_options = backend_options(backend, ray_address, workers, gpus_per_worker)
    x_np = _as_numpy(x).astype(np.float64)
    y_np = _as_numpy(y).astype(np.int64)
    if x_np.ndim < 2 or y_np.shape != (x_np.shape[0],):
        raise ValueError(f"x must be (N, ...) and y (N,); got {x_np.shape} and {y_np.shape}")
    n = x_np.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.shape != (n,):
        raise ValueError(f"indices must have shape ({n},); got {idx.shape}")
    up_np = None
    if upper is not None:
        up_np = upper.distances if isinstance(upper, Distances) else np.asarray(upper, float)
        if isinstance(upper, Distances) and upper.norm != p:
            raise ValueError(f"upper distances are in {upper.norm_name}; expected {norm_name(p)}")
        if up_np.shape != (n,):
            raise ValueError(f"upper must have one distance per point ({n}); got {up_np.shape}")
    settings: dict = {"bounds": None}

    affine = None  # (W, b) of an affine model given without a torch classifier
    if method in ("auto", "exact-linear") and (
            isinstance(model, nn.Linear) or not isinstance(model, (Classifier, nn.Module))):
        bnds = tuple(float(b) for b in bounds) if bounds is not None else (0.0, 1.0)
        affine = as_affine(model)
        classes = getattr(model, "classes_", None)
        if classes is not None and not np.array_equal(classes, np.arange(len(classes))):
            y_np = np.searchsorted(classes, y_np)
        fingerprint = fingerprint_data(*affine)
        method, steps = "exact-linear", None
    else:
        clf = (wrap(model, bounds=bounds or (0.0, 1.0)) if isinstance(model, nn.Module)
               else model)
        if not isinstance(clf, TorchClassifier):
            raise TypeError(f"certify needs a torch model (a robcurves TorchClassifier or an "
                            f"nn.Module); got {type(model).__name__}")
        bnds = clf.bounds
        fingerprint = fingerprint_model(clf)
        steps = network_steps(clf, x_np.shape[1:])
        is_affine = all(isinstance(s, Affine) for s in steps)
        if method == "auto":
            method = "exact-linear" if is_affine else "crown"
        if method == "exact-linear":
            if not is_affine:
                raise ValueError("method 'exact-linear' needs an affine model (no ReLU); use "
                                 "'crown', 'ibp' or 'milp' for ReLU networks")
            (w, b), = affine_blocks(steps)
            affine = (np.asarray(w.todense()), b)
    _check_box(x_np, bnds)
    unbounded = not all(math.isfinite(b) for b in bnds)
    if method == "milp" and unbounded and (up_np is None or not np.isfinite(up_np).all()):
        missing = (np.arange(n) if up_np is None else np.flatnonzero(~np.isfinite(up_np)))
        raise ValueError(f"the MILP on unbounded inputs (bounds {bnds}) needs a finite search "
                         f"radius for every point: pass upper= attack distances; points "
                         f"{missing[:10].tolist()} have none")
    settings["bounds"] = list(bnds)
    if method in ("crown", "ibp"):
        settings.update(iters=iters, bracket=("attack" if up_np is not None else
                                              "doubling" if unbounded else "box"))
    elif method == "milp":
        settings["time_limit"] = time_limit
    xt = torch.as_tensor(x_np, dtype=torch.float64)
    yt = torch.as_tensor(y_np)
    up = None if up_np is None else torch.as_tensor(up_np, dtype=torch.float64)
    if steps is not None:  # NaN/inf logits: bounds on such a model would mean nothing
        with torch.no_grad():
            check_finite_logits(forward(steps, xt), idx)

    # what a batch needs of the model: the affine map or the certifier's network (sent once to
    # each Ray worker through the object store; the closure below holds only the data)
    net = affine if method == "exact-linear" else steps

    def compute(net, a: int, b: int, tick: Callable[[float], None] = _no_tick) -> Distances:
        t0 = time.perf_counter()
        cost: dict = {}
        kind = "lower"
        extra: dict = {}
        ub = None if up is None else up[a:b]
        if method == "exact-linear":
            d, pred, n_box = linear_distances(net[0], net[1], x_np[a:b].reshape(b - a, -1),
                                              y_np[a:b], p, bnds)
            cost["n_box_binding"] = n_box
            kind = "exact"
        else:
            with torch.no_grad():
                pred = forward(net, xt[a:b]).argmax(1).numpy()
            if method in ("crown", "ibp"):
                d = certified_radius(net, xt[a:b], yt[a:b], p, bnds, method=method, upper=ub,
                                     iters=iters, on_step=tick).numpy()
            else:  # milp
                res = milp_distances(net, xt[a:b], yt[a:b], p, bnds, upper=ub,
                                     time_limit=time_limit,
                                     on_point=lambda: tick(1.0 / (b - a)))
                d = res.lower
                extra = {"status": res.status,
                         "upper": [None if math.isinf(v) else float(v) for v in res.upper],
                         "n_binary": [int(v) for v in res.n_binary]}
                kind = "exact" if res.n_solved == b - a else "lower"
        seconds = time.perf_counter() - t0
        return Distances(distances=d, labels=y_np[a:b], predictions=pred, indices=idx[a:b],
                         norm=p, method=method, kind=kind, settings={**settings, **extra},
                         cost={**cost, "seconds": seconds,
                               "seconds_per_point": seconds / max(b - a, 1)})

    bstore = None
    if store is not None:
        bstore = BatchStore(store, {"certify": method, "norm": norm_name(p), "n": n,
                                    "batch_size": batch_size, **settings, "model": fingerprint,
                                    "data": fingerprint_data(x_np, y_np, idx,
                                                             np.zeros(0) if up_np is None
                                                             else up_np)})
    label = f"certify {method} {norm_name(p)}" if progress else None
    if ray_options is None:
        result = run_batches(n, batch_size, functools.partial(compute, net), bstore,
                             ticks=True, progress=label)
    else:
        result = run_batches_ray(n, batch_size, compute, net, bstore, ray_options,
                                 torch.get_num_threads(), progress=label)
    final = dict(result.settings)
    final["bounds"] = list(bnds)  # a 2-point batch's bounds must not be joined as a list
    if method == "exact-linear":
        final["n_box_binding"] = int(result.cost.pop("n_box_binding", 0))
    if method == "milp":
        final["n_solved"] = sum(s in _SOLVED for s in final["status"])
    return dataclasses.replace(result, settings=final)


_SOLVED = ("optimal", "misclassified", "no-adversarial")


def _no_tick(fraction: float) -> None:
    """The progress callback of a batch computed where no bar is shown (a Ray worker)."""


def _check_box(x: np.ndarray, bounds: tuple[float, float]) -> None:
    if x.size and (x.min() < bounds[0] or x.max() > bounds[1] or not np.isfinite(x).all()):
        raise ValueError(f"inputs must lie in bounds {tuple(bounds)}; found min {x.min()}, "
                         f"max {x.max()}")

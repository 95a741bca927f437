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

from .._device import batch_size_for, resolve_device
from .._norms import NormLike, norm_name, parse_norm
from .._ray import backend_options, run_batches_ray
from ..classifier import check_finite_logits
from ..model import Classifier, TorchClassifier, wrap
from ..results import Distances
from ..store import BatchStore, fingerprint_data, fingerprint_model, run_batches
from ._layers import (
    SUPPORTED_LAYERS,
    Affine,
    Normalize,
    affine_blocks,
    forward,
    sequential_layers,
    steps_to,
)
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


def network_steps(model: TorchClassifier, input_shape: tuple[int, ...],
                  device: str | torch.device | None = None) -> list:
    """The wrapped module (float64 copy) with its preprocessing, as certifier steps on
    ``device`` (default: the CPU)."""
    dev = torch.device("cpu" if device is None else device)
    module = copy.deepcopy(model.module).double().eval().to(dev)
    mean, std = (None if t is None else t.detach().to(dev, torch.float64)
                 for t in model.pre.stats(input_shape))
    return sequential_layers(module, input_shape, mean=mean, std=std,
                             like=torch.zeros((), dtype=torch.float64, device=dev))


def _as_numpy(a: object) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def certify(model: object, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
            norm: NormLike = "linf", method: str = "auto", *,
            upper: Distances | np.ndarray | None = None,
            bounds: tuple[float, float] | None = None, batch_size: int | None = None,
            iters: int = 14, time_limit: float = 10.0, indices: np.ndarray | None = None,
            store: str | Path | None = None, progress: bool = False, backend: str = "local",
            ray_address: str | None = None, workers: int | None = None,
            gpus_per_worker: float = 0.0, device: str | torch.device | None = None
            ) -> Distances:
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
        batch_size: points bounded at once (and per stored batch). Default: 32; for crown
            and ibp on CUDA, as many points as half the free GPU memory holds by an estimate
            of a point's working memory, at most 1024 (:func:`robcurves.batch_size_for`).
            Part of a stored run's settings: resume with the same batch size.
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
        device: where crown and ibp run: ``None`` (default) the model's device (where its
            parameters live), ``"auto"`` CUDA when available, or ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``; a device this machine does not have is refused before any work.
            The bounds are float64 on every device (the last bits may differ between a CPU
            and a GPU: sums in another order). The MILP and exact-linear run on the CPU
            whatever the device (scipy solvers; the device is still checked). With
            ``backend="ray"`` the workers compute on CUDA when ``gpus_per_worker > 0`` (the
            GPU Ray gives each) and on their CPUs otherwise; a ``device`` of another kind is
            refused.

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
    for name, value in (("batch_size", 1 if batch_size is None else batch_size),
                        ("iters", iters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds; got {time_limit!r}")
    if device is not None:  # a device this machine lacks: refused before any work
        device = resolve_device(device)
        if backend == "ray" and device.type != ("cuda" if gpus_per_worker > 0 else "cpu"):
            raise ValueError(f"device {str(device)!r} does not fit backend='ray' with "
                             f"gpus_per_worker={gpus_per_worker}: the workers compute on "
                             f"{'CUDA' if gpus_per_worker > 0 else 'their CPUs'}; leave "
                             "device unset or set gpus_per_worker")
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
        if device is None:
            device = resolve_device(None, clf.module)
        steps = network_steps(clf, x_np.shape[1:])  # on the CPU; crown and ibp move it below
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
    if method in ("crown", "ibp") and ray_options is None:
        steps = steps_to(steps, device)  # Ray workers get the CPU copy and move it themselves
    if method in ("crown", "ibp"):
        settings.update(iters=iters, bracket=("attack" if up_np is not None else
                                              "doubling" if unbounded else "box"))
    elif method == "milp":
        settings["time_limit"] = time_limit
    # the points stay on the CPU; each batch goes to the network's device when it starts
    xt = torch.as_tensor(x_np, dtype=torch.float64)
    yt = torch.as_tensor(y_np)
    up = None if up_np is None else torch.as_tensor(up_np, dtype=torch.float64)
    if steps is not None:  # NaN/inf logits: bounds on such a model would mean nothing
        where = _steps_device(steps)
        with torch.no_grad():
            for s in range(0, n, 4096):
                check_finite_logits(forward(steps, xt[s:s + 4096].to(where)).cpu(),
                                    idx[s:s + 4096])
    if batch_size is None:
        batch_size = _default_batch_size(steps, method, x_np.shape[1:])

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
            if isinstance(net, _WorkerNet):  # a Ray worker: its copy on its own device
                net = net.steps()
            dev = _steps_device(net)
            xb, yb = xt[a:b].to(dev), yt[a:b].to(dev)
            ub = None if ub is None else ub.to(dev)
            with torch.no_grad():
                pred = forward(net, xb).argmax(1).cpu().numpy()
            if method in ("crown", "ibp"):
                d = certified_radius(net, xb, yb, p, bnds, method=method, upper=ub,
                                     iters=iters, on_step=tick).cpu().numpy()
            else:  # milp
                res = milp_distances(net, xb, yb, p, bnds, upper=ub,
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
        if steps is not None and method != "milp":
            net = _WorkerNet(steps, "cuda" if gpus_per_worker > 0 else "cpu")
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

#: Largest batch certify picks by itself on CUDA.
CUDA_BATCH_CAP = 1024


def _steps_device(steps: list) -> torch.device:
    """Where the certifier's network lives (the CPU for one without tensors)."""
    for s in steps:
        for t in vars(s).values():
            if isinstance(t, torch.Tensor):
                return t.device
    return torch.device("cpu")


def _default_batch_size(steps: list | None, method: str, input_shape: tuple) -> int:
    """32 points; for crown and ibp on CUDA, what half the free memory holds (see certify)."""
    if steps is None or method not in ("crown", "ibp"):
        return 32
    dev = _steps_device(steps)
    if dev.type != "cuda":
        return 32
    # a point's working memory (float64): the margins' coefficients (K - 1 rows of the widest
    # layer) pushed back through the network, the bounds and relaxations of every ReLU input,
    # and the bisection's copies of both; the patch rows of CROWN's tightening go in chunks of
    # a fixed size, whatever the batch
    k = int(steps[-1].out_shape[0])
    widest = max(math.prod(s.in_shape) for s in steps)
    relus = sum(math.prod(s.in_shape) for s in steps if not isinstance(s, Affine))
    per_point = 8.0 * (4 * (k - 1) * widest + 10 * relus + 4 * math.prod(input_shape))
    return batch_size_for(dev, per_point, cap=CUDA_BATCH_CAP)


class _WorkerNet:
    """The certifier's network as sent to a Ray worker (on the CPU): the worker moves it to
    its own ``device`` once, on its first batch."""

    def __init__(self, steps: list, device: str) -> None:
        self.cpu_steps, self.device, self._steps = steps, device, None

    def steps(self) -> list:
        if self._steps is None:
            self._steps = steps_to(self.cpu_steps, self.device)
        return self._steps

    def __getstate__(self) -> dict:
        return {"cpu_steps": self.cpu_steps, "device": self.device, "_steps": None}


def _no_tick(fraction: float) -> None:
    """The progress callback of a batch computed where no bar is shown (a Ray worker)."""


def _check_box(x: np.ndarray, bounds: tuple[float, float]) -> None:
    if x.size and (x.min() < bounds[0] or x.max() > bounds[1] or not np.isfinite(x).all()):
        raise ValueError(f"inputs must lie in bounds {tuple(bounds)}; found min {x.min()}, "
                         f"max {x.max()}")

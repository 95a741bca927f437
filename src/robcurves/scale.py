"""Inter-class distances: what a "small" perturbation is on a given data set.

For every point, :func:`interclass_distances` finds the exact distance to its nearest neighbour of
a *different* class (and, on request, of the *same* class) in l_inf, l2 or l1. If two points of
different classes lie at distance r, any perturbation budget eps >= r / 2 lets an adversary move
both to their midpoint, so no classifier can be correct and robust on both. Hence, with r_min the
smallest inter-class distance of the set (the *separation*), **eps >= r_min / 2 is the budget above
which no classifier can be both accurate and robust on all points**
(:attr:`InterclassDistances.eps_limit`); below it the 1-nearest-neighbour classifier in the same
norm is accurate and robust. The midpoint of two points of the input box is in the box, so the
bound holds with input bounds too.

The search is exact (float64 distances of the float32 inputs, what a brute-force NumPy computation
in float64 gives) yet never forms the N x N distance matrix; how it stays exact and fast is
described in :mod:`robcurves._interclass_engine`.

Ties: the distance is exact; the neighbour index is *one* point attaining it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._device import resolve_device
from ._interclass_engine import Engine
from ._norms import NormLike, norm_name, parse_norm

__all__ = ["InterclassDistances", "interclass_distances"]


def _renamed(old: str, new: str) -> property:
    """A read-only alias ``old`` of the attribute ``new`` that warns on use."""
    def get(self: InterclassDistances) -> np.ndarray | None:
        warnings.warn(f"InterclassDistances.{old} is deprecated; use .{new}",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated: use :attr:`{new}`.")


@dataclass(frozen=True)
class InterclassDistances:
    """Per-point nearest-neighbour distances of one data set in one norm.

    Distances are in the units of the (flattened) inputs, e.g. pixel intensity in [0, 1].

    Attributes:
        norm: ``math.inf``, ``2.0`` or ``1.0``.
        distances: ``(N,)`` float64, distance to the nearest point of another class; ``inf``
            when no other class exists, ``nan`` for corrupted points (not measured).
        neighbors: ``(N,)`` int64, index of one point attaining ``distances`` (-1 if none).
        labels: ``(N,)`` int64 labels as given.
        same_distances / same_neighbors: the same for the nearest *other* point of the *same*
            class (``None`` unless requested); ``inf`` / -1 for a point alone in its class.
        conflicts: ``(K, 2)`` int64 pairs ``(i, j)``, ``i < j``, of differently-labelled points
            at distance ``<= duplicate_tol`` (duplicates with conflicting labels). Every such
            point appears in at least one pair; all are excluded from the summary.
        corrupted: indices of points with non-finite values or values outside ``bounds``;
            they are neither measured nor used as neighbours.
        duplicate_tol: distance at or below which two points count as duplicates.
        bounds: the input range checked, or ``None``.
        name: data set name for reports.
        dim: input dimensionality D.
    """

    norm: float
    distances: np.ndarray
    neighbors: np.ndarray
    labels: np.ndarray
    same_distances: np.ndarray | None = None
    same_neighbors: np.ndarray | None = None
    conflicts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    corrupted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    duplicate_tol: float = 0.0
    bounds: tuple[float, float] | None = (0.0, 1.0)
    name: str = ""
    dim: int = 0

    # Former names (singular, unlike ``Distances.distances``): read-only, and they warn.
    distance = _renamed("distance", "distances")
    neighbor = _renamed("neighbor", "neighbors")
    same_distance = _renamed("same_distance", "same_distances")
    same_neighbor = _renamed("same_neighbor", "same_neighbors")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # noqa: ARG002 - numpy protocol
        return self.distances if dtype is None else self.distances.astype(dtype)

    def __len__(self) -> int:
        return int(self.distances.shape[0])

    @property
    def excluded(self) -> np.ndarray:
        """``(N,)`` bool: corrupted points and points in a conflicting-duplicate pair."""
        mask = np.zeros(len(self), dtype=bool)
        mask[self.corrupted] = True
        mask[self.conflicts.reshape(-1)] = True
        return mask

    @property
    def valid(self) -> np.ndarray:
        """``(N,)`` bool: points that enter the summary (not excluded, finite distance)."""
        return ~self.excluded & np.isfinite(self.distances)

    @property
    def separation(self) -> float:
        """Smallest inter-class distance over the valid points (``nan`` if none)."""
        d = self.distances[self.valid]
        return float(d.min()) if d.size else math.nan

    @property
    def eps_limit(self) -> float:
        """``separation / 2``: from this eps on, no classifier is accurate and robust on all
        valid points (two of them of different classes share an adversarial midpoint)."""
        return self.separation / 2.0

    def summary(self) -> dict:
        """Counts and distribution of the valid inter-class distances, as plain Python values."""
        d = self.distances[self.valid]
        q = (lambda v: float(np.quantile(d, v))) if d.size else (lambda v: math.nan)
        out = {
            "name": self.name, "norm": norm_name(self.norm), "samples": len(self),
            "classes": int(np.unique(self.labels).size), "dim": self.dim,
            "used": int(d.size), "corrupted": int(self.corrupted.size),
            "conflicting_duplicates": int(np.unique(self.conflicts).size),
            "min": q(0.0), "q05": q(0.05), "median": q(0.5), "q95": q(0.95), "max": q(1.0),
            "mean": float(d.mean()) if d.size else math.nan,
            "eps_limit": self.eps_limit,
        }
        if self.same_distances is not None:
            s = self.same_distances[self.valid & np.isfinite(self.same_distances)]
            out["same_class_median"] = float(np.median(s)) if s.size else math.nan
        return out

    def to_dict(self) -> dict:
        """Everything, JSON-ready (non-finite floats become ``None``).

        The per-point arrays keep the keys ``scale.json`` has always had: ``distance``,
        ``neighbor``, ``same_distance`` and ``same_neighbor`` (the attributes ``distances``,
        ``neighbors``, ``same_distances`` and ``same_neighbors``), so files written before and
        after read the same way.
        """
        def clean(a: np.ndarray | None) -> list | None:
            if a is None:
                return None
            return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]

        return {
            "summary": self.summary(), "duplicate_tol": self.duplicate_tol,
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "distance": clean(self.distances), "neighbor": self.neighbors.tolist(),
            "same_distance": clean(self.same_distances),
            "same_neighbor": (None if self.same_neighbors is None
                              else self.same_neighbors.tolist()),
            "conflicts": self.conflicts.tolist(), "corrupted": self.corrupted.tolist(),
        }


def interclass_distances(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    norm: NormLike,
    *,
    same_class: bool = False,
    duplicate_tol: float = 0.0,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    k: int | None = None,
    block_size: int = 1024,
    levels: int | None = None,
    progress: bool = False,
    name: str = "",
    backend: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    device: str | torch.device | None = None,
) -> InterclassDistances:
    """Exact distance from every point to its nearest point of a different class.

    Args:
        x: ``(N, ...)`` inputs; flattened to ``(N, D)``; measured as float32 values in float64.
        y: ``(N,)`` integer labels.
        norm: ``"inf"``/``"linf"``/``float("inf")``, ``2``/``"l2"`` or ``1``/``"l1"``.
        same_class: also compute the nearest other point of the same class.
        duplicate_tol: differently-labelled points at distance ``<=`` this are reported as
            conflicting duplicates (default 0: exact duplicates) and left out of the summary.
        bounds: valid input range; points with values outside it (or non-finite) are reported
            as corrupted and left out. ``None`` checks finiteness only.
        k: candidates measured exactly per point in the first pass (speed knob only; default
            8 for l_inf, 32 for l2 and l1).
        block_size: rows per block; memory is O(block_size * (D + N_block)), never O(N^2).
        levels: indicator levels per side for the l_inf certificate, feature layers for the
            l1 bound (speed knob only; default 1 for l_inf, 2 for l1: the fastest on MNIST).
        progress: show tqdm progress bars.
        name: data set name carried into the result.
        backend: ``"local"`` (this process) or ``"ray"``: the exact second pass, one query
            block of ``block_size`` rows per batch, on Ray actors that each receive the points
            once through Ray's object store and use this process's torch thread count; the
            first pass (one symmetric blocked product, about ``N^2 D / 2`` multiply-adds) stays
            in this process. Each block is finished on its own, so the result is
            byte-identical to the local backend's; a killed worker's blocks are computed again.
            Needs ``pip install "robcurves[ray]"``.
        ray_address, workers: for ``backend="ray"``, as in :func:`robcurves.distances`.
        device: where the search runs: ``None`` (default) the device of ``x`` when it is a
            torch tensor off the CPU, else ``"auto"`` (the first GPU when CUDA is available,
            else the CPU); or ``"cpu"``, ``"cuda"``, ``"cuda:N"``. A device this machine does
            not have is refused before any work. The distances are exact on every device
            (l_inf bit for bit; l2 and l1 float64 sums, whose last bits may differ between a
            CPU and a GPU as the order of the sums does). The inputs and the search's tensors
            live there (about ``N * D * 4`` bytes plus blocks of ``block_size`` rows); the
            result is on the CPU. ``backend="ray"`` runs on the CPU (the workers' CPUs for pass
            2); another device with it is refused.

    Returns:
        an :class:`InterclassDistances`; ``np.asarray(result)`` is the distance array.
    """
    p = parse_norm(norm)
    dev = _search_device(device, x, backend)
    x_np = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if x_np.ndim < 1 or x_np.shape[0] != y_np.reshape(-1).shape[0] or y_np.ndim != 1:
        raise ValueError(f"x must be (N, ...) and y (N,); got shapes {x_np.shape} and "
                         f"{y_np.shape}")
    if not (np.issubdtype(y_np.dtype, np.integer) or y_np.dtype == np.bool_):
        raise ValueError(f"y must hold integer labels; got dtype {y_np.dtype}")
    if duplicate_tol < 0 or not math.isfinite(duplicate_tol):
        raise ValueError(f"duplicate_tol must be a finite number >= 0; got {duplicate_tol}")
    if k is None:
        k = 8 if p == math.inf else 32
    if levels is None:
        levels = 1 if p == math.inf else 2
    if k < 1 or block_size < 1 or levels < 1:
        raise ValueError(f"k, block_size and levels must be >= 1; got {k}, {block_size}, "
                         f"{levels}")
    from ._ray import backend_options

    options = backend_options(backend, ray_address, workers)
    ray = None if options is None else (options, torch.get_num_threads())
    n = int(x_np.shape[0])
    flat = x_np.reshape(n, -1)
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)
    flat = np.ascontiguousarray(flat)
    labels = y_np.astype(np.int64)
    dim = int(flat.shape[1])

    bad = ~np.isfinite(flat).all(axis=1) if n else np.zeros(0, dtype=bool)
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        if not lo <= hi:
            raise ValueError(f"bounds must be (low, high) with low <= high; got {bounds}")
        with np.errstate(invalid="ignore"):
            bad |= ((flat < lo) | (flat > hi)).any(axis=1)
    corrupted = np.flatnonzero(bad).astype(np.int64)
    keep = np.flatnonzero(~bad)
    xw = torch.from_numpy(flat if keep.size == n else flat[keep]).to(dev)
    yw = torch.from_numpy(labels if keep.size == n else labels[keep]).to(dev)

    dist = np.full(n, math.nan)
    nb = np.full(n, -1, dtype=np.int64)
    engine = Engine(xw, yw, p, k=k, block=block_size, levels=levels, progress=progress,
                    ray=ray)
    d_o, n_o = engine.run(same=False)
    dist[keep] = d_o
    nb[keep] = np.where(n_o >= 0, keep[np.maximum(n_o, 0)], -1)
    same_d = same_n = None
    if same_class:
        same_d = np.full(n, math.nan)
        same_n = np.full(n, -1, dtype=np.int64)
        d_s, n_s = engine.run(same=True)
        same_d[keep] = d_s
        same_n[keep] = np.where(n_s >= 0, keep[np.maximum(n_s, 0)], -1)

    close = np.flatnonzero(np.isfinite(dist) & (dist <= duplicate_tol) & (nb >= 0))
    if close.size:
        pairs = np.stack([np.minimum(close, nb[close]), np.maximum(close, nb[close])], axis=1)
        conflicts = np.unique(pairs, axis=0).astype(np.int64)
    else:
        conflicts = np.zeros((0, 2), dtype=np.int64)
    return InterclassDistances(
        norm=p, distances=dist, neighbors=nb, labels=labels, same_distances=same_d,
        same_neighbors=same_n, conflicts=conflicts, corrupted=corrupted,
        duplicate_tol=float(duplicate_tol),
        bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])), name=name,
        dim=dim)


def _search_device(device: str | torch.device | None, x: object, backend: str) -> torch.device:
    """The device of an inter-class search (see :func:`interclass_distances`)."""
    if isinstance(x, torch.Tensor) and x.device.type == "meta":
        raise ValueError("x is on the meta device (a shape without values); pass the data")
    if device is None:
        if backend == "ray":
            return torch.device("cpu")
        if isinstance(x, torch.Tensor) and x.device.type not in ("cpu", "meta"):
            return x.device
        return resolve_device("auto")
    dev = resolve_device(device)
    if backend == "ray" and dev.type != "cpu":
        raise ValueError(f"device {str(device)!r} does not fit backend='ray': inter-class "
                         "distances on Ray run on the CPU (pass 2 on the workers' CPUs); leave "
                         "device unset or use the local backend on the GPU")
    return dev

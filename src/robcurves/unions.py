"""Robustness against several threat models at once (Tramèr & Boneh, NeurIPS 2019).

A point is broken at size ``t`` along the threat vector ``s = (s_linf, s_l2, s_l1)`` when some
ball ``{delta : ||delta||_p <= t * s_p}`` holds an adversarial, so its *union distance* is
``u = min_p d_p / s_p`` and the union curve is an ordinary robustness curve of those distances
(over the unitless size ``t``). :func:`union` builds it from per-norm :class:`Distances` or
:class:`RobustnessCurve` of one model on the same points; its ``norm`` is the threat label
``"union(linf:1,l2:0.5,...)"`` (:func:`robcurves._norms.union_label`), so :func:`compare`
pairs it only with union curves of the same scales, and :func:`band` pairs a certified union
curve (from lower bounds: a lower bound on ``u``) with an attack one (from upper bounds).

:func:`union_surface` gives the robust error on a grid of two radii ``(eps_a, eps_b)``: a point
is broken when ``d_a <= eps_a`` or ``d_b <= eps_b``.

:func:`spatial_distances` measures the rotation-translation threat of the same paper
(:func:`robcurves.attacks.spatial`) as :class:`Distances` with the label
``"spatial(deg:30,px:3)"`` in place of a norm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._norms import NormLike, norm_name, parse_norm, spatial_label, union_label
from .classifier import Bounds, Classifier
from .curve import RobustnessCurve
from .results import Distances

__all__ = ["union", "union_surface", "UnionSurface", "spatial_distances"]


def _as_curve(value: object, key: str) -> RobustnessCurve:
    if isinstance(value, Distances):
        return RobustnessCurve.from_distances(value)
    if isinstance(value, RobustnessCurve):
        return value
    raise TypeError(f"the {key} entry must be a Distances or RobustnessCurve; got "
                    f"{type(value).__name__}")


def _components(per_norm: Mapping[NormLike, Distances | RobustnessCurve]
                ) -> dict[float, RobustnessCurve]:
    """Parse the keys, check each entry's norm and put every curve in the first one's order."""
    if not isinstance(per_norm, Mapping) or not per_norm:
        raise ValueError("expected a non-empty mapping from norm to Distances/RobustnessCurve; "
                         f"got {per_norm!r}")
    out: dict[float, RobustnessCurve] = {}
    for key, value in per_norm.items():
        p = parse_norm(key)
        if p in out:
            raise ValueError(f"norm {norm_name(p)} is given twice")
        c = _as_curve(value, repr(key))
        if c.norm != p:
            raise ValueError(f"the {key!r} entry holds {c.norm_name} distances")
        out[p] = c
    first_p, first = next(iter(out.items()))
    has_idx = [c.indices is not None for c in out.values()]
    if any(has_idx) and not all(has_idx):
        missing = [norm_name(p) for p, c in out.items() if c.indices is None]
        raise ValueError(f"the {missing} distances have no point indices while others do; "
                         "cannot pair points")
    for p, c in out.items():
        if c.n != first.n:
            raise ValueError(f"the distances are on different points: {norm_name(first_p)} has "
                             f"{first.n} points, {norm_name(p)} has {c.n}")
        if first.indices is None:
            continue
        if not np.array_equal(np.sort(c.indices), np.sort(first.indices)):
            bad = np.setdiff1d(c.indices, first.indices).size
            raise ValueError(f"the distances are on different points: {bad} of the {c.n} "
                             f"{norm_name(p)} indices are not among the {norm_name(first_p)} "
                             "ones (evaluate every norm on the same points)")
        if np.unique(c.indices).size != c.n:
            raise ValueError(f"the {norm_name(p)} distances repeat point indices")
        if not np.array_equal(c.indices, first.indices):
            order = np.argsort(c.indices)[np.argsort(np.argsort(first.indices))]
            c = RobustnessCurve(
                distances=c.distances[order], norm=c.norm, name=c.name, kind=c.kind,
                indices=c.indices[order],
                labels=None if c.labels is None else c.labels[order],
                predictions=None if c.predictions is None else c.predictions[order],
                metadata=c.metadata)
            out[p] = c
        if c.labels is not None and first.labels is not None \
                and not np.array_equal(c.labels, first.labels):
            raise ValueError(f"the {norm_name(p)} and {norm_name(first_p)} distances have "
                             "different labels for the same points: different data")
    return out


def _union_kind(kinds: set[str]) -> str:
    if kinds >= {"lower", "upper"}:
        raise ValueError("cannot take the union of attack distances (upper bounds) and "
                         "certified distances (lower bounds): the minimum bounds neither way; "
                         f"got kinds {sorted(kinds)}")
    return next(iter(kinds - {"exact"}), "exact")


def union(per_norm: Mapping[NormLike, Distances | RobustnessCurve], *,
          scale: Mapping[NormLike, float], name: str | None = None) -> RobustnessCurve:
    """The union robustness curve of one model over several norms.

    Args:
        per_norm: per-point distances of one model in each norm, e.g.
            ``{"linf": d_inf, "l2": d_2, "l1": d_1}`` (:class:`Distances` or
            :class:`RobustnessCurve`), on the same points (paired by ``indices``).
        scale: the threat vector: for every norm of ``per_norm`` a positive radius ``s_p``;
            the union ball of size ``t`` is the union of the l_p balls of radius ``t * s_p``.
        name: the curve's model name (default: the components' common name, else ``"union"``).

    Returns:
        A :class:`RobustnessCurve` of ``u_i = min_p d_p,i / s_p`` over ``t`` whose ``norm`` is
        the threat label (``"union(linf:0.1,l2:1)"``). Its kind follows the inputs: attack
        distances give an upper bound on each ``u_i`` (``"upper"``), certified distances a lower
        bound (``"lower"``), exact ones ``"exact"``.

    Raises:
        ValueError: an unknown norm, a norm in ``scale`` without distances or distances without
            a scale, a non-positive or non-finite scale, inputs on different points, or attack
            and certified distances mixed.
    """
    if not isinstance(scale, Mapping):
        raise ValueError(f"scale must be a mapping from norm to a positive radius; got {scale!r}")
    label = union_label(dict(scale))  # checks the norms and the scales
    s = {parse_norm(k): float(v) for k, v in scale.items()}
    comps = _components(per_norm)
    if set(s) != set(comps):
        missing = [norm_name(p) for p in comps if p not in s]
        extra = [norm_name(p) for p in s if p not in comps]
        raise ValueError("scale and distances must name the same norms: "
                         + "; ".join(filter(None, [
                             f"no scale for {missing}" if missing else "",
                             f"no distances for {extra}" if extra else ""])))
    kind = _union_kind({c.kind for c in comps.values()})
    first = next(iter(comps.values()))
    ratios = np.stack([comps[p].distances / s[p] for p in comps])
    d = ratios.min(axis=0)
    which = [norm_name(p) for p in comps]
    names = {c.name for c in comps.values()}
    meta: dict = {"threat": {"union": {norm_name(p): s[p] for p in comps}},
                  "components": {norm_name(p): {"name": c.name, "kind": c.kind,
                                                "method": c.metadata.get("method", c.name)}
                                 for p, c in comps.items()},
                  "closest_norm_counts": {nm: int(np.sum((ratios.argmin(axis=0) == i)
                                                         & np.isfinite(d)))
                                          for i, nm in enumerate(which)}}
    datas = [c.metadata.get("data") for c in comps.values()]
    if datas[0] is not None and all(x == datas[0] for x in datas):
        meta["data"] = datas[0]
    return RobustnessCurve(distances=d, norm=label,
                           name=name or (names.pop() if len(names) == 1 else "union"),
                           kind=kind, indices=first.indices, labels=first.labels,
                           predictions=first.predictions, metadata=meta)


@dataclass(frozen=True)
class UnionSurface:
    """Robust error against the union of two balls on a grid of their radii.

    Attributes:
        norm_a, norm_b: the two norms (floats).
        eps_a: ``(m,)`` radii of the first ball; eps_b: ``(k,)`` radii of the second.
        robust_error: ``(m, k)`` fraction of points with ``d_a <= eps_a[i]`` or
            ``d_b <= eps_b[j]`` (a robust *error*; its kind follows the distances).
        kind: ``"upper"`` (attack distances: the surface lies below the truth), ``"lower"``
            or ``"exact"``.
        n: number of points.
    """

    norm_a: float
    norm_b: float
    eps_a: np.ndarray
    eps_b: np.ndarray
    robust_error: np.ndarray
    kind: str
    n: int

    def plot(self, ax=None, levels: int | Sequence[float] = 10, accuracy: bool = False):
        """Contour plot of robust error (or accuracy) over ``(eps_a, eps_b)``; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 4))
        z = 1.0 - self.robust_error if accuracy else self.robust_error
        cs = ax.contourf(self.eps_a, self.eps_b, z.T, levels=levels, cmap="viridis")
        ax.figure.colorbar(cs, ax=ax, label="robust accuracy" if accuracy else "robust error")
        ax.set_xlabel(f"eps ({norm_name(self.norm_a)})")
        ax.set_ylabel(f"eps ({norm_name(self.norm_b)})")
        return ax


def _grid(eps: Sequence[float] | np.ndarray | None, d: np.ndarray, what: str) -> np.ndarray:
    if eps is None:
        finite = d[np.isfinite(d)]
        top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        return np.linspace(0.0, top, 41)
    e = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    if e.ndim != 1 or e.size == 0 or np.isnan(e).any() or (e < 0).any():
        raise ValueError(f"{what} must be a non-empty list of eps >= 0; got {eps!r}")
    return e


def union_surface(a: Distances | RobustnessCurve, b: Distances | RobustnessCurve, *,
                  eps_a: Sequence[float] | np.ndarray | None = None,
                  eps_b: Sequence[float] | np.ndarray | None = None) -> UnionSurface:
    """Robust error against the union of an ``a``-ball and a ``b``-ball on a grid of radii.

    ``a`` and ``b`` are distances of one model in two different norms on the same points. The
    grids default to 41 radii from 0 to the largest finite distance of each norm.
    """
    ca, cb = _as_curve(a, "a"), _as_curve(b, "b")
    if ca.norm == cb.norm or isinstance(ca.norm, str) or isinstance(cb.norm, str):
        raise ValueError(f"union_surface needs distances in two different l_p norms; got "
                         f"{ca.norm_name} and {cb.norm_name}")
    comps = _components({ca.norm: ca, cb.norm: cb})
    ca, cb = comps[ca.norm], comps[cb.norm]
    kind = _union_kind({ca.kind, cb.kind})
    ea, eb = _grid(eps_a, ca.distances, "eps_a"), _grid(eps_b, cb.distances, "eps_b")
    broken_a = (ca.distances[:, None] <= ea[None, :]).astype(np.float64)  # (n, m)
    broken_b = (cb.distances[:, None] <= eb[None, :]).astype(np.float64)  # (n, k)
    # P[A or B] = P[A] + P[B] - P[A and B], the joint term as one matrix product.
    both = broken_a.T @ broken_b
    err = (broken_a.sum(0)[:, None] + broken_b.sum(0)[None, :] - both) / ca.n
    return UnionSurface(norm_a=ca.norm, norm_b=cb.norm, eps_a=ea, eps_b=eb,
                        robust_error=err, kind=kind, n=ca.n)


def spatial_distances(model: object, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                      *, bounds: Bounds = (0.0, 1.0), max_degrees: float = 30.0,
                      max_pixels: float = 3.0, mode: str = "grid", rotations: int = 31,
                      translations: int = 5, samples: int = 10, seed: int = 0,
                      indices: np.ndarray | None = None,
                      return_adversarials: bool = False) -> Distances:
    """Per-point spatial distance: the smallest rotation-translation size ``r`` that fools the
    model (:func:`robcurves.attacks.spatial`; ``r = 1`` is ``max_degrees`` or ``max_pixels``).

    Every adversarial is re-checked in a separate pass; one that no longer fools the model
    counts as unbroken (``inf``), with a warning. The result's ``norm`` is the threat label
    ``"spatial(deg:30,px:3)"``, so its curve is compared only with spatial curves of the same
    unit. ``kind="upper"``: on the grid the distance is exact *for the grid*, and an upper
    bound on the smallest ``r`` over all rotations and translations.

    Args:
        model: an ``nn.Module`` (wrapped with ``bounds``) or a :class:`Classifier`.
        x, y: images ``(N, C, H, W)`` and labels ``(N,)``.
        indices: positions of the points in their data set (default ``0..N-1``).
        return_adversarials: keep the transformed images (the clean image for misclassified
            points, NaN where unbroken).
        Other options: see :func:`robcurves.attacks.spatial`.
    """
    import time
    import warnings

    from .attacks import spatial
    from .model import wrap

    label = spatial_label(max_degrees, max_pixels)
    clf = model if isinstance(model, Classifier) else wrap(model, bounds=bounds)
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y).long()
    n = int(xt.shape[0]) if xt.ndim else 0
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.shape != (n,):
        raise ValueError(f"indices must have shape ({n},); got {idx.shape}")
    t0 = time.perf_counter()
    f0 = clf.n_forward
    adv, r = spatial(clf, xt, yt, max_degrees=max_degrees, max_pixels=max_pixels, mode=mode,
                     rotations=rotations, translations=translations, samples=samples, seed=seed)
    pred = clf.predict(xt).numpy()
    d = r.numpy().copy()
    moved = np.isfinite(d) & (d > 0)
    if moved.any():
        still = clf.predict(adv[torch.as_tensor(moved)]).numpy() != yt.numpy()[moved]
        rejected = int((~still).sum())
        if rejected:
            warnings.warn(f"{rejected} spatial adversarials did not fool the model when "
                          "re-checked; counted as unbroken", stacklevel=2)
            d[np.flatnonzero(moved)[~still]] = np.inf
    else:
        rejected = 0
    out = None
    if return_adversarials:
        out = adv.detach().cpu().float().numpy().copy()
        out[np.isinf(d)] = np.nan
    settings = {"max_degrees": float(max_degrees), "max_pixels": float(max_pixels),
                "mode": mode, "seed": seed}
    settings.update({"rotations": rotations, "translations": translations} if mode == "grid"
                    else {"samples": samples})
    return Distances(distances=d, labels=yt.numpy(), predictions=pred, indices=idx, norm=label,
                     method=f"spatial-{mode}", kind="upper", settings=settings,
                     cost={"forward_per_point": (clf.n_forward - f0) / max(n, 1),
                           "backward_per_point": 0.0, "seconds": time.perf_counter() - t0,
                           "rejected": rejected},
                     adversarials=out)

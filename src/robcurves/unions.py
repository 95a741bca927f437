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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._norms import (
    NormLike,
    affine_label,
    is_threat_label,
    norm_name,
    parse_norm,
    parse_threat,
    spatial_label,
    spatial_units,
    union_label,
)
from .classifier import Bounds, Classifier
from .curve import RobustnessCurve
from .results import Distances

__all__ = ["union", "union_surface", "UnionSurface", "spatial_distances", "affine_distances",
           "spatial_linf", "SpatialLinf",
           "affine_distances_linear"]


def _as_curve(value: object, key: str) -> RobustnessCurve:
    if isinstance(value, Distances):
        return RobustnessCurve.from_distances(value)
    if isinstance(value, RobustnessCurve):
        return value
    raise TypeError(f"the {key} entry must be a Distances or RobustnessCurve; got "
                    f"{type(value).__name__}")


#: the key of the rotation-translation threat in a union's ``per_norm`` and ``scale``
SPATIAL = "spatial"


def _threat_key(key: object) -> float | str:
    """An l_p norm as its float, or :data:`SPATIAL` for ``"spatial"`` or a spatial label."""
    if isinstance(key, str) and key.strip().lower() == SPATIAL:
        return SPATIAL
    if is_threat_label(key):
        label = parse_threat(key)
        if label.startswith("spatial("):
            return SPATIAL
        raise ValueError(f"a union takes l_p norms and the spatial threat; got {key!r}")
    return parse_norm(key)


def _components(per_norm: Mapping[NormLike, Distances | RobustnessCurve]
                ) -> dict[float | str, RobustnessCurve]:
    """Parse the keys, check each entry's norm and put every curve in the first one's order."""
    if not isinstance(per_norm, Mapping) or not per_norm:
        raise ValueError("expected a non-empty mapping from norm to Distances/RobustnessCurve; "
                         f"got {per_norm!r}")
    out: dict[float | str, RobustnessCurve] = {}
    for key, value in per_norm.items():
        p = _threat_key(key)
        if p in out:
            raise ValueError(f"{'the spatial threat' if p == SPATIAL else 'norm ' + norm_name(p)}"
                             " is given twice")
        c = _as_curve(value, repr(key))
        if p == SPATIAL:
            if not (isinstance(c.norm, str) and c.norm.startswith("spatial(")):
                raise ValueError(f"the {key!r} entry holds {c.norm_name} distances; expected "
                                 "spatial distances (robcurves.spatial_distances)")
            if key != SPATIAL and parse_threat(key) != c.norm:
                raise ValueError(f"the {key!r} entry holds {c.norm_name} distances")
        elif c.norm != p:
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


def _name(p: float | str) -> str:
    return SPATIAL if p == SPATIAL else norm_name(p)


def union(per_norm: Mapping[NormLike, Distances | RobustnessCurve], *,
          scale: Mapping[NormLike, float], name: str | None = None) -> RobustnessCurve:
    """The union robustness curve of one model over several norms (and rotations-translations).

    Args:
        per_norm: per-point distances of one model in each norm, e.g.
            ``{"linf": d_inf, "l2": d_2, "l1": d_1}`` (:class:`Distances` or
            :class:`RobustnessCurve`), on the same points (paired by ``indices``). The key
            ``"spatial"`` (or the spatial label itself) takes the rotation-translation
            distances of :func:`spatial_distances`.
        scale: the threat vector: for every key of ``per_norm`` a positive radius ``s_p``;
            the union ball of size ``t`` is the union of the l_p balls of radius ``t * s_p``
            (and of the rotations up to ``t * s * deg`` degrees with shifts up to
            ``t * s * px`` pixels, ``deg`` and ``px`` the spatial distances' unit).

    Returns:
        A :class:`RobustnessCurve` of ``u_i = min_p d_p,i / s_p`` over ``t`` whose ``norm`` is
        the threat label (``"union(linf:0.1,l2:1)"``; with the spatial threat its unit at
        ``t = 1``: ``"union(linf:0.1,deg:30,px:3)"``). Its kind follows the inputs: attack
        distances give an upper bound on each ``u_i`` (``"upper"``), certified distances a lower
        bound (``"lower"``), exact ones ``"exact"``.

    The paper's union of l_inf noise and rotation-translation at fixed sizes is
    ``union({"linf": d_inf, "spatial": d_rt}, scale={"linf": eps, "spatial": 1})`` evaluated at
    ``t = 1``; :func:`spatial_linf` runs the combined (composed) attack at fixed sizes.

    Raises:
        ValueError: an unknown norm, a norm in ``scale`` without distances or distances without
            a scale, a non-positive or non-finite scale, inputs on different points, or attack
            and certified distances mixed.
    """
    if not isinstance(scale, Mapping):
        raise ValueError(f"scale must be a mapping from norm to a positive radius; got {scale!r}")
    s: dict[float | str, float] = {}
    for k, v in scale.items():
        key = _threat_key(k)
        if key in s:
            raise ValueError(f"{_name(key)} appears twice in the scale")
        s[key] = v
    lp_scale = {k: v for k, v in s.items() if k != SPATIAL}
    if SPATIAL in s:
        s[SPATIAL] = _positive_scale(s[SPATIAL])
    if lp_scale or SPATIAL not in s:
        union_label(lp_scale)  # checks the norms and the scales
    s = {k: float(v) for k, v in s.items()}
    comps = _components(per_norm)
    if set(s) != set(comps):
        missing = [_name(p) for p in comps if p not in s]
        extra = [_name(p) for p in s if p not in comps]
        raise ValueError("scale and distances must name the same norms: "
                         + "; ".join(filter(None, [
                             f"no scale for {missing}" if missing else "",
                             f"no distances for {extra}" if extra else ""])))
    if SPATIAL in comps:
        deg, px = spatial_units(comps[SPATIAL].norm)
        label = union_label(lp_scale, (deg * s[SPATIAL], px * s[SPATIAL]))
    else:
        label = union_label(lp_scale)
    kind = _union_kind({c.kind for c in comps.values()})
    first = next(iter(comps.values()))
    ratios = np.stack([comps[p].distances / s[p] for p in comps])
    d = ratios.min(axis=0)
    which = [_name(p) for p in comps]
    names = {c.name for c in comps.values()}
    meta: dict = {"threat": {"union": {_name(p): s[p] for p in comps}},
                  "components": {_name(p): {"name": c.name, "kind": c.kind,
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


def _positive_scale(v: object) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"the scale of spatial must be a number; got {v!r}") from None
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"the scale of spatial must be positive and finite; got {v!r}")
    return f


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


def _affine_scale(scale: object) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """Check an affine threat vector; returns its label, norms and scales (linf, l2, l1 order)."""
    if not isinstance(scale, Mapping):
        raise ValueError(f"scale must be a mapping from norm to a positive radius; got {scale!r}")
    label = affine_label(dict(scale))  # checks the norms (two or more) and the scales
    s = {parse_norm(k): float(v) for k, v in scale.items()}
    norms = tuple(p for p in (math.inf, 2.0, 1.0) if p in s)
    return label, norms, tuple(s[p] for p in norms)


def affine_distances(model: object, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                     *, scale: Mapping[NormLike, float], bounds: Bounds = (0.0, 1.0),
                     lambdas: int = 4, steps: int = 20, search_steps: int = 10,
                     restarts: int = 0, tol: float = 1e-3, seed: int = 0,
                     indices: np.ndarray | None = None, batch_size: int = 64,
                     return_adversarials: bool = False) -> Distances:
    """Per-point minimal size of the affine threat of Tramèr & Boneh, by attack.

    The affine threat of size ``t`` along ``scale = {p_k: s_k}`` holds ``x + sum_k delta_k``
    (inside ``bounds``) with ``||delta_k||_{p_k} <= lambda_k * t * s_k`` for some ``lambda`` on
    the simplex: the convex hull of the union of the balls ``t * s_k * B_{p_k}``. It contains
    the union threat, so a point's affine distance is at most its union distance
    (:func:`union` of the same scales). For an affine-logit (linear) model without a binding
    box the two are equal (the margin is linear in ``lambda``, so the worst ``lambda`` is a
    vertex); :func:`affine_distances_linear` gives the exact value.

    The attack (:func:`robcurves.attacks._affine.affine_search`): for every weight vector of
    the grid ``{i / lambdas}`` on the simplex (its vertices included, where it is a per-norm
    PGD search), a per-point doubling-then-bisection over ``t`` with a PGD inner attack whose
    step projects each component on its own ball and the sum onto the box; per point the best
    over the grid. A found adversarial's distance is its decomposition's affine size
    ``sum_k ||delta_k||_{p_k} / s_k`` (at most the ``t`` it was found at).

    Every adversarial is re-checked in a separate pass (its prediction, that it lies in the
    box, that its components sum to it and their affine size); one that fails counts as
    unbroken (``inf``), with a warning.

    Args:
        model: an ``nn.Module`` (wrapped with ``bounds``) or a :class:`Classifier`.
        x, y: inputs ``(N, ...)`` inside ``bounds`` and labels ``(N,)``.
        scale: two or more norms with positive radii, e.g. ``{"linf": 0.1, "l1": 10}``.
        lambdas: divisions of the simplex grid (``4``: weights in steps of 0.25; 5 weight
            vectors for two norms, 15 for three). Each costs a full search.
        steps: PGD steps per ``t`` tried; search_steps: bisection rounds; restarts: extra
            random-start PGD runs where the warm start failed; tol: relative stop of the
            bisection; seed: seeds the random starts.
        indices: positions of the points in their data set (default ``0..N-1``).
        batch_size: points attacked at once (each holds one row per weight vector).
        return_adversarials: keep the adversarial inputs (NaN where unbroken).

    Returns:
        :class:`Distances` over the unitless size ``t``, ``kind="upper"``, whose ``norm`` is
        the threat label ``"affine(linf:0.1,l1:10)"``; ``settings["lambda"]`` holds per point
        the weights that found its adversarial.

    Raises:
        ValueError: an unknown norm, fewer than two norms, a non-positive scale or a bad
            option, before any model pass.
    """
    import time
    import warnings

    from .attacks._affine import affine_search
    from .attacks._core import check_attack_inputs, check_count, check_positive
    from .model import wrap

    label, norms, scales = _affine_scale(scale)
    check_count("lambdas", lambdas)
    check_count("steps", steps)
    check_count("search_steps", search_steps, 0)
    check_count("restarts", restarts, 0)
    check_positive("tol", tol)
    check_count("batch_size", batch_size)
    clf = model if isinstance(model, Classifier) else wrap(model, bounds=bounds)
    xt = torch.as_tensor(x)
    if not xt.is_floating_point():
        xt = xt.float()
    yt = torch.as_tensor(y)
    check_attack_inputs(clf, xt, yt)
    yt = yt.long()
    n = int(xt.shape[0])
    if n == 0:
        raise ValueError("no points to attack: x is empty")
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.shape != (n,):
        raise ValueError(f"indices must have shape ({n},); got {idx.shape}")
    t0 = time.perf_counter()
    f0, b0 = clf.n_forward, clf.n_backward
    xd, yd = xt.detach().to(clf.device), yt.to(clf.device)
    parts = [affine_search(clf, xd[i:i + batch_size], yd[i:i + batch_size], norms, scales,
                           divisions=lambdas, steps=steps, search_steps=search_steps,
                           restarts=restarts, tol=tol, seed=seed)
             for i in range(0, n, batch_size)]
    size, adv, lam = (torch.cat([q[j] for q in parts]) for j in (0, 1, 3))
    comps = torch.cat([q[2] for q in parts], dim=1)
    d, rejected = _verify_affine(clf, xd, yd, adv, comps, norms, scales, size)
    if rejected:
        warnings.warn(f"{rejected} affine adversarials failed the re-check; counted as "
                      "unbroken", stacklevel=2)
    pred = clf.predict(xt).numpy()
    out = None
    if return_adversarials:
        out = adv.detach().cpu().float().numpy().copy()
        out[np.isinf(d)] = np.nan
    lam_np = lam.cpu().numpy()
    lam_np[np.isinf(d)] = np.nan
    return Distances(
        distances=d, labels=yt.numpy(), predictions=pred, indices=idx, norm=label,
        method="affine-pgd", kind="upper",
        settings={"scale": {norm_name(p): s for p, s in zip(norms, scales, strict=True)},
                  "lambdas": lambdas, "steps": steps, "search_steps": search_steps,
                  "restarts": restarts, "tol": tol, "seed": seed, "batch_size": batch_size,
                  "lambda": [[None if math.isnan(v) else float(v) for v in row]
                             for row in lam_np.tolist()]},
        cost={"forward_per_point": (clf.n_forward - f0) / max(n, 1),
              "backward_per_point": (clf.n_backward - b0) / max(n, 1),
              "seconds": time.perf_counter() - t0, "rejected": rejected},
        adversarials=out)


def _verify_affine(clf: Classifier, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor,
                   comps: torch.Tensor, norms: tuple[float, ...], scales: tuple[float, ...],
                   size: torch.Tensor) -> tuple[np.ndarray, int]:
    """The separate re-check of the affine adversarials: fresh predictions, inside the box,
    components summing to the perturbation (to float tolerance), affine size recomputed in
    float64. Returns the verified distances and the number rejected."""
    from ._norms import lp_norm_np

    d = size.detach().cpu().numpy().astype(np.float64).copy()
    moved = np.isfinite(d) & (d > 0)
    if not moved.any():
        return d, 0
    rows = np.flatnonzero(moved)
    r = torch.as_tensor(rows, device=adv.device)
    xa = adv[r]
    lo, hi = clf.bounds
    still = clf.predict(xa).numpy() != y[r].cpu().numpy()
    inside = ((xa >= lo) & (xa <= hi)).reshape(len(rows), -1).all(1).cpu().numpy()
    c = comps[:, r].detach().cpu().double().numpy()
    gap = np.abs((xa - x[r]).detach().cpu().double().numpy() - c.sum(0))
    tol = 1e-5 * max(1.0, float(np.abs(x.detach().cpu().double().numpy()).max()))
    sums = gap.reshape(len(rows), -1).max(1) <= tol
    size64 = sum(lp_norm_np(c[k], p) / s for k, (p, s) in
                 enumerate(zip(norms, scales, strict=True)))
    ok = still & inside & sums
    d[rows] = np.where(ok, np.maximum(size64, 0.0), np.inf)
    return d, int((~ok).sum())


def affine_distances_linear(model: object, x: np.ndarray | torch.Tensor,
                            y: np.ndarray | torch.Tensor, *, scale: Mapping[NormLike, float],
                            bounds: Bounds = (0.0, 1.0),
                            indices: np.ndarray | None = None) -> Distances:
    """Exact affine distances of an affine classifier ``x -> W x + b`` (``kind="exact"``).

    For the true class ``y`` and another class ``k`` (``g = w_k - w_y``, margin ``m``) the
    affine distance to class ``k``'s side is ``min sum_j ||delta_j||_{p_j} / s_j`` subject to
    ``g . sum_j delta_j >= m`` and ``x + sum_j delta_j`` in the box. Without the box this is
    ``m / max_j s_j ||g||_{q_j}`` (the dual of the affine gauge), the minimum over the vertices:
    the affine distance equals the union distance (:func:`union` of the exact per-norm
    distances). When that vertex minimiser leaves the box, the box binds and the affine
    distance can be *smaller* than the union one (the components need not each stay in the
    box); then, for l_inf and l1 components, it is the linear program solved by HiGHS. An l2
    component with a binding box is a second-order cone program, which is not implemented:
    refused with an error naming the point.

    Args:
        model: an ``nn.Linear``, a scikit-learn linear model or a ``(W, b)`` pair (see
            :func:`robcurves.certificates.linear.as_affine`).
        x, y: inputs ``(N, d)`` (flattened if more dimensions) and labels ``(N,)``.
        scale: two or more norms with positive radii; bounds: the input box
            (``(-inf, inf)`` for none).

    Returns:
        :class:`Distances` with ``norm`` the label ``"affine(...)"``, ``kind="exact"``;
        ``settings["box_bound"]`` counts the (point, class) problems where the box bound.
    """
    import scipy.optimize

    from ._norms import dual_norm
    from .certificates.linear import _closed_form, as_affine

    label, norms, scales = _affine_scale(scale)
    w, b = as_affine(model)
    xv = np.asarray(torch.as_tensor(x).detach().cpu().double().numpy())
    xv = xv.reshape(len(xv), -1)
    yv = np.asarray(torch.as_tensor(y).cpu().numpy()).astype(np.int64)
    if xv.shape[1] != w.shape[1]:
        raise ValueError(f"inputs have {xv.shape[1]} features; the model expects {w.shape[1]}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if np.any(xv < lo) or np.any(xv > hi):
        raise ValueError(f"inputs must lie in bounds {(lo, hi)}; found min {xv.min()}, "
                         f"max {xv.max()}")
    logits = xv @ w.T + b
    pred = logits.argmax(1)
    out = np.zeros(len(xv))
    n_box = 0
    for i in range(len(xv)):
        yi = int(yv[i])
        if pred[i] != yi:
            continue
        best = math.inf
        g_all = w - w[yi]
        m_all = logits[i, yi] - logits[i]
        # unconstrained affine distance per class: m / max_j s_j ||g||_{q_j} (a lower bound)
        reach = np.max([s * np.linalg.norm(g_all, ord=dual_norm(p), axis=1)
                        for p, s in zip(norms, scales, strict=True)], axis=0)
        free = np.where(reach > 0, m_all / np.where(reach > 0, reach, 1.0), math.inf)
        free[yi] = math.inf
        for k in np.argsort(free):
            if free[k] >= best:
                break
            g, m = g_all[k], float(m_all[k])
            j = int(np.argmax([s * np.linalg.norm(g, ord=dual_norm(p))
                               for p, s in zip(norms, scales, strict=True)]))
            _, delta = _closed_form(g, m, norms[j])
            z = xv[i] + delta
            if np.all(z >= lo) and np.all(z <= hi):
                best = min(best, float(free[k]))
                continue
            n_box += 1
            if 2.0 in norms:
                raise ValueError(
                    f"point {i}: the box binds and the scale has an l2 component; the exact "
                    "affine distance is then a second-order cone program, not implemented "
                    "(use l_inf and l1 components, or unbounded inputs)")
            best = min(best, _affine_lp(g, m, xv[i], norms, scales, (lo, hi), scipy.optimize))
        out[i] = best
    idx = np.arange(len(xv)) if indices is None else np.asarray(indices, dtype=np.int64)
    return Distances(distances=out, labels=yv, predictions=pred.astype(np.int64), indices=idx,
                     norm=label, method="exact-linear-affine", kind="exact",
                     settings={"scale": {norm_name(p): s for p, s in
                                         zip(norms, scales, strict=True)},
                               "box_bound": n_box})


def _affine_lp(g: np.ndarray, m: float, x: np.ndarray, norms: tuple[float, ...],
               scales: tuple[float, ...], bounds: tuple[float, float], opt: object) -> float:
    """``min sum_j r_j / s_j`` over components ``delta_j`` (``||delta_j||_{p_j} <= r_j``,
    l_inf and l1 only) with ``g . sum_j delta_j >= m`` and ``x + sum_j delta_j`` in the box."""
    import scipy.sparse as sp

    d = g.shape[0]
    eye = sp.eye(d, format="csr")
    # variables, per component: l_inf -> (delta (d), r); l1 -> (u (d), v (d), r), delta = u - v
    blocks_sum, rows, costs, bnds = [], [], [], []
    n_var = 0
    layout = []
    for p, s in zip(norms, scales, strict=True):
        if p == math.inf:
            layout.append((p, n_var, n_var + d, n_var + d))  # delta, r
            bnds += [(None, None)] * d + [(0, None)]
            costs += [0.0] * d + [1.0 / s]
            n_var += d + 1
        else:
            layout.append((p, n_var, n_var + 2 * d, n_var + 2 * d))  # u, v, r
            bnds += [(0, None)] * (2 * d) + [(0, None)]
            costs += [0.0] * (2 * d) + [1.0 / s]
            n_var += 2 * d + 1
    for p, start, _, r in layout:
        rcol = sp.csr_matrix((np.ones(d), (np.arange(d), np.full(d, r))), shape=(d, n_var))
        if p == math.inf:
            place = sp.hstack([sp.csr_matrix((d, start)), eye,
                               sp.csr_matrix((d, n_var - start - d))])
            rows += [place - rcol, -place - rcol]  # |delta_i| <= r
            blocks_sum.append(place)
        else:
            u = sp.hstack([sp.csr_matrix((d, start)), eye, sp.csr_matrix((d, n_var - start - d))])
            v = sp.hstack([sp.csr_matrix((d, start + d)), eye,
                           sp.csr_matrix((d, n_var - start - 2 * d))])
            total_l1 = sp.csr_matrix((np.ones(2 * d + 1) * np.r_[np.ones(2 * d), -1.0],
                                      (np.zeros(2 * d + 1), np.r_[np.arange(start, start + 2 * d),
                                                                  r])), shape=(1, n_var))
            rows.append(total_l1)  # sum(u + v) <= r
            blocks_sum.append(u - v)
    total = blocks_sum[0]
    for blk in blocks_sum[1:]:
        total = total + blk  # (d, n_var): sum_j delta_j
    a_ub = sp.vstack(rows + [sp.csr_matrix(-(g @ total)), total, -total]).tocsr()
    b_ub = np.concatenate([np.zeros(sum(r.shape[0] for r in rows)), [-m],
                           bounds[1] - x, x - bounds[0]])
    res = opt.linprog(np.asarray(costs), A_ub=a_ub, b_ub=b_ub, bounds=bnds, method="highs")
    if res.status == 2:
        return math.inf
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the affine linear program: {res.message}")
    return float(res.fun)


@dataclass(frozen=True)
class SpatialLinf:
    """Robustness against l_inf noise and rotation-translation at fixed sizes (Tramèr &
    Boneh), per point (``True`` = broken by a verified adversarial).

    Attributes:
        eps: the l_inf radius; max_degrees, max_pixels: the rotation-translation box.
        linf: broken by l_inf noise alone (PGD); spatial: by a rotation-translation alone (the
            grid or the random samples); union: by either (the union threat); combined: by a
            rotation-translation *followed by* l_inf noise, ``T(x) + delta`` clipped into the
            box, ``||delta||_inf <= eps`` (the composed threat).
        transforms: ``(n, 3)`` the ``(theta, dx, dy)`` of each combined adversarial (NaN where
            none).
        labels, predictions, indices: as in :class:`Distances`.
        settings, cost: the options and the model passes and seconds.
    """

    eps: float
    max_degrees: float
    max_pixels: float
    linf: np.ndarray
    spatial: np.ndarray
    union: np.ndarray
    combined: np.ndarray
    transforms: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    indices: np.ndarray
    settings: dict
    cost: dict

    @property
    def robust_accuracy(self) -> dict[str, float]:
        """Clean accuracy and the robust accuracy under each threat (fractions of points)."""
        n = max(len(self.labels), 1)
        return {"clean": float(np.mean(self.predictions == self.labels)) if len(self.labels)
                else 0.0,
                **{k: 1.0 - float(getattr(self, k).sum()) / n
                   for k in ("linf", "spatial", "union", "combined")}}


def spatial_linf(model: object, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                 *, eps: float, bounds: Bounds = (0.0, 1.0), max_degrees: float = 30.0,
                 max_pixels: float = 3.0, mode: str = "grid", rotations: int = 31,
                 translations: int = 5, samples: int = 10, steps: int = 20, seed: int = 0,
                 indices: np.ndarray | None = None) -> SpatialLinf:
    """The paper's l_inf + rotation-translation evaluation at fixed sizes.

    Tramèr & Boneh evaluate models against l_inf noise of radius ``eps`` and rotations up to
    ``max_degrees`` with shifts up to ``max_pixels`` (MNIST: 0.3, 30 degrees, 3 pixels), alone,
    as a union (a point is robust only if neither breaks it) and combined. Here:

    - ``linf``: PGD (margin loss, ``steps`` steps of ``2.5 eps / steps``, from the clean point)
      in ``{x' : ||x' - x||_inf <= eps}`` inside the box;
    - ``spatial``: the transformations of :func:`robcurves.attacks.spatial` (the 31 x 5 x 5
      grid, or ``samples`` random ones), bilinear, zero padding;
    - ``union``: ``linf or spatial``; as a curve over sizes it is
      ``union({"linf": d_inf, "spatial": d_rt}, scale={"linf": eps, "spatial": 1})``;
    - ``combined``: for every transformation ``T`` tried (and the identity), PGD in the l_inf
      ball of radius ``eps`` around the transformed image ``T(x)`` (clipped into the box):
      the composition "rotate-translate, then add l_inf noise". Its first iterate is ``T(x)``
      itself, so every spatial or l_inf break is also found here, and ``combined`` breaks at
      least the points ``union`` breaks. (The paper's released code feeds the noisy image to a
      model that rotates its input, i.e. noise first; on images the two orders differ only in
      the interpolation of the noise.)

    Every adversarial is re-checked in a separate pass (fresh prediction, inside the box, l_inf
    distance to ``x`` or to ``T(x)`` at most ``eps``); one that fails is dropped, with a
    warning. Cost: the combined attack runs PGD once per transformation on each point not yet
    broken (up to 776 x ``steps`` gradient passes per robust point on the grid); use
    ``mode="random"`` for fewer.

    Raises:
        ValueError: inputs that are not images ``(N, C, H, W)``, ``eps`` not positive, or a
            bad spatial option, before any model pass.
    """
    import time
    import warnings

    from .attacks._core import check_attack_inputs, check_count, check_positive
    from .attacks._pgd import pgd
    from .attacks._spatial import check_images, spatial_candidates, spatial_transform
    from .model import wrap

    check_positive("eps", eps)
    label = spatial_label(max_degrees, max_pixels)  # checks both
    check_count("steps", steps)
    xt = torch.as_tensor(x)
    if not xt.is_floating_point():
        xt = xt.float()
    check_images(xt)
    if mode not in ("grid", "random"):
        raise ValueError(f"mode must be one of grid, random; got {mode!r}")
    for nm, v in (("rotations", rotations), ("translations", translations),
                  ("samples", samples)):
        check_count(nm, v)
    clf = model if isinstance(model, Classifier) else wrap(model, bounds=bounds)
    yt = torch.as_tensor(y)
    check_attack_inputs(clf, xt, yt)
    yt = yt.long()
    n = int(xt.shape[0])
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.shape != (n,):
        raise ValueError(f"indices must have shape ({n},); got {idx.shape}")
    t0 = time.perf_counter()
    f0, b0 = clf.n_forward, clf.n_backward
    lo, hi = clf.bounds
    xd, yd = xt.detach().to(clf.device), yt.to(clf.device)
    pred = clf.predict(xd).numpy()
    y_np = yt.numpy()
    wrong = pred != y_np

    def run_pgd(start: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return pgd._run(clf, start, labels, math.inf, eps=float(eps), steps=steps,
                        loss="margin", early_stop=True)

    def fools(cand: torch.Tensor, centre: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """The separate re-check: fresh prediction, in the box, within eps of ``centre``."""
        if cand.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        gap = (cand - centre).abs().reshape(cand.shape[0], -1).amax(1)
        ok = (gap <= eps * (1 + 1e-5) + 1e-7) & ((cand >= lo) & (cand <= hi)).reshape(
            cand.shape[0], -1).all(1)
        return ok.cpu().numpy() & (clf.predict(cand).numpy() != labels.cpu().numpy())

    linf = wrong.copy()
    r = np.flatnonzero(~wrong)
    rt = torch.as_tensor(r, device=xd.device)
    linf[r] = fools(run_pgd(xd[rt], yd[rt]), xd[rt], yd[rt])

    sd = spatial_distances(clf, xd, yd, max_degrees=max_degrees, max_pixels=max_pixels,
                           mode=mode, rotations=rotations, translations=translations,
                           samples=samples, seed=seed)
    spat = sd.distances <= 1.0

    params, _ = spatial_candidates(max_degrees, max_pixels, mode, rotations, translations,
                                   samples, seed)
    if not (params == 0).all(1).any():
        params = torch.cat([params.new_zeros(1, 3), params])
    combined = wrong.copy()
    transforms = np.full((n, 3), np.nan)
    transforms[wrong] = 0.0
    for q in params:
        todo = np.flatnonzero(~combined)
        if todo.size == 0:
            break
        for part in np.array_split(todo, max(1, -(-todo.size // 4096))):
            pt = torch.as_tensor(part, device=xd.device)
            xs = xd[pt]
            if bool((q != 0).any()):
                k = len(part)
                xs = spatial_transform(xs, q[0].expand(k).to(xs.device),
                                       q[1].expand(k).to(xs.device),
                                       q[2].expand(k).to(xs.device)).clamp(lo, hi)
            hit = fools(run_pgd(xs, yd[pt]), xs, yd[pt])
            combined[part[hit]] = True
            transforms[part[hit]] = q.numpy()
    rejected = int(np.sum(~combined & (linf | spat)))
    if rejected:
        warnings.warn(f"{rejected} points broken by l_inf or spatial alone were not broken by "
                      "the combined attack; counted as broken by it", stacklevel=2)
        combined |= linf | spat
    return SpatialLinf(
        eps=float(eps), max_degrees=float(max_degrees), max_pixels=float(max_pixels),
        linf=linf, spatial=spat, union=linf | spat, combined=combined, transforms=transforms,
        labels=y_np, predictions=pred, indices=idx,
        settings={"threat": label, "eps": float(eps), "mode": mode, "rotations": rotations,
                  "translations": translations, "samples": samples, "steps": steps,
                  "seed": seed},
        cost={"forward_per_point": (clf.n_forward - f0) / max(n, 1),
              "backward_per_point": (clf.n_backward - b0) / max(n, 1),
              "seconds": time.perf_counter() - t0, "missed_by_combined": rejected})

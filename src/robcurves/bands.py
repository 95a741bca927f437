"""The band between a certified curve and an attack curve: where the true curve must lie.

Certified (lower-bound) distances give a robust-error curve that lies *above* the true one;
attack (upper-bound) distances give one that lies *below*. On the same points, in the same
norm, the true curve lies between them. :class:`Band` measures how narrow that is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .curve import RobustnessCurve
from .results import Distances

__all__ = ["Band", "band"]

_PIN = 1.01  # a point is pinned when upper <= 1.01 * lower


def _as_curve(c: RobustnessCurve | Distances, what: str) -> RobustnessCurve:
    if isinstance(c, Distances):
        return RobustnessCurve.from_distances(c)
    if isinstance(c, RobustnessCurve):
        return c
    raise TypeError(f"{what} must be a RobustnessCurve or Distances; got {type(c).__name__}")


@dataclass(frozen=True)
class Band:
    """Certified and attack curves on the same points, and the width of the band between them.

    Attributes:
        lower: the certified curve (per-point lower bounds on ``d*``; its robust error lies
            *above* the truth).
        upper: the attack curve (per-point upper bounds; its robust error lies *below*).
        max_gap: largest vertical gap ``sup_eps (R_lower(eps) - R_upper(eps))``, in robust
            error (fraction of points).
        area: area between the curves, ``mean(min(u_i, eps_max) - min(l_i, eps_max))``, in
            units of eps (``eps_max`` = the largest finite distance of either curve).
        eps_max: the eps range the area is measured on.
        pinned: fraction of points with ``upper <= 1.01 * lower`` (distance known within 1%;
            misclassified points, at 0 on both sides, count as pinned).
    """

    lower: RobustnessCurve
    upper: RobustnessCurve
    max_gap: float
    area: float
    eps_max: float
    pinned: float

    @property
    def n(self) -> int:
        return self.lower.n

    @property
    def norm(self) -> float:
        return self.lower.norm

    def gap(self, eps: float | np.ndarray) -> float | np.ndarray:
        """Vertical width ``R_lower(eps) - R_upper(eps)`` at any eps."""
        return np.asarray(self.lower.robust_error(eps)) - np.asarray(self.upper.robust_error(eps))

    def summary(self) -> dict:
        return {"norm": self.lower.norm_name, "n": self.n, "max_gap": self.max_gap,
                "area": self.area, "eps_max": self.eps_max, "pinned": self.pinned,
                "lower_method": self.lower.metadata.get("method", self.lower.name),
                "upper_method": self.upper.metadata.get("method", self.upper.name)}

    def plot(self, ax=None, eps_max: float | None = None, label: str | None = None,
             color: str | None = None, accuracy: bool = False, alpha: float = 0.3):
        """Shade the band (robust error, or accuracy) and draw both curves; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        e_max = eps_max if eps_max is not None else self.eps_max * 1.05 or 1.0
        knots = np.unique(np.concatenate([
            [0.0, e_max],
            *(c.sorted_distances[np.isfinite(c.sorted_distances)
                                 & (c.sorted_distances <= e_max)]
              for c in (self.lower, self.upper))]))
        lo = np.asarray(self.lower.robust_error(knots))
        up = np.asarray(self.upper.robust_error(knots))
        if accuracy:
            lo, up = 1 - lo, 1 - up
        name = label or self.upper.name
        line = ax.step(knots, up, where="post", color=color,
                       label=f"{name} (attack)")[0]
        c = line.get_color()
        ax.step(knots, lo, where="post", color=c, linestyle="--", label=f"{name} (certified)")
        ax.fill_between(knots, up, lo, step="post", color=c, alpha=alpha, linewidth=0)
        ax.set_xlabel(f"eps ({self.lower.norm_name} distance in input space)")
        ax.set_ylabel("robust accuracy" if accuracy else "robust error")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, e_max)
        return ax


def band(lower: RobustnessCurve | Distances, upper: RobustnessCurve | Distances,
         rtol: float = 1e-6) -> Band:
    """The band between a certified curve (``lower``) and an attack curve (``upper``).

    Both must be in the same norm, on the same points in the same order (checked through
    ``indices`` when both have them). A point whose certified distance exceeds its attack
    distance (beyond ``rtol``) is a contradiction, either a bug or two different models, and
    raises ``ValueError``.
    """
    lo, up = _as_curve(lower, "lower"), _as_curve(upper, "upper")
    if lo.norm != up.norm:
        raise ValueError(f"the curves are in different norms: lower {lo.norm_name}, upper "
                         f"{up.norm_name}")
    if lo.n != up.n:
        raise ValueError(f"the curves have different numbers of points: lower {lo.n}, "
                         f"upper {up.n}")
    if lo.indices is not None and up.indices is not None and not np.array_equal(lo.indices,
                                                                                up.indices):
        bad = int((lo.indices != up.indices).sum())
        raise ValueError(f"the curves are on different point sets: {bad} of {lo.n} indices "
                         "differ (evaluate both on the same points, in the same order)")
    if lo.kind == "upper":
        raise ValueError("'lower' is an attack curve (kind 'upper'); pass certified distances")
    if up.kind == "lower":
        raise ValueError("'upper' is a certified curve (kind 'lower'); pass attack distances")
    l_d, u_d = lo.distances, up.distances
    with np.errstate(invalid="ignore"):
        bad = l_d > u_d * (1 + rtol) + 1e-12
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{int(bad.sum())} points have a certified distance above the attack "
                         f"distance (first: point {i}, certified {l_d[i]}, attack {u_d[i]}): "
                         "the two curves cannot be of the same model and points")
    finite = np.concatenate([l_d[np.isfinite(l_d)], u_d[np.isfinite(u_d)]])
    eps_max = float(finite.max()) if finite.size else 0.0
    knots = np.unique(np.concatenate([[0.0], finite]))
    gaps = np.asarray(lo.robust_error(knots)) - np.asarray(up.robust_error(knots))
    area = float(np.mean(np.minimum(u_d, eps_max) - np.minimum(l_d, eps_max)))
    with np.errstate(invalid="ignore"):
        pinned = (u_d <= _PIN * l_d) | (u_d == l_d)
    return Band(lower=lo, upper=up, max_gap=float(max(0.0, gaps.max())), area=area,
                eps_max=eps_max, pinned=float(pinned.mean()))

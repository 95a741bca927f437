"""Population robustness curves: the exact ``R(eps) = P[d* <= eps]`` of a classifier on a
distribution (not on a sample), where it has a closed form.

For a linear classifier ``sign(w . x + b)`` with unbounded inputs the minimal l_p distance of a
correctly classified point is its margin ``y (w . x + b) / ||w||_q`` (``1/p + 1/q = 1``) and 0
for a misclassified one, so ``R(eps) = P[y (w . x + b) <= eps ||w||_q]``. On the Tsipras et al.
distribution (:mod:`robcurves.data.synthetic`) ``y (w . x + b) = w_1 s + G + y b`` with
``s = y x_1 = +1`` (probability p) or ``-1``, and ``G ~ N(eta * sum(w_2..), ||w_2..||_2^2)``:
a mixture of four Gaussian CDFs (steps where ``w_2.. = 0``). :func:`tsipras_linear_curve` gives
it; :func:`tsipras_classifiers` the paper's averaging, robust and Bayes classifiers.

:class:`PopulationCurve` offers ``robust_error``/``robust_accuracy``/``plot`` like a
:class:`~robcurves.RobustnessCurve`, and :func:`plot_curves` draws both kinds together.
:func:`robcurves.compare` stays for *empirical* curves: its crossings and significance come from
a paired bootstrap over the points both curves share, which a population curve has none of. To
set an empirical curve against a population one, :func:`sup_gap` gives the largest vertical gap
and the DKW half-width that bounds it with the chosen confidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from ._norms import NormLike, dual_norm, norm_name, parse_norm
from .curve import RobustnessCurve, _as_eps

__all__ = ["PopulationCurve", "tsipras_linear_curve", "tsipras_classifiers",
           "tsipras_theorem_bound", "plot_curves", "sup_gap"]


@dataclass(frozen=True)
class PopulationCurve:
    """Robust error as a known function of eps (a population quantity, no sampling error).

    Attributes:
        error_fn: vectorised ``eps (float64 array) -> robust error`` (a CDF in eps: non-
            decreasing, right-continuous, values in [0, 1]).
        norm: ``math.inf``, ``2.0`` or ``1.0``.
        name: label in plots.
        breakpoints: eps where the curve jumps (plots draw the steps there exactly).
        metadata: how it was derived (classifier, distribution parameters...).
    """

    error_fn: Callable[[np.ndarray], np.ndarray]
    norm: float
    name: str = "population"
    breakpoints: tuple[float, ...] = ()
    metadata: dict = field(default_factory=dict)
    kind: str = field(default="population", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))

    @property
    def norm_name(self) -> str:
        return norm_name(self.norm)

    def robust_error(self, eps: float | Sequence[float] | np.ndarray) -> np.ndarray | float:
        """``P[d* <= eps]`` (a float for a scalar eps)."""
        e = _as_eps(eps)
        out = np.clip(np.asarray(self.error_fn(np.atleast_1d(e)), dtype=np.float64), 0.0, 1.0)
        return float(out[0]) if e.ndim == 0 else out.reshape(e.shape)

    def robust_accuracy(self, eps: float | Sequence[float] | np.ndarray) -> np.ndarray | float:
        """``1 - robust_error(eps)``."""
        return 1.0 - self.robust_error(eps)

    @property
    def clean_error(self) -> float:
        return float(self.robust_error(0.0))

    def steps(self, eps_max: float, num: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """``(eps, error)`` on a grid of ``num`` points in ``[0, eps_max]`` plus both sides of
        every breakpoint, for plotting."""
        if not (eps_max > 0 and math.isfinite(eps_max)):
            raise ValueError(f"eps_max must be a finite number > 0; got {eps_max!r}")
        grid = np.linspace(0.0, eps_max, int(num))
        jumps = [b for b in self.breakpoints if 0 < b <= eps_max]
        grid = np.union1d(grid, [np.nextafter(b, -np.inf) for b in jumps] + jumps)
        return grid, np.asarray(self.robust_error(grid))

    def plot(self, ax=None, label: str | None = None, eps_max: float | None = None,
             accuracy: bool = False, **kwargs):
        """Line plot of robust error (or accuracy) against eps; returns the axes. Without
        ``eps_max`` the axes' current x range (or eps where the error reaches 99.9%)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        if eps_max is None:
            eps_max = ax.get_xlim()[1] if ax.lines else self._eps_at(0.999)
        eps, err = self.steps(eps_max)
        kwargs.setdefault("linestyle", "--")
        ax.plot(eps, 1.0 - err if accuracy else err, label=label or self.name, **kwargs)
        ax.set_xlabel(f"eps ({self.norm_name} distance in input space)")
        ax.set_ylabel("robust accuracy" if accuracy else "robust error")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0)
        return ax

    def _eps_at(self, q: float) -> float:
        hi = 1.0
        while self.robust_error(hi) < q and hi < 1e6:
            hi *= 2
        return hi


def _linear_error(w1: float, s_sum: float, sigma: float, b: float, wq: float, p: float,
                  eta: float) -> Callable[[np.ndarray], np.ndarray]:
    mean = eta * s_sum

    def fn(eps: np.ndarray) -> np.ndarray:
        t = eps * wq
        out = np.zeros_like(eps, dtype=np.float64)
        for s, ps in ((1.0, p), (-1.0, 1.0 - p)):
            for y in (1.0, -1.0):
                thr = t - w1 * s - y * b          # P[G <= thr]
                if sigma > 0:
                    cdf = ndtr((thr - mean) / sigma)
                else:
                    cdf = (mean <= thr).astype(np.float64)
                out += 0.5 * ps * cdf
        return out

    return fn


def tsipras_linear_curve(w: np.ndarray | Sequence[float], b: float, norm: NormLike, *,
                         p: float, eta: float, name: str = "linear") -> PopulationCurve:
    """Exact population curve of ``sign(w . x + b)`` (class "+1" where ``w . x + b > 0``) on
    the Tsipras distribution with parameters ``p``, ``eta`` and ``d = len(w) - 1``.

    Raises:
        ValueError: ``w`` is not a finite non-zero vector of length >= 2, or bad p / eta.
    """
    from .data.synthetic import TsiprasParams

    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size < 2 or not np.isfinite(w).all() or not math.isfinite(float(b)):
        raise ValueError(f"w must be a finite vector of length d + 1 >= 2 and b finite; got "
                         f"shape {w.shape}, b={b!r}")
    prm = TsiprasParams(d=w.size - 1, p=p, eta=eta)
    q = dual_norm(norm)
    wq = float(np.linalg.norm(w, ord=q))
    if wq == 0:
        raise ValueError("w must not be zero (a constant classifier has no margin)")
    w1, rest = float(w[0]), w[1:]
    s_sum, sigma = float(rest.sum()), float(np.linalg.norm(rest))
    breaks: tuple[float, ...] = ()
    if sigma == 0:   # the margin takes four values: steps at (margin) / ||w||_q
        m = [w1 * s + y * float(b) + prm.eta * s_sum for s in (1, -1) for y in (1, -1)]
        breaks = tuple(sorted({v / wq for v in m if v > 0}))
    meta = {"classifier": name, "p": prm.p, "eta": prm.eta, "d": prm.d, "w1": w1,
            "w_rest_sum": s_sum, "w_rest_l2": sigma, "b": float(b), "w_dual_norm": wq}
    return PopulationCurve(_linear_error(w1, s_sum, sigma, float(b), wq, prm.p, prm.eta),
                           norm=parse_norm(norm), name=name, breakpoints=breaks, metadata=meta)


def tsipras_classifiers(d: int, p: float, eta: float | None = None) -> dict[str, np.ndarray]:
    """The paper's linear classifiers ``w`` (bias 0) for dimension ``d``:

    - ``averaging``: ``(0, 1/d, ..., 1/d)``, uses only the non-robust features;
    - ``robust``: ``e_1``, uses only the robust feature;
    - ``bayes``: the log-likelihood ratio ``(log(p / (1 - p)), 2 eta, ..., 2 eta)``.
    """
    from .data.synthetic import TsiprasParams

    prm = TsiprasParams(d=d, p=p, eta=eta)
    avg = np.full(prm.d + 1, 1.0 / prm.d)
    avg[0] = 0.0
    rob = np.zeros(prm.d + 1)
    rob[0] = 1.0
    bayes = np.full(prm.d + 1, 2.0 * prm.eta)
    bayes[0] = math.log(prm.p / (1.0 - prm.p))
    return {"averaging": avg, "robust": rob, "bayes": bayes}


def tsipras_theorem_bound(clean_error: float, p: float) -> float:
    """Theorem 2.1 of Tsipras et al.: any classifier with standard accuracy >= ``1 - delta``
    on the distribution has robust accuracy <= ``p / (1 - p) * delta`` against an l_inf
    adversary with ``eps >= 2 eta``. Returns that bound for ``delta = clean_error`` (may
    exceed 1, when it says nothing)."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must lie strictly between 0.5 and 1; got {p!r}")
    if not 0 <= clean_error <= 1:
        raise ValueError(f"clean_error must lie in [0, 1]; got {clean_error!r}")
    return p / (1.0 - p) * clean_error


def sup_gap(curve: RobustnessCurve, population: PopulationCurve,
            level: float = 0.95) -> tuple[float, float]:
    """``(sup_eps |R_n(eps) - R(eps)|, DKW half-width at level)``: the largest gap between an
    empirical curve on n points drawn from the distribution and the population curve (checked
    at every jump of the empirical curve, both sides, and at 0), and the half-width
    ``sqrt(ln(2 / (1 - level)) / (2 n))`` it exceeds with probability at most ``1 - level``
    when the distances are exact (for attack distances the empirical curve lies below).
    """
    from .comparison import dkw_halfwidth

    if curve.norm != population.norm:
        raise ValueError(f"norms differ: {curve.norm_name} and {population.norm_name}")
    d = curve.sorted_distances
    d = d[np.isfinite(d)]
    n = curve.n
    pts = np.unique(np.concatenate([[0.0], d]))
    emp = np.searchsorted(curve.sorted_distances, pts, side="right") / n
    emp_left = np.searchsorted(curve.sorted_distances, pts, side="left") / n
    pop = np.asarray(population.robust_error(pts))
    pop_left = np.asarray(population.robust_error(np.maximum(np.nextafter(pts, -np.inf), 0)))
    gap = max(float(np.abs(emp - pop).max()), float(np.abs(emp_left[1:] - pop_left[1:]).max(
        initial=0.0)))
    return gap, dkw_halfwidth(n, level)


def plot_curves(curves: Sequence[RobustnessCurve | PopulationCurve], ax=None,
                eps_max: float | None = None, accuracy: bool = False, title: str | None = None):
    """Empirical and population curves of one norm on one axes (empirical ones as steps,
    population ones dashed); returns the axes."""
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("plot_curves needs at least one curve")
    norms = {c.norm for c in curves}
    if len(norms) > 1:
        raise ValueError(f"curves must share one norm; got {sorted(norm_name(p) for p in norms)}")
    if eps_max is None:
        finite = [float(np.max(c.sorted_distances[np.isfinite(c.sorted_distances)], initial=0))
                  for c in curves if isinstance(c, RobustnessCurve)]
        eps_max = max(finite, default=0.0) * 1.05 or max(
            c._eps_at(0.999) for c in curves if isinstance(c, PopulationCurve))
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    for c in curves:
        c.plot(ax=ax, eps_max=eps_max, accuracy=accuracy)
    ax.set_xlim(0, eps_max)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return ax

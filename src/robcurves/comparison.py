"""Global comparison of robustness curves measured on the same points.

Given curves of several models for one norm, :func:`compare` finds

* every eps where two curves cross (the model with the lower robust error changes), exactly,
  from the step functions;
* the eps intervals on which each model of a pair has the lower robust error, with the size of
  the advantage;
* the statistical certainty of each difference: a DKW band per curve, and a paired bootstrap
  over test points giving a *simultaneous* band for the difference of two curves. A win interval
  is significant when that band excludes 0 somewhere on it; a crossing is significant when the
  win intervals on both of its sides are;
* point-wise tables at any list of eps, with ranks and a flag for rows whose ranking contradicts
  another row ("a single threshold would mislead here");
* global summaries: area under the robust-error curve, median distance, eps at which the robust
  error reaches 50% and 90%.

All robust errors are *errors* (fraction of points with distance <= eps), never accuracies, and
all eps are distances in the curves' input space. The paired-bootstrap resampling itself is in
:mod:`robcurves._bootstrap`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._bootstrap import errors_at, sup_stats
from ._norms import norm_name
from .curve import RobustnessCurve

__all__ = [
    "Comparison",
    "Crossing",
    "WinInterval",
    "PairComparison",
    "CurveSummary",
    "PointwiseTable",
    "compare",
    "dkw_halfwidth",
    "align_curves",
]

# Below this many points the bootstrap says nothing reliable: no difference is marked.
MIN_POINTS_FOR_SIGNIFICANCE = 20


def dkw_halfwidth(n: int, level: float = 0.95) -> float:
    """Half-width of the Dvoretzky-Kiefer-Wolfowitz band for an empirical CDF of ``n`` points.

    With probability at least ``level`` the true robust-error curve lies within
    ``sqrt(ln(2 / alpha) / (2 n))`` of the empirical one at every eps at once
    (``alpha = 1 - level``).
    """
    _check_level(level)
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    return math.sqrt(math.log(2.0 / (1.0 - level)) / (2.0 * n))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1; got {level}")


# ---------------------------------------------------------------------------- result types
@dataclass(frozen=True)
class Crossing:
    """An eps where the better model of a pair changes.

    Attributes:
        eps: the first eps at which ``better_before`` no longer has the strictly lower robust
            error (the curves meet or swap here).
        eps_end: the first eps at which ``better_after`` has the strictly lower robust error;
            equal to ``eps`` when the curves swap in a single step, larger when they are tied
            on ``[eps, eps_end)``.
        better_before: model with the lower robust error just below ``eps``.
        better_after: model with the lower robust error from ``eps_end`` on.
        significant: the nearest significant win interval below the crossing belongs to
            ``better_before`` and the nearest one above it to ``better_after``: at the
            comparison's level the difference really changes sign between them. Several raw
            crossings in one noisy stretch can share that mark (and ``region``).
        region: for a significant crossing, ``(lo, hi)`` such that the true curves cross in
            ``[lo, hi]`` at the comparison's level (where the simultaneous band last excludes
            0 on one side and first excludes it on the other); ``None`` otherwise.
    """

    eps: float
    eps_end: float
    better_before: str
    better_after: str
    significant: bool
    region: tuple[float, float] | None = None

    @property
    def models(self) -> tuple[str, str]:
        """The two models, in the order they were given to :func:`compare`."""
        return (self.better_before, self.better_after)

    @property
    def model_a(self) -> str:
        return self.better_before

    @property
    def model_b(self) -> str:
        return self.better_after


@dataclass(frozen=True)
class WinInterval:
    """A maximal eps interval ``[lo, hi)`` on which ``winner`` has a lower robust error.

    Attributes:
        lo, hi: the interval (``hi`` may be ``inf``); robust error is right-continuous, so the
            interval is closed on the left and open on the right.
        winner, loser: the model with the strictly lower robust error, and the other one.
        max_diff: the largest advantage on the interval, ``R_loser - R_winner`` (a fraction of
            points, in (0, 1]).
        eps_at_max: the first eps in the interval where ``max_diff`` is reached.
        mean_diff: average advantage over ``[lo, min(hi, eps_max)]`` (the comparison's
            ``eps_max``); for an interval starting beyond ``eps_max`` the advantage at ``lo``.
        significant: the simultaneous bootstrap band of the difference excludes 0 somewhere on
            the interval.
        significant_span: ``(first, last)`` eps range of the interval on which the band
            excludes 0 (``last`` is the end of the last such step); ``None`` if not significant.
    """

    lo: float
    hi: float
    winner: str
    loser: str
    max_diff: float
    eps_at_max: float
    mean_diff: float
    significant: bool
    significant_span: tuple[float, float] | None = None

    def contains(self, eps: float) -> bool:
        return self.lo <= eps < self.hi


@dataclass(frozen=True)
class PairComparison:
    """Everything about one pair of models ``(a, b)``.

    Attributes:
        a, b: model names (order as given to :func:`compare`).
        intervals: the win intervals of either model, in eps order (ties are left out).
        crossings: the eps where the better model changes.
        band: half-width of the simultaneous bootstrap band for ``R_a - R_b`` at the
            comparison's level (a fraction of points).
        max_abs_diff: ``max_eps |R_a(eps) - R_b(eps)|``.
        p_value: bootstrap p-value of the hypothesis "the two curves are the same"
            (statistic ``max_eps |R_a - R_b|``).
    """

    a: str
    b: str
    intervals: tuple[WinInterval, ...]
    crossings: tuple[Crossing, ...]
    band: float
    max_abs_diff: float
    p_value: float

    @property
    def significant(self) -> bool:
        """Some difference between the two curves is significant."""
        return any(iv.significant for iv in self.intervals)


@dataclass(frozen=True)
class CurveSummary:
    """Global numbers of one curve (after pairing).

    Attributes:
        name, n, kind: model name, number of points, bound kind of the distances.
        clean_error: robust error at eps = 0.
        auc: area under the robust-error curve on ``[0, eps_max]`` (units of eps).
        auc_normalized: ``auc / eps_max``, in [0, 1] (lower is more robust).
        median_distance: median per-point distance (``inf`` if half the points are unbroken).
        eps_50, eps_90: smallest eps at which the robust error reaches 50% / 90% (``inf`` if
            it never does).
        n_unbroken: points with infinite distance.
        dkw: DKW half-width at the comparison's level.
    """

    name: str
    n: int
    kind: str
    clean_error: float
    auc: float
    auc_normalized: float
    median_distance: float
    eps_50: float
    eps_90: float
    n_unbroken: int
    dkw: float


@dataclass(frozen=True)
class PointwiseTable:
    """Robust errors of every model at a list of eps, the way papers report them.

    Attributes:
        eps: the eps of the rows, ``(m,)``.
        models: model names (columns).
        errors: robust errors ``(m, k)``.
        ranks: ``(m, k)`` rank of each model in each row, 1 = lowest robust error; tied models
            share the smallest rank.
        misleading: ``(m,)`` True where the row orders some pair of models strictly the
            opposite way of another row: reporting only this eps would mislead.
        significant_misleading: ``(m,)`` True where such a reversal is significant in both rows
            (point-wise paired bootstrap interval of the difference excludes 0 in both).
        diff_significant: ``(m, k, k)`` point-wise significance of ``errors[:, i] -
            errors[:, j]`` at the comparison's level.
    """

    eps: np.ndarray
    models: tuple[str, ...]
    errors: np.ndarray
    ranks: np.ndarray
    misleading: np.ndarray
    significant_misleading: np.ndarray
    diff_significant: np.ndarray

    def reversals(self) -> list[tuple[float, float, str, str]]:
        """``(eps1, eps2, model, other)``: ``model`` beats ``other`` at eps1, loses at eps2."""
        out = []
        k = len(self.models)
        for r1, r2 in itertools.permutations(range(len(self.eps)), 2):
            for i, j in itertools.permutations(range(k), 2):
                if (self.errors[r1, i] < self.errors[r1, j]
                        and self.errors[r2, i] > self.errors[r2, j] and r1 < r2):
                    out.append((float(self.eps[r1]), float(self.eps[r2]),
                                self.models[i], self.models[j]))
        return out


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: curves of one norm, paired on the same points.

    Attributes:
        curves: the curves as compared (restricted to the common points, in a common order).
        norm: the common norm.
        level: confidence level of every band and significance mark.
        eps_max: upper end of the eps range used for areas and mean advantages.
        n_boot, seed: bootstrap settings (the same resamples serve every evaluation).
        pairs: one :class:`PairComparison` per unordered pair of models.
        summaries: one :class:`CurveSummary` per curve.
        notes: caveats found while comparing (mixed bound kinds, dropped points...).
    """

    curves: tuple[RobustnessCurve, ...]
    norm: float
    level: float
    eps_max: float
    n_boot: int
    seed: int
    pairs: tuple[PairComparison, ...]
    summaries: tuple[CurveSummary, ...]
    notes: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return (f"Comparison({', '.join(map(repr, self.names))}, norm={self.norm_name!r}, "
                f"n={self.n}, crossings={len(self.crossings)}, level={self.level})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.curves)

    @property
    def n(self) -> int:
        return self.curves[0].n

    @property
    def norm_name(self) -> str:
        return norm_name(self.norm)

    @property
    def crossings(self) -> tuple[Crossing, ...]:
        """All crossings of all pairs, sorted by eps."""
        cr = [c for p in self.pairs for c in p.crossings]
        return tuple(sorted(cr, key=lambda c: (c.eps, c.better_before, c.better_after)))

    @property
    def win_intervals(self) -> tuple[WinInterval, ...]:
        """All win intervals of all pairs."""
        return tuple(iv for p in self.pairs for iv in p.intervals)

    @property
    def dkw(self) -> float:
        """DKW half-width (the same for every curve: they share the points)."""
        return dkw_halfwidth(self.n, self.level)

    def pair(self, a: str, b: str) -> PairComparison:
        """The comparison of models ``a`` and ``b`` (in either order).

        Raises:
            KeyError: no such pair (an unknown name, or ``a == b``); the message lists the
                models.
        """
        for p in self.pairs:
            if {p.a, p.b} == {a, b} and a != b:
                return p
        raise KeyError(f"no pair ({a!r}, {b!r}); models are {list(self.names)}")

    def band(self, name: str, eps: float | Sequence[float] | np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """DKW band ``(lower, upper)`` of the robust error of model ``name`` at ``eps``."""
        c = self.curves[self._index(name)]
        r = np.asarray(c.robust_error(eps), dtype=np.float64)
        h = self.dkw
        return np.clip(r - h, 0.0, 1.0), np.clip(r + h, 0.0, 1.0)

    def table(self, eps: float | Sequence[float] | np.ndarray) -> PointwiseTable:
        """Point-wise robust errors at ``eps`` with ranks, reversal flags and significance.

        Raises:
            ValueError: ``eps`` is empty, not one-dimensional, negative or NaN.
        """
        e = np.atleast_1d(np.asarray(eps, dtype=np.float64))
        if e.ndim != 1 or e.size == 0:
            raise ValueError(f"eps must be a non-empty list of numbers; got {eps!r}")
        if np.isnan(e).any() or (e < 0).any():
            raise ValueError(f"eps must be >= 0 and not NaN; got {e.tolist()}")
        errors = np.stack([np.asarray(c.robust_error(e), dtype=np.float64) for c in self.curves],
                          axis=1)
        ranks = _ranks(errors)
        k = len(self.curves)
        # Point-wise percentile intervals of every difference, from the shared resamples.
        dmat = np.stack([c.distances for c in self.curves])
        lo_q, hi_q = (1 - self.level) / 2, 1 - (1 - self.level) / 2
        boot = errors_at(dmat, e, self.n_boot, self.seed)  # (B, k, m)
        sig = np.zeros((e.size, k, k), dtype=bool)
        for i, j in itertools.combinations(range(k), 2):
            d = boot[:, i, :] - boot[:, j, :]
            lo, hi = np.quantile(d, [lo_q, hi_q], axis=0)
            s = ((lo > 0) | (hi < 0)) & (self.n >= MIN_POINTS_FOR_SIGNIFICANCE)
            sig[:, i, j] = s
            sig[:, j, i] = s
        misleading = np.zeros(e.size, dtype=bool)
        sig_mis = np.zeros(e.size, dtype=bool)
        for r1, r2 in itertools.permutations(range(e.size), 2):
            for i, j in itertools.permutations(range(k), 2):
                if errors[r1, i] < errors[r1, j] and errors[r2, i] > errors[r2, j]:
                    misleading[r1] = True
                    if sig[r1, i, j] and sig[r2, i, j]:
                        sig_mis[r1] = True
        return PointwiseTable(eps=e, models=self.names, errors=errors, ranks=ranks,
                              misleading=misleading, significant_misleading=sig_mis,
                              diff_significant=sig)

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no model {name!r}; models are {list(self.names)}") from None


# ---------------------------------------------------------------------------- pairing
_DATA_KEYS = ("name", "split", "source")


def _check_same_data(curves: Sequence[RobustnessCurve]) -> None:
    """Refuse curves whose ``metadata["data"]`` says they were measured on different data.

    Data sets with a recorded ``fingerprint`` are the same when the fingerprints agree; without
    one, when ``name``, ``split`` and ``source`` agree where both record them. Curves without
    data metadata (from arrays) are not checked. ``intersect=True`` does not lift this.
    """
    known = [(c, c.metadata["data"]) for c in curves
             if isinstance(c.metadata.get("data"), dict) and c.metadata["data"]]
    for c, d in known[1:]:
        c0, d0 = known[0]
        if d0.get("fingerprint") and d.get("fingerprint"):
            differ = ["fingerprint"] if d0["fingerprint"] != d["fingerprint"] else []
        else:
            differ = [k for k in _DATA_KEYS if d0.get(k) is not None and d.get(k) is not None
                      and d0[k] != d[k]]
        if differ:
            def desc(x: dict) -> str:
                return ", ".join(f"{k} {x[k]}" for k in (*_DATA_KEYS, "fingerprint")
                                 if x.get(k) is not None)
            raise ValueError(f"curves {c0.name!r} and {c.name!r} were measured on different "
                             f"data ({', '.join(differ)} differ): {c0.name!r} on {desc(d0)}; "
                             f"{c.name!r} on {desc(d)}. Compare curves on the same data set")


def align_curves(curves: Sequence[RobustnessCurve], intersect: bool = False
                 ) -> tuple[tuple[RobustnessCurve, ...], list[str]]:
    """Put curves of one norm on the same points in the same order.

    Curves are paired by ``indices`` when every curve has them, else by position (then all must
    have the same number of points). With ``intersect=True`` curves on different point sets are
    restricted to their common points; otherwise different point sets are an error.
    Returns the aligned curves and notes about what was done.

    Raises:
        TypeError: an element of ``curves`` is not a :class:`RobustnessCurve`.
        ValueError: fewer than two curves, mixed norms, repeated names, or points that cannot be
            paired (indices on some curves only, different sizes without indices, repeated
            indices, different point sets without ``intersect``, nothing in common).
    """
    curves = tuple(curves)
    if len(curves) < 2:
        raise ValueError(f"compare needs at least two curves; got {len(curves)}")
    for c in curves:
        if not isinstance(c, RobustnessCurve):
            raise TypeError(f"expected RobustnessCurve objects; got {type(c).__name__}")
    norms = sorted({c.norm_name for c in curves})
    if len(norms) > 1:
        by = ", ".join(f"{c.name}: {c.norm_name}" for c in curves)
        raise ValueError(f"curves of different norms cannot be compared ({by}); compare each "
                         "norm separately, or use robcurves.report for several norms")
    names = [c.name for c in curves]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"model names must be unique; repeated: {dup}")
    _check_same_data(curves)
    notes: list[str] = []
    has_idx = [c.indices is not None for c in curves]
    if not all(has_idx):
        if any(has_idx):
            missing = [c.name for c in curves if c.indices is None]
            raise ValueError(f"curves {missing} have no point indices while others do; cannot "
                             "pair points")
        sizes = {c.name: c.n for c in curves}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"curves without point indices must have the same number of "
                             f"points to be paired by position; got {sizes}")
        notes.append("no point indices: points paired by position")
        return curves, notes
    for c in curves:
        u = np.unique(c.indices)
        if u.size != c.n:
            raise ValueError(f"curve {c.name!r} has {c.n - u.size} repeated point indices")
    sets = [np.unique(c.indices) for c in curves]
    common = sets[0]
    for s in sets[1:]:
        common = np.intersect1d(common, s, assume_unique=True)
    same = all(s.size == common.size for s in sets)
    if not same:
        desc = ", ".join(f"{c.name}: {c.n} points" for c in curves)
        if not intersect:
            raise ValueError(f"curves are on different point sets ({desc}; {common.size} in "
                             "common); pass intersect=True to compare on the common points")
        if common.size == 0:
            raise ValueError(f"curves have no point in common ({desc})")
        notes.append(f"compared on the {common.size} points common to all curves ({desc})")
    out = []
    for c in curves:
        order = np.argsort(c.indices, kind="stable")
        pos = order[np.searchsorted(c.indices[order], common)]
        if pos.size == c.n and np.array_equal(pos, np.arange(c.n)):
            out.append(c)
            continue
        out.append(RobustnessCurve(
            distances=c.distances[pos], norm=c.norm, name=c.name, kind=c.kind,
            indices=c.indices[pos],
            labels=None if c.labels is None else c.labels[pos],
            predictions=None if c.predictions is None else c.predictions[pos],
            metadata=c.metadata))
    return tuple(out), notes


# ---------------------------------------------------------------------------- pair analysis
def _pair(a: RobustnessCurve, b: RobustnessCurve, band: float, sup_boot: np.ndarray,
          eps_max: float, testable: bool = True) -> PairComparison:
    knots = np.unique(np.concatenate([[0.0], a.distances, b.distances]))
    knots = knots[np.isfinite(knots)]
    diff = (np.asarray(a.robust_error(knots)) - np.asarray(b.robust_error(knots)))
    # diff[i] holds on [knots[i], knots[i+1]) (the last on [knots[-1], inf)).
    ends = np.append(knots[1:], math.inf)
    sign = np.sign(diff).astype(int)
    max_abs = float(np.abs(diff).max())
    p_value = float((1 + np.sum(sup_boot >= max_abs - 1e-12)) / (1 + sup_boot.size))
    intervals: list[WinInterval] = []
    i = 0
    m = knots.size
    while i < m:
        j = i
        while j + 1 < m and sign[j + 1] == sign[i]:
            j += 1
        if sign[i] != 0:
            adv = diff[i:j + 1] * sign[i]  # advantage of the winner, > 0
            top = int(np.argmax(adv))
            lo, hi = float(knots[i]), float(ends[j])
            upper = min(hi, eps_max)
            if upper > lo:
                widths = np.minimum(ends[i:j + 1], upper) - np.minimum(knots[i:j + 1], upper)
                mean = float(np.sum(adv * widths) / (upper - lo))
            else:
                mean = float(adv[0])
            winner, loser = (a.name, b.name) if sign[i] < 0 else (b.name, a.name)
            over = np.flatnonzero(adv > band + 1e-12) if testable else np.empty(0, int)
            span = None
            if over.size:
                span = (float(knots[i + over[0]]), float(ends[i + over[-1]]))
            intervals.append(WinInterval(
                lo=lo, hi=hi, winner=winner, loser=loser, max_diff=float(adv[top]),
                eps_at_max=float(knots[i + top]), mean_diff=mean,
                significant=span is not None, significant_span=span))
        i = j + 1
    crossings = []
    for t in range(len(intervals) - 1):
        iv1, iv2 = intervals[t], intervals[t + 1]
        if iv1.winner == iv2.winner:
            continue
        left = next((iv for iv in reversed(intervals[:t + 1]) if iv.significant), None)
        right = next((iv for iv in intervals[t + 1:] if iv.significant), None)
        sig = (left is not None and right is not None and left.winner == iv1.winner
               and right.winner == iv2.winner)
        region = (left.significant_span[1], right.significant_span[0]) if sig else None
        crossings.append(Crossing(eps=iv1.hi, eps_end=iv2.lo, better_before=iv1.winner,
                                  better_after=iv2.winner, significant=sig, region=region))
    return PairComparison(a=a.name, b=b.name, intervals=tuple(intervals),
                          crossings=tuple(crossings), band=band, max_abs_diff=max_abs,
                          p_value=p_value)


def _ranks(errors: np.ndarray) -> np.ndarray:
    """Rank per row, 1 = lowest; ties share the smallest rank ("1224" ranking)."""
    return 1 + (errors[:, None, :] < errors[:, :, None]).sum(axis=2)


def _default_eps_max(curves: Sequence[RobustnessCurve]) -> float:
    finite = np.concatenate([c.distances[np.isfinite(c.distances)] for c in curves])
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


# ---------------------------------------------------------------------------- entry point
def compare(curves: Sequence[RobustnessCurve], *, level: float = 0.95, n_boot: int = 1000,
            seed: int = 0, intersect: bool = False, eps_max: float | None = None) -> Comparison:
    """Compare curves of one norm measured on the same points.

    Args:
        curves: two or more :class:`RobustnessCurve` with the same norm and unique names.
        level: confidence level of the DKW bands and of every significance mark.
        n_boot: paired bootstrap resamples over test points (the same resamples for all curves).
        seed: seed of the resampling.
        intersect: compare on the points common to all curves instead of refusing curves on
            different point sets.
        eps_max: upper end of the eps range for areas under the curves and mean advantages;
            default: the largest finite distance of any curve.

    Returns:
        A :class:`Comparison` (crossings, win intervals, summaries, :meth:`Comparison.table`).

    Raises:
        TypeError: an element of ``curves`` is not a :class:`RobustnessCurve`.
        ValueError: every other bad input, before any work starts, with a message naming the
            bad value: fewer than two curves, mixed norms, repeated names, points that cannot
            be paired (see :func:`align_curves`), ``level``, ``n_boot`` or ``eps_max`` out of
            range.
    """
    _check_level(level)
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    n_boot = int(n_boot)
    aligned, notes = align_curves(curves, intersect=intersect)
    kinds = sorted({c.kind for c in aligned})
    if len(kinds) > 1:
        notes.append("curves mix bound kinds (" + ", ".join(f"{c.name}: {c.kind}" for c in aligned)
                     + "): attack curves lie below the truth and certified curves above it, so "
                     "their differences partly reflect the methods, not the models")
    if eps_max is None:
        eps_max = _default_eps_max(aligned)
    elif not (eps_max > 0 and math.isfinite(eps_max)):
        raise ValueError(f"eps_max must be a positive finite number; got {eps_max}")
    n = aligned[0].n
    dmat = np.stack([c.distances for c in aligned])
    knots = np.unique(np.concatenate([[0.0], dmat.ravel()]))
    knots = knots[np.isfinite(knots)]
    sup = sup_stats(dmat, knots, n_boot, seed)
    testable = n >= MIN_POINTS_FOR_SIGNIFICANCE
    if not testable:
        notes.append(f"only {n} points: too few for the bootstrap, no difference is marked "
                     f"significant (needs >= {MIN_POINTS_FOR_SIGNIFICANCE})")
    pairs = []
    for i, j in itertools.combinations(range(len(aligned)), 2):
        boot = sup[:, i, j]
        band = float(np.quantile(boot, level, method="higher"))
        pairs.append(_pair(aligned[i], aligned[j], band, boot, eps_max, testable))
    h = dkw_halfwidth(n, level)
    summaries = tuple(
        CurveSummary(name=c.name, n=c.n, kind=c.kind, clean_error=c.clean_error,
                     auc=c.auc(eps_max), auc_normalized=c.auc(eps_max, normalized=True),
                     median_distance=c.median_distance, eps_50=c.eps_at_error(0.5),
                     eps_90=c.eps_at_error(0.9), n_unbroken=c.n_unbroken, dkw=h)
        for c in aligned)
    return Comparison(curves=aligned, norm=aligned[0].norm, level=level, eps_max=float(eps_max),
                      n_boot=n_boot, seed=seed, pairs=tuple(pairs), summaries=summaries,
                      notes=tuple(notes))

"""The theory of Risse, Göpfert & Göpfert, "How to compare adversarial robustness of classifiers
from a global perspective", as runnable constructions with exact distances.

Each construction builds data and affine classifiers, computes their robustness curves with the
exact linear certifier (:func:`robcurves.certify` with ``method="exact-linear"``: closed form,
or an LP/QP when the input box binds) and returns what the theory predicts next to what
:func:`robcurves.compare` and :func:`robcurves.diagnostics.fit_scale` find:

- :func:`theorem1`: for any chosen ``0 < eps_1 < ... < eps_n``, two classifiers whose
  robustness curves cross at exactly those eps (so a point-wise comparison at any single
  threshold can rank them either way).
- :func:`example1`: a 2-D data set and two classifiers whose curves cross in l2 (and l1) but
  not in l_inf (Fig. 6's phenomenon: a comparison can depend on the norm).
- :func:`theorem2` / :func:`linear_scaling`: a two-class linear model's curves in l_inf, l2
  and l1 are copies of one another rescaled by ``||w||_q_from / ||w||_q_to`` (q dual to p)
  when the input box does not bind, and are not when it does.

The constructions here are this module's own: the paper's full text (Appendix A, Example 1)
was not reachable from this project, so they follow the statements as issue #14 summarises
them; the classifier roles are stated by what their curves do, see :func:`theorem1`. Nothing
here depends on the CLI; every result has ``to_markdown()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .._norms import NormLike, norm_name, parse_norm
from ..certificates import certify
from ..comparison import Crossing, compare
from ..curve import RobustnessCurve
from ..diagnostics import ScaleFit, fit_scale

__all__ = ["PredictedCrossing", "CrossingConstruction", "ScaleRow", "ScalingConstruction",
           "theorem1", "example1", "linear_scaling", "theorem2", "exact_curves"]

_UNBOUNDED = (-math.inf, math.inf)
_DUAL = {math.inf: 1.0, 2.0: 2.0, 1.0: math.inf}


@dataclass(frozen=True)
class PredictedCrossing:
    """Where the theory says the better of two models changes.

    Attributes:
        eps: the crossing (an input-space distance in the construction's norm).
        better_before: the model with the strictly lower robust error just below ``eps``.
        better_after: the model with the strictly lower robust error from ``eps`` on.
    """

    eps: float
    better_before: str
    better_after: str


def _agree(found: Sequence[Crossing], predicted: Sequence[PredictedCrossing],
           rtol: float) -> bool:
    if len(found) != len(predicted):
        return False
    return all(math.isclose(f.eps, p.eps, rel_tol=rtol, abs_tol=0.0)
               and math.isclose(f.eps_end, p.eps, rel_tol=rtol, abs_tol=0.0)
               and (f.better_before, f.better_after) == (p.better_before, p.better_after)
               for f, p in zip(found, predicted, strict=True))


def _fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.6g}"


@dataclass(frozen=True)
class CrossingConstruction:
    """Data, two affine classifiers and their exact curves, with predicted and found crossings.

    Attributes:
        title, claim: what is constructed and what the theory says about it.
        x, y: the data (float64 ``(N, d)``, labels ``(N,)`` in {0, 1}).
        models: name -> ``(w (1, d), b (1,))``: class 1 where ``w . x + b > 0``.
        curves: norm name -> the two models' exact curves (same points, same order).
        predicted: norm name -> the crossings the construction predicts.
        found: norm name -> the crossings :func:`robcurves.compare` finds (exact, from the
            step functions: no eps grid is involved).
        notes: how the roles and numbers come about.
    """

    title: str
    claim: str
    x: np.ndarray
    y: np.ndarray
    models: dict[str, tuple[np.ndarray, np.ndarray]]
    curves: dict[str, tuple[RobustnessCurve, RobustnessCurve]]
    predicted: dict[str, tuple[PredictedCrossing, ...]]
    found: dict[str, tuple[Crossing, ...]]
    notes: tuple[str, ...] = field(default=())

    def agrees(self, norm: NormLike | None = None, rtol: float = 1e-9) -> bool:
        """Whether the found crossings are the predicted ones (same number, eps equal to a
        relative ``rtol``, same models before and after), in ``norm`` or in every norm."""
        names = [norm_name(parse_norm(norm))] if norm is not None else list(self.curves)
        return all(_agree(self.found[k], self.predicted[k], rtol) for k in names)

    def to_markdown(self) -> str:
        """A short section: the claim, then per norm the predicted and found crossings."""
        lines = [f"### {self.title}", "", self.claim, ""]
        lines += ["| norm | predicted crossings (eps: better before -> after) | found by "
                  "compare() | agree |", "| --- | --- | --- | --- |"]
        for k in self.curves:
            pred = "; ".join(f"{_fmt(p.eps)}: {p.better_before} -> {p.better_after}"
                             for p in self.predicted[k]) or "none"
            got = "; ".join(f"{_fmt(c.eps)}: {c.better_before} -> {c.better_after}"
                            + (" (significant)" if c.significant else "")
                            for c in self.found[k]) or "none"
            lines.append(f"| {k} | {pred} | {got} | {'yes' if self.agrees(k) else 'NO'} |")
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def exact_curves(models: dict[str, tuple[np.ndarray, np.ndarray]], x: np.ndarray,
                 y: np.ndarray, norm: NormLike,
                 bounds: tuple[float, float] = _UNBOUNDED) -> tuple[RobustnessCurve, ...]:
    """Exact robustness curves of affine models ``name -> (W, b)`` on ``(x, y)`` in ``norm``
    (the exact linear certifier; ``bounds`` default: unbounded inputs)."""
    out = []
    for name, wb in models.items():
        d = certify(wb, x, y, norm, method="exact-linear", bounds=bounds)
        out.append(RobustnessCurve.from_distances(d, name=name))
    return tuple(out)


def _mirrored(d1: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.column_stack([d1, d2]).astype(np.float64)
    x = np.concatenate([pos, -pos])
    y = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(pos), np.int64)])
    return x, y


def _crossing_construction(title: str, claim: str, x: np.ndarray, y: np.ndarray,
                           models: dict[str, tuple[np.ndarray, np.ndarray]],
                           predicted: dict[str, tuple[PredictedCrossing, ...]],
                           notes: tuple[str, ...]) -> CrossingConstruction:
    curves, found = {}, {}
    for k in predicted:
        pair = exact_curves(models, x, y, k)
        curves[k] = pair
        found[k] = compare(pair, n_boot=200).crossings
    return CrossingConstruction(title=title, claim=claim, x=x, y=y, models=models,
                                curves=curves, predicted=predicted, found=found, notes=notes)


# ---------------------------------------------------------------------------- Theorem 1
def theorem1(thresholds: Sequence[float], *, points_per_step: int = 10,
             norms: Sequence[NormLike] = ("linf", "l2", "l1")) -> CrossingConstruction:
    """Two classifiers whose robustness curves cross exactly at the chosen ``thresholds``.

    Construction (2-D, exact in every l_p norm): ``c1`` predicts class 1 where ``x_1 > 0`` and
    ``c2`` where ``x_2 > 0``. Both weight vectors are unit vectors of every dual norm, so a
    point ``(a, b)`` of class 1 is at distance ``a`` from ``c1``'s boundary and ``b`` from
    ``c2``'s, in l_inf, l2 and l1 alike (class-0 points are the mirror images ``(-a, -b)``).
    The distances are chosen with ``m = points_per_step`` points per unit step:

    - ``c2`` has ``m`` points at ``eps_1 / 2``, so ``c1`` has the lower robust error on
      ``[eps_1 / 2, eps_1)``;
    - at each odd-numbered threshold ``eps_1, eps_3, ...`` ``c1`` gets ``2 m`` points, at each
      even-numbered one ``c2`` does: the difference of the robust errors flips sign from
      ``-m / N`` to ``+m / N`` (or back) exactly there;
    - the remaining points of each classifier sit at ``2 eps_n`` so both have ``N`` of them.

    Roles: **c1 is the more robust classifier (strictly lower robust error) just below
    eps_1, eps_3, ...; c2 just below eps_2, eps_4, ...**; each crossing at ``eps_i`` is
    predicted with ``better_before`` = c1 for odd ``i`` and c2 for even ``i``.

    What was verified and what was not: the roles above are verified here, by the exact curves
    (the tests compare the crossings :func:`robcurves.compare` finds with the predicted ones,
    roles included). Issue #14 reports that the published proof of Theorem 1 (Appendix A)
    names c1 and c2 the other way round; that report is **not** verified: the paper's full
    text was not reachable from this project (a search of public pages found only the
    abstracts of its arXiv and ICANN 2021 versions and the authors' code repository, which
    holds no proof), so this construction is this module's own and is not checked against
    Appendix A's.

    Args:
        thresholds: the eps where the curves must cross: finite, > 0, strictly increasing.
        points_per_step: ``m`` above (>= 1). Each class holds ``N = max(2 m ceil(n / 2),
            m + 2 m floor(n / 2)) + m`` points; with the default ``m = 10``
            :func:`robcurves.compare` also marks the crossings significant (checked for four
            thresholds in the tests).
        norms: the norms in which to compute curves and crossings (all give the same ones).
    """
    eps = [float(e) for e in thresholds]
    if not eps:
        raise ValueError("thresholds must hold at least one eps; got none")
    if not all(math.isfinite(e) and e > 0 for e in eps):
        raise ValueError(f"thresholds must be finite and > 0; got {eps}")
    if any(b <= a for a, b in zip(eps, eps[1:], strict=False)):
        raise ValueError(f"thresholds must be strictly increasing; got {eps}")
    if int(points_per_step) != points_per_step or points_per_step < 1:
        raise ValueError(f"points_per_step must be an integer >= 1; got {points_per_step!r}")
    names = list(dict.fromkeys(norm_name(parse_norm(p)) for p in norms))
    if not names:
        raise ValueError("norms must name at least one norm; got none")
    m = int(points_per_step)
    d1: list[float] = []
    d2: list[float] = [eps[0] / 2.0] * m
    predicted = []
    for i, e in enumerate(eps, start=1):
        (d1 if i % 2 else d2).extend([e] * (2 * m))
        before, after = ("c1", "c2") if i % 2 else ("c2", "c1")
        predicted.append(PredictedCrossing(eps=e, better_before=before, better_after=after))
    n = max(len(d1), len(d2)) + m
    far = 2.0 * eps[-1]
    d1 += [far] * (n - len(d1))
    d2 += [far] * (n - len(d2))
    x, y = _mirrored(np.sort(d1), np.sort(d2))
    models = {"c1": (np.array([[1.0, 0.0]]), np.array([0.0])),
              "c2": (np.array([[0.0, 1.0]]), np.array([0.0]))}
    pred = tuple(predicted)
    notes = (f"{2 * n} points in 2-D ({n} per class); c1: class 1 iff x_1 > 0, c2: class 1 "
             "iff x_2 > 0 (unit normals, so distances agree in every norm).",
             "c1 has the lower robust error just below each odd-numbered threshold, c2 just "
             "below each even-numbered one.",
             "Crossings are found exactly from the step functions: no eps grid is involved.")
    claim = ("Theorem 1: for any finite set of thresholds there are classifiers whose "
             "robustness curves cross at exactly those thresholds, so the ranking at a single "
             f"threshold says nothing about the others. Thresholds: "
             f"{', '.join(_fmt(e) for e in eps)}.")
    return _crossing_construction("Theorem 1: curves crossing at chosen eps", claim, x, y,
                                  models, {k: pred for k in names}, notes)


# ---------------------------------------------------------------------------- Example 1
#: c2's two l2 distances in :func:`example1` (c1's are both 1): one below 1, one in (1, sqrt 2].
EXAMPLE1_L2 = (0.5, 1.2)


def example1(*, copies: int = 10) -> CrossingConstruction:
    """Two linear classifiers on 2-D data whose curves cross in l2 (and l1) but not in l_inf.

    ``c1`` predicts class 1 where ``x_1 > 0`` (normal ``(1, 0)``: the same distance ``x_1`` in
    every norm); ``c2`` where ``x_1 + x_2 > 0`` (normal ``(1, 1) / sqrt 2``: l2 distance
    ``s = (x_1 + x_2) / sqrt 2``, l_inf distance ``s / sqrt 2``, l1 distance ``s sqrt 2``).
    Class 1 holds ``copies`` copies of each of two points with ``x_1 = 1`` and ``c2``-l2
    distances 0.5 and 1.2 (class 0: their mirror images). So

    - l2: c1 {1, 1}, c2 {0.5, 1.2}: c1 is better on [0.5, 1), c2 from 1 on: one crossing at 1;
    - l1: c2 {0.71, 1.70}: again one crossing at 1;
    - l_inf: c2 {0.35, 0.85}: c2 is never better (c1 better on [0.35, 1), tied from 1 on), so
      the curves do not cross. A ranking that holds over all eps in one norm can fail in
      another.

    Args:
        copies: copies of each point (>= 1); 10 gives 40 points, enough for the bootstrap.
    """
    if int(copies) != copies or copies < 1:
        raise ValueError(f"copies must be an integer >= 1; got {copies!r}")
    r2 = math.sqrt(2.0)
    low, high = EXAMPLE1_L2
    pts = np.array([[1.0, low * r2 - 1.0], [1.0, high * r2 - 1.0]])
    pos = np.repeat(pts, int(copies), axis=0)
    x, y = _mirrored(pos[:, 0], pos[:, 1])
    models = {"c1": (np.array([[1.0, 0.0]]), np.array([0.0])),
              "c2": (np.array([[1.0, 1.0]]) / r2, np.array([0.0]))}
    cross = (PredictedCrossing(eps=1.0, better_before="c1", better_after="c2"),)
    predicted = {"l2": cross, "l1": cross, "linf": ()}
    notes = (f"{len(x)} points in 2-D: {copies} copies each of (1, {pts[0, 1]:.4f}) and "
             f"(1, {pts[1, 1]:.4f}) in class 1 and their mirror images in class 0.",
             "c1: x_1 > 0; c2: x_1 + x_2 > 0. l_inf distances of c2 are its l2 distances "
             "divided by sqrt 2 (||w||_1 / ||w||_2 = sqrt 2), c1's are unchanged.")
    claim = ("Example 1 (Fig. 6): whether two robustness curves cross depends on the norm: "
             "these curves cross in l2 (and l1) but not in l_inf.")
    return _crossing_construction("Example 1: crossing in l2, not in l_inf", claim, x, y,
                                  models, predicted, notes)


# ---------------------------------------------------------------------------- Theorem 2
@dataclass(frozen=True)
class ScaleRow:
    """The scale between a linear model's curves in two norms.

    Attributes:
        norm_from, norm_to: the norms (``R_to(s eps) ~ R_from(eps)``).
        predicted: ``||w||_q_from / ||w||_q_to`` (q dual to p), Theorem 2's factor.
        fit: :func:`robcurves.diagnostics.fit_scale`'s result (factor, misfit...).
    """

    norm_from: str
    norm_to: str
    predicted: float
    fit: ScaleFit

    @property
    def rel_error(self) -> float:
        """``|fitted / predicted - 1|``."""
        return abs(self.fit.factor / self.predicted - 1.0)


@dataclass(frozen=True)
class ScalingConstruction:
    """A two-class linear model's exact curves in several norms and the scales between them.

    Attributes:
        w, b: the model (class 1 where ``w . x + b > 0``).
        x, y: the data.
        bounds: input bounds used (``(-inf, inf)``: unbounded).
        curves: norm name -> exact curve.
        n_box_binding: norm name -> (point, class) problems where the unconstrained
            minimiser left the box, so an LP/QP was solved (its value may still equal the
            unconstrained one, e.g. in l1 when several coordinates can take the move).
        rows: one :class:`ScaleRow` per pair of norms.
    """

    title: str
    w: np.ndarray
    b: float
    x: np.ndarray
    y: np.ndarray
    bounds: tuple[float, float]
    curves: dict[str, RobustnessCurve]
    n_box_binding: dict[str, int]
    rows: tuple[ScaleRow, ...]

    def holds(self, rtol: float = 1e-6, max_misfit: float = 1e-9) -> bool:
        """Whether every pair of curves is a scaled copy with Theorem 2's factor: fitted factor
        within ``rtol`` of the predicted one and a misfit (sup gap after rescaling) of at
        most ``max_misfit``."""
        return all(r.rel_error <= rtol and r.fit.misfit <= max_misfit for r in self.rows)

    def to_markdown(self) -> str:
        box = ("unbounded inputs" if not all(math.isfinite(v) for v in self.bounds)
               else f"inputs in [{_fmt(self.bounds[0])}, {_fmt(self.bounds[1])}]")
        lines = [f"### {self.title}", "",
                 "Theorem 2: for a two-class linear classifier whose input box does not bind, "
                 "the robustness curves in different l_p norms are scaled copies of one "
                 "another: R_to(s eps) = R_from(eps) with s = ||w||_q_from / ||w||_q_to "
                 f"(q dual to p). Here: {box}; points whose unconstrained minimiser leaves "
                 "the box: "
                 + ", ".join(f"{k} {v}" for k, v in self.n_box_binding.items()) + ".", "",
                 "| from | to | predicted factor | fitted factor | rel. error | misfit |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            lines.append(f"| {r.norm_from} | {r.norm_to} | {r.predicted:.6g} | "
                         f"{r.fit.factor:.6g} | {r.rel_error:.2e} | {r.fit.misfit:.3f} |")
        lines += ["", "The theorem " + ("holds here." if self.holds() else
                                        "does not hold here: the box binds, so the curves "
                                        "are not scaled copies.")]
        return "\n".join(lines) + "\n"


def linear_scaling(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, *,
                   bounds: tuple[float, float] = _UNBOUNDED,
                   norms: Sequence[NormLike] = ("linf", "l2", "l1"),
                   title: str = "Theorem 2: curves of a linear model across norms"
                   ) -> ScalingConstruction:
    """Exact curves of the two-class linear model ``w . x + b > 0`` in ``norms`` and, for each
    pair of norms, the fitted scale against Theorem 2's ``||w||_q_from / ||w||_q_to``."""
    w = np.asarray(w, dtype=np.float64).ravel()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != w.size:
        raise ValueError(f"x must be (N, {w.size}) for a weight vector of {w.size} entries; "
                         f"got {x.shape}")
    if not np.any(w):
        raise ValueError("w must not be all zero")
    ps = [parse_norm(p) for p in norms]
    if len(ps) < 2 or len(set(ps)) != len(ps):
        raise ValueError(f"norms must name at least two different norms; got {list(norms)}")
    model = (w[None, :], np.array([float(b)]))
    curves, n_box = {}, {}
    for p in ps:
        d = certify(model, x, y, p, method="exact-linear", bounds=bounds)
        curves[norm_name(p)] = RobustnessCurve.from_distances(d, name="linear")
        n_box[norm_name(p)] = int(d.settings.get("n_box_binding", 0))
    rows = []
    for i, p_from in enumerate(ps):
        for p_to in ps[i + 1:]:
            pred = float(np.linalg.norm(w, ord=_DUAL[p_from]) / np.linalg.norm(w, ord=_DUAL[p_to]))
            fit = fit_scale(curves[norm_name(p_from)], curves[norm_name(p_to)])
            rows.append(ScaleRow(norm_from=norm_name(p_from), norm_to=norm_name(p_to),
                                 predicted=pred, fit=fit))
    return ScalingConstruction(title=title, w=w, b=float(b), x=x,
                               y=np.asarray(y, dtype=np.int64), bounds=tuple(bounds),
                               curves=curves, n_box_binding=n_box, rows=tuple(rows))


def theorem2(*, n: int = 200, dim: int = 10, box_binds: bool = False,
             seed: int = 0) -> ScalingConstruction:
    """Theorem 2 on a random two-class linear problem, with or without a binding box.

    - ``box_binds=False``: Gaussian inputs in ``dim`` dimensions, unbounded; noisy labels from
      a random linear rule, the model is that rule (some points are misclassified: distance 0
      in every norm). The curves are exact scaled copies.
    - ``box_binds=True``: ``w = (1, ..., 1)``, ``b = -(dim - 0.5)``, inputs in ``[0, 1]^dim``.
      A quarter of the points are class 1 near the far corner and a quarter class 0 near the
      diagonal of the cube: the box does not bind for them in l_inf and l2. The other half
      are class 0 with all coordinates but one at the upper face 1: to cross they must grow
      ``w . x``, and only their one free coordinate can move, so their distance is the same
      ``m = -(w . x + b)`` in every norm, while the free points' distances keep Theorem 2's
      ratios (``||w||_1 / ||w||_2 = sqrt(dim)`` from l_inf to l2). The curves are then not
      scaled copies of one another, whatever the factor.
    """
    if int(n) != n or n < 2 or int(dim) != dim or dim < 2:
        raise ValueError(f"theorem2 needs n >= 2 and dim >= 2 (integers); got n={n!r}, "
                         f"dim={dim!r}")
    rng = np.random.default_rng(seed)
    n, dim = int(n), int(dim)
    if not box_binds:
        w = rng.normal(size=dim)
        x = rng.normal(size=(n, dim))
        b = 0.1
        y = ((x @ w + b + 0.5 * rng.normal(size=n)) > 0).astype(np.int64)
        return linear_scaling(w, b, x, y, title="Theorem 2 (box does not bind: unbounded "
                                                "inputs)")
    w = np.ones(dim)
    b = -(dim - 0.5)
    n1, n0 = n // 4, n // 4
    n_sat = n - n1 - n0
    # class 1 near the far corner: w.x + b in [0.1, 0.5], a small move down stays inside
    far = rng.uniform(1.0 - 0.4 / dim, 1.0, size=(n1, dim))
    # class 0 on the diagonal (coordinates within 0.1 / dim of each other): the l_inf and l2
    # minimisers move every coordinate by the same amount and stay inside the cube
    mid = (rng.uniform(0.3, 0.7, size=(n0, 1))
           + rng.uniform(-0.1 / dim, 0.1 / dim, size=(n0, dim)))
    sat = np.ones((n_sat, dim))
    sat[np.arange(n_sat), rng.integers(0, dim, size=n_sat)] = rng.uniform(0.0, 0.4, size=n_sat)
    x = np.concatenate([far, mid, sat])
    y = np.concatenate([np.ones(n1, np.int64), np.zeros(n0 + n_sat, np.int64)])
    return linear_scaling(w, b, x, y, bounds=(0.0, 1.0),
                          title="Theorem 2 (box binds: inputs in [0, 1], saturated "
                                "coordinates)")

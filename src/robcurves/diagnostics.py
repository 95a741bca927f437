"""Threat-model diagnostics on robustness curves.

* :func:`detect_kink`: overfitting to a training threshold. A model trained against
  perturbations of size ``train_eps`` often has its robust error held down just below
  ``train_eps`` and rising sharply after it: a change of slope (a kink) of the curve there.
* :func:`fit_scale` and :func:`rank_agreement`: transfer across norms. For a linear model
  ``d_p(x) = |w.x + b| / ||w||_q`` (q dual to p, input box not binding), so the curves of two
  norms are the same up to the factor ``||w||_q1 / ||w||_q2`` on the eps axis; for other models
  the fitted factor and the misfit say how far that picture holds. Rankings of models on one norm
  may or may not hold on another.
* :func:`gradient_masking`: a gradient attack against decision-based attacks on the same
  points; distances the label-only attacks find much smaller betray masked gradients.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._norms import norm_name, parse_norm
from .curve import RobustnessCurve
from .results import Distances

__all__ = ["Kink", "detect_kink", "ScaleFit", "fit_scale", "RankAgreement", "rank_agreement",
           "train_eps_of", "GradientMasking", "gradient_masking"]


def train_eps_of(curve: RobustnessCurve) -> float | None:
    """The training eps in ``curve.metadata["model"]["train_eps"]``, or ``None``.

    Only returned when the training norm (``train_norm``, if recorded) is the curve's norm.
    """
    model = curve.metadata.get("model") or {}
    t = model.get("train_eps")
    if t is None:
        return None
    tn = model.get("train_norm")
    if tn is not None and norm_name(parse_norm(tn)) != curve.norm_name:
        return None
    t = float(t)
    return t if t > 0 and math.isfinite(t) else None


# ---------------------------------------------------------------------------- kink
@dataclass(frozen=True)
class Kink:
    """Result of :func:`detect_kink` for one curve.

    Attributes:
        model: the curve's name.
        norm: the curve's norm, the float p (``math.inf``, ``2.0``, ``1.0``); ``norm_name``
            is its name.
        train_eps: the training eps searched around.
        location: eps where the slope of the robust-error curve increases most, within the
            search window around ``train_eps``.
        score: ``log2`` of the ratio of slopes after/before ``location`` (each measured on a
            window of ``half_width * train_eps``; 0.5 is added to the counts), minus the
            average log2 slope ratio within each side (the smooth trend): about 0 for a
            smooth curve, ``log2(jump)`` for a jump of the slope.
        slope_before, slope_after: robust error per unit eps just below / above ``location``.
        p_value: one-sided binomial p-value that as many points fall just after ``location``
            as observed if the slope followed the local trend, Bonferroni-corrected over the
            candidate locations.
        detected: ``score >= log2(min_ratio)`` and ``p_value < alpha``.
    """

    model: str
    norm: float
    train_eps: float
    location: float
    score: float
    slope_before: float
    slope_after: float
    p_value: float
    detected: bool

    @property
    def norm_name(self) -> str:
        """``"linf"``, ``"l2"`` or ``"l1"``."""
        return norm_name(self.norm)


def detect_kink(curve: RobustnessCurve, train_eps: float | None = None, *,
                window: float = 0.5, half_width: float = 0.15, min_ratio: float = 4.0,
                alpha: float = 0.01, n_grid: int = 101) -> Kink:
    """Look for a sharp increase of slope of the curve near the training eps.

    Candidate locations c run over ``[(1 - window) t, (1 + window) t]`` (t = ``train_eps``).
    At each, the points with distance in four windows of width ``h = half_width * t``,
    ``(c - 2h, c - h]``, ``(c - h, c]``, ``(c, c + h]``, ``(c + h, c + 2h]``, are counted: the
    ratio of the two middle counts estimates how much the slope of the curve grows across c,
    and the ratios within each side estimate the smooth trend. The score is the growth across
    c beyond the trend (in log2); the location with the largest score is reported.

    Args:
        curve: the model's curve.
        train_eps: the eps it was trained for; default from the curve's metadata
            (``metadata["model"]["train_eps"]``, same norm).
        window, half_width: relative size of the search window and of the counting windows.
        min_ratio: slope ratio needed to call it a kink.
        alpha: significance level of the binomial test.
        n_grid: number of candidate locations.
    """
    if train_eps is None:
        train_eps = train_eps_of(curve)
        if train_eps is None:
            raise ValueError(f"curve {curve.name!r} has no training eps for norm "
                             f"{curve.norm_name} in metadata['model']['train_eps']; pass "
                             "train_eps=")
    t = float(train_eps)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"train_eps must be a positive finite number; got {train_eps}")
    if not 0 < window < 1:
        raise ValueError(f"window must lie in (0, 1); got {window}")
    if not 0 < half_width <= window:
        raise ValueError(f"half_width must lie in (0, window={window}]; got {half_width}")
    if not min_ratio > 1:
        raise ValueError(f"min_ratio must be > 1; got {min_ratio}")
    s = curve.sorted_distances
    n = curve.n
    h = half_width * t
    c = np.linspace((1 - window) * t, (1 + window) * t, n_grid)

    def count(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Points with distance in (lo, hi], plus 0.5 (keeps empty windows finite)."""
        return (np.searchsorted(s, hi, side="right") - np.searchsorted(s, lo, side="right")
                + 0.5)

    m2, m1 = count(c - 2 * h, c - h), count(c - h, c)
    p1, p2 = count(c, c + h), count(c + h, c + 2 * h)
    # Log-slope change across c, minus the local trend on either side: 0 wherever the curve's
    # slope grows or decays geometrically (any smooth shape at this scale), large at a jump.
    trend = 0.5 * (np.log2(m1 / m2) + np.log2(p2 / p1))
    stat = np.log2(p1 / m1) - trend
    best = np.flatnonzero(stat == stat.max())
    k = int(best[len(best) // 2])  # middle of a plateau of equal scores
    nb, na = int(m1[k] - 0.5), int(p1[k] - 0.5)
    # Binomial test of the count after c against the share the local trend predicts.
    share = 2.0 ** trend[k] / (1.0 + 2.0 ** trend[k])
    p = float(stats.binom.sf(na - 1, na + nb, share)) if na + nb > 0 else 1.0
    p = min(1.0, p * n_grid)
    score = float(stat[k])
    return Kink(model=curve.name, norm=curve.norm, train_eps=t, location=float(c[k]),
                score=score, slope_before=nb / (n * h), slope_after=na / (n * h), p_value=p,
                detected=bool(score >= math.log2(min_ratio) and p < alpha))


# ---------------------------------------------------------------------------- scale across norms
@dataclass(frozen=True)
class ScaleFit:
    """The factor s with ``R_to(s * eps) ~ R_from(eps)``: distances in ``norm_to`` are about
    ``s`` times those in ``norm_from``.

    Attributes:
        model: model name.
        norm_from, norm_to: the two norms (``"linf"``, ``"l2"``, ``"l1"``).
        factor: fitted s (for a linear model with a non-binding input box,
            ``||w||_q_from / ||w||_q_to`` with q the dual norms).
        log_spread: median absolute deviation of ``log(Q_to(p) / Q_from(p))`` over the matched
            quantiles p: 0 when the two curves have exactly the same shape.
        misfit: ``sup_eps |R_from(eps) - R_to(s * eps)|``, the largest robust-error gap left
            after rescaling (distances equal to a relative 1e-9 count as equal).
        n_quantiles: matched quantiles used (both finite and > 0).
    """

    model: str
    norm_from: str
    norm_to: str
    factor: float
    log_spread: float
    misfit: float
    n_quantiles: int


def _ecdf_gap(x: np.ndarray, y: np.ndarray, rel: float = 1e-9) -> float:
    """sup over eps of the gap between the empirical CDFs of x and y (+inf values allowed).

    Distances that agree to a relative ``rel`` count as equal (a slack of ``1 + rel`` on the
    eps axis), so floating-point rounding of a rescaling does not show up as a gap.
    """
    xs, ys = np.sort(x), np.sort(y)
    knots = np.concatenate([xs, ys])
    knots = knots[np.isfinite(knots)]
    if knots.size == 0:
        return 0.0

    def F(s: np.ndarray, e: np.ndarray) -> np.ndarray:
        return np.searchsorted(s, e, side="right") / s.size

    up = knots * (1 + rel)
    gap = np.maximum(F(xs, knots) - F(ys, up), F(ys, knots) - F(xs, up))
    return float(max(0.0, gap.max()))


def fit_scale(curve_from: RobustnessCurve, curve_to: RobustnessCurve) -> ScaleFit:
    """Fit the eps-axis scale factor between the curves of one model in two norms.

    Quantiles of the two curves are matched at every probability where both are finite and
    positive; the factor is the exponential of the median log-ratio (robust to a few points
    where the input box binds).
    """
    if curve_from.norm == curve_to.norm:
        raise ValueError(f"fit_scale needs two different norms; both curves are "
                         f"{curve_from.norm_name}")
    m = min(curve_from.n, curve_to.n)
    p = (np.arange(m) + 0.5) / m
    qf = np.quantile(curve_from.distances, p, method="inverted_cdf")
    qt = np.quantile(curve_to.distances, p, method="inverted_cdf")
    ok = np.isfinite(qf) & np.isfinite(qt) & (qf > 0) & (qt > 0)
    if not ok.any():
        raise ValueError(f"curves of {curve_from.name!r} ({curve_from.norm_name}) and "
                         f"{curve_to.name!r} ({curve_to.norm_name}) have no quantile where "
                         "both distances are finite and positive")
    lr = np.log(qt[ok]) - np.log(qf[ok])
    med = float(np.median(lr))
    factor = math.exp(med)
    misfit = _ecdf_gap(curve_from.distances, curve_to.distances / factor)
    return ScaleFit(model=curve_from.name, norm_from=curve_from.norm_name,
                    norm_to=curve_to.norm_name, factor=factor,
                    log_spread=float(np.median(np.abs(lr - med))), misfit=misfit,
                    n_quantiles=int(ok.sum()))


# ---------------------------------------------------------------------------- rankings across norms
RANK_KEYS = {
    "auc": "normalized area under the robust-error curve (lower is better)",
    "median_distance": "median distance (higher is better)",
    "eps_50": "eps at 50% robust error (higher is better)",
}


@dataclass(frozen=True)
class RankAgreement:
    """Whether the ranking of models on one norm holds on another.

    Attributes:
        norm_a, norm_b: the two norms.
        by: the global summary ranked on (``"auc"``, ``"median_distance"``, ``"eps_50"``).
        ranking_a, ranking_b: model names, most robust first.
        kendall_tau: rank correlation of the two orders (1 = same, -1 = reversed).
        flipped: pairs ``(x, y)`` with x more robust than y on ``norm_a`` and less robust on
            ``norm_b``.
    """

    norm_a: str
    norm_b: str
    by: str
    ranking_a: tuple[str, ...]
    ranking_b: tuple[str, ...]
    kendall_tau: float
    flipped: tuple[tuple[str, str], ...]

    @property
    def holds(self) -> bool:
        """No pair of models changes order between the two norms."""
        return not self.flipped


def _badness(c: RobustnessCurve, by: str, eps_max: float) -> float:
    if by == "auc":
        return c.auc(eps_max, normalized=True)
    if by == "median_distance":
        return -c.median_distance
    if by == "eps_50":
        return -c.eps_at_error(0.5)
    raise ValueError(f"by must be one of {sorted(RANK_KEYS)}; got {by!r}")


def rank_agreement(curves: Sequence[RobustnessCurve], by: str = "auc") -> list[RankAgreement]:
    """Compare the rankings of the same models across norms.

    Args:
        curves: curves of several models in two or more norms; each model (by name) that has a
            curve in every norm is ranked. Within a norm, AUCs use a common ``eps_max`` (the
            largest finite distance of that norm's curves).
        by: the summary to rank on.

    Returns:
        One :class:`RankAgreement` per pair of norms.
    """
    if by not in RANK_KEYS:
        raise ValueError(f"by must be one of {sorted(RANK_KEYS)}; got {by!r}")
    per_norm: dict[str, dict[str, RobustnessCurve]] = {}
    for c in curves:
        slot = per_norm.setdefault(c.norm_name, {})
        if c.name in slot:
            raise ValueError(f"two {c.norm_name} curves are named {c.name!r}")
        slot[c.name] = c
    if len(per_norm) < 2:
        raise ValueError(f"rank_agreement needs curves in at least two norms; got "
                         f"{sorted(per_norm)}")
    common = sorted(set.intersection(*(set(v) for v in per_norm.values())))
    if len(common) < 2:
        raise ValueError("rank_agreement needs at least two models with curves in every norm; "
                         f"models per norm: { {k: sorted(v) for k, v in per_norm.items()} }")
    order = [n for n in ("linf", "l2", "l1") if n in per_norm]
    scores: dict[str, np.ndarray] = {}
    for nm in order:
        cs = [per_norm[nm][m] for m in common]
        fin = np.concatenate([c.distances[np.isfinite(c.distances)] for c in cs])
        eps_max = float(fin.max()) if fin.size and fin.max() > 0 else 1.0
        scores[nm] = np.array([_badness(c, by, eps_max) for c in cs])
    out = []
    for na, nb in itertools.combinations(order, 2):
        sa, sb = scores[na], scores[nb]
        ra = tuple(common[i] for i in np.argsort(sa, kind="stable"))
        rb = tuple(common[i] for i in np.argsort(sb, kind="stable"))
        if np.ptp(sa) == 0 or np.ptp(sb) == 0:
            tau = float("nan")
        else:
            tau = float(stats.kendalltau(sa, sb).statistic)
        flips = tuple((common[i], common[j])
                      for i, j in itertools.permutations(range(len(common)), 2)
                      if sa[i] < sa[j] and sb[i] > sb[j])
        out.append(RankAgreement(norm_a=na, norm_b=nb, by=by, ranking_a=ra, ranking_b=rb,
                                 kendall_tau=tau, flipped=flips))
    return out


# ---------------------------------------------------------------------------- gradient masking
#: decision-based (label-only) attacks the masking check can run, with the norms they support
_DECISION_ATTACKS = ("hsja", "boundary")
#: the ``format`` field of a saved :class:`GradientMasking`
MASKING_FORMAT = "robcurves-masking"


@dataclass(frozen=True)
class GradientMasking:
    """The result of :func:`gradient_masking`: gradient attack against decision-based attacks.

    Attributes:
        norm: the norm (float p).
        n: points checked.
        gradient_attack: the gradient attack's name (``"auto"``).
        decision_attacks: the decision-based attacks run (per point, the best of them counts).
        n_smaller, fraction_smaller: points (and their fraction of ``n``) where the
            decision-based distance is below ``ratio`` times the gradient distance (an unbroken
            point the decision attacks break counts).
        median_ratio: median of decision / gradient distance over the points both broke with
            a positive distance (``nan`` if none).
        p_value: bootstrap p-value that the two curves are the same (:func:`robcurves.compare`).
        significant: the decision-based curve has a significantly *higher* robust error on some
            eps interval (the gradient attack's distances are significantly too large there).
        flagged: ``fraction_smaller > fraction`` or ``significant``: suspect gradient masking.
        reasons: the conditions that raised the flag, in words.
        gradient, decision: the per-point :class:`~robcurves.Distances` (decision: the per-point
            minimum over ``decision_attacks``).
        ratio, fraction, level: the thresholds the flag was decided with (see
            :func:`gradient_masking`).

    :meth:`to_dict` and :meth:`from_dict` turn it into JSON-ready data and back (the per-point
    distances as two curve objects of the curve file format, +inf as ``null``).
    """

    norm: float
    n: int
    gradient_attack: str
    decision_attacks: tuple[str, ...]
    n_smaller: int
    fraction_smaller: float
    median_ratio: float
    p_value: float
    significant: bool
    flagged: bool
    reasons: tuple[str, ...]
    gradient: Distances
    decision: Distances
    ratio: float = 0.9
    fraction: float = 0.05
    level: float = 0.95

    @property
    def norm_name(self) -> str:
        return norm_name(self.norm)

    def to_dict(self) -> dict:
        """JSON-ready data (``nan``/``inf`` numbers as ``null``); :meth:`from_dict` reads it."""
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        def dist(d: Distances) -> dict:
            return RobustnessCurve.from_distances(d, name=d.method).to_dict()

        return {"format": MASKING_FORMAT, "version": 1, "norm": self.norm_name, "n": self.n,
                "gradient_attack": self.gradient_attack,
                "decision_attacks": list(self.decision_attacks), "n_smaller": self.n_smaller,
                "fraction_smaller": self.fraction_smaller,
                "median_ratio": num(self.median_ratio), "p_value": num(self.p_value),
                "significant": self.significant, "flagged": self.flagged,
                "reasons": list(self.reasons), "ratio": self.ratio, "fraction": self.fraction,
                "level": self.level, "gradient": dist(self.gradient),
                "decision": dist(self.decision)}

    @classmethod
    def from_dict(cls, obj: dict, origin: str = "<dict>") -> GradientMasking:
        """Read what :meth:`to_dict` wrote; a clear error on anything else."""
        if not isinstance(obj, dict) or obj.get("format") != MASKING_FORMAT:
            raise ValueError(f"{origin} is not a gradient-masking result (expected format "
                             f"{MASKING_FORMAT!r})")
        if obj.get("version") != 1:
            raise ValueError(f"{origin} has masking format version {obj.get('version')!r}; "
                             "this robcurves reads version 1")

        def dist(o: dict) -> Distances:
            c = RobustnessCurve.from_dict(o, origin)
            meta = c.metadata
            return Distances(distances=c.distances, labels=c.labels, predictions=c.predictions,
                             indices=c.indices, norm=c.norm, method=meta.get("method", c.name),
                             kind=c.kind, settings=meta.get("settings") or {},
                             cost=meta.get("cost") or {})

        def num(v: float | None) -> float:
            return math.nan if v is None else float(v)

        return cls(norm=parse_norm(obj["norm"]), n=int(obj["n"]),
                   gradient_attack=obj["gradient_attack"],
                   decision_attacks=tuple(obj["decision_attacks"]),
                   n_smaller=int(obj["n_smaller"]),
                   fraction_smaller=float(obj["fraction_smaller"]),
                   median_ratio=num(obj["median_ratio"]), p_value=num(obj["p_value"]),
                   significant=bool(obj["significant"]), flagged=bool(obj["flagged"]),
                   reasons=tuple(obj["reasons"]), gradient=dist(obj["gradient"]),
                   decision=dist(obj["decision"]), ratio=float(obj["ratio"]),
                   fraction=float(obj["fraction"]), level=float(obj["level"]))


def check_masking_budget(d: int, norm: object, options: dict | None = None) -> None:
    """Refuse, before any work, a ``budget`` in ``options`` (per attack name, as
    :func:`gradient_masking` takes them) that a decision-based attack run in ``norm`` cannot
    start with on inputs of ``d`` values (HopSkipJump's start alone costs about
    ``77 + log2(d)`` queries per point; the boundary attack gives it a third of its budget)."""
    from .attacks import ATTACKS
    from .attacks._hsja import min_budget

    p = parse_norm(norm)
    for name in _DECISION_ATTACKS:
        if p not in ATTACKS[name][1]:
            continue
        opts = dict((options or {}).get(name, {}))
        if "budget" not in opts:
            continue
        need = min_budget(name, int(d), opts)
        if int(opts["budget"]) < need:
            raise ValueError(f"a budget of {opts['budget']} queries per point is too small for "
                             f"{name} in {norm_name(p)} on inputs of {d} values: its start "
                             f"alone needs {need}; give at least {need}")


def gradient_masking(model: object, x: np.ndarray, y: np.ndarray, norm: object = "inf", *,
                     ratio: float = 0.9, fraction: float = 0.05, level: float = 0.95,
                     n_boot: int = 500, seed: int = 0,
                     options: dict[str, dict] | None = None) -> GradientMasking:
    """Does a gradient attack overestimate the distances? A sign of gradient masking.

    Runs the default gradient attack (:func:`robcurves.distances`, ``attack="auto"``) and the
    decision-based attacks that support ``norm`` (``hsja`` for l_inf and l2, ``boundary`` for
    l2), which use only labels and so cannot be fooled by useless gradients, and compares them
    point by point. The model is flagged when a decision-based attack finds a distance more than
    ``1 - ratio`` (10%) smaller on more than ``fraction`` (5%) of the points, or when the
    decision-based curve lies significantly above the gradient one on some eps interval
    (:func:`robcurves.compare` at ``level``).

    Args:
        model: an ``nn.Module`` (inputs in ``[0, 1]``) or a wrapped classifier.
        x, y: inputs and labels (a few dozen points are enough; decision-based attacks cost
            thousands of queries per point).
        options: extra options per attack name, e.g. ``{"hsja": {"budget": 2000}}``.

    Raises:
        ValueError: a norm no decision-based attack supports (l1), ``ratio`` outside (0, 1],
            ``fraction`` outside [0, 1), options for an attack that is not run, a ``budget``
            too small for an attack's start on inputs of this size
            (:func:`check_masking_budget`).
    """
    from .attacks import ATTACKS
    from .comparison import compare
    from .evaluate import distances

    p = parse_norm(norm)
    names = tuple(a for a in _DECISION_ATTACKS if p in ATTACKS[a][1])
    if not names:
        raise ValueError(f"no decision-based attack supports {norm_name(p)} (hsja: linf, l2; "
                         "boundary: l2); check gradient masking in linf or l2")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1]; got {ratio!r}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1); got {fraction!r}")
    options = dict(options or {})
    unknown = sorted(set(options) - {"auto", *names})
    if unknown:
        raise ValueError(f"options for attacks that are not run: {unknown}; the check runs "
                         f"{['auto', *names]}")
    check_masking_budget(int(np.prod(np.shape(x)[1:])), p, options)
    grad = distances(model, x, y, p, attack="auto", seed=seed, **options.get("auto", {}))
    runs = [distances(model, x, y, p, attack=a, seed=seed, **options.get(a, {})) for a in names]
    best = np.minimum.reduce([r.distances for r in runs])
    dec = Distances(distances=best, labels=grad.labels, predictions=grad.predictions,
                    indices=grad.indices, norm=p, method="+".join(names), kind="upper",
                    settings={a: r.settings for a, r in zip(names, runs, strict=True)},
                    cost={"seconds": sum(r.cost.get("seconds", 0.0) for r in runs)})
    g = grad.distances
    with np.errstate(invalid="ignore"):
        smaller = best < ratio * g  # inf * ratio = inf: an unbroken point broken counts
        both = np.isfinite(best) & np.isfinite(g) & (g > 0)
    n_smaller = int(smaller.sum())
    frac = n_smaller / grad.n if grad.n else 0.0
    median = float(np.median(best[both] / g[both])) if both.any() else math.nan
    a = RobustnessCurve.from_distances(grad, name="gradient (auto)")
    b = RobustnessCurve.from_distances(dec, name="decision-based")
    cmp = compare([a, b], level=level, n_boot=n_boot, seed=seed)
    pair = cmp.pairs[0]
    significant = any(iv.significant and iv.winner == a.name for iv in pair.intervals)
    reasons = []
    if frac > fraction:
        reasons.append(f"decision-based attacks found distances more than {1 - ratio:.0%} "
                       f"smaller on {frac:.1%} of the points (threshold {fraction:.0%})")
    if significant:
        reasons.append(f"the decision-based curve has a significantly higher robust error on "
                       f"some eps interval (level {level})")
    return GradientMasking(norm=p, n=grad.n, gradient_attack="auto", decision_attacks=names,
                           n_smaller=n_smaller, fraction_smaller=frac, median_ratio=median,
                           p_value=pair.p_value, significant=significant,
                           flagged=bool(reasons), reasons=tuple(reasons), gradient=grad,
                           decision=dec, ratio=ratio, fraction=fraction, level=level)

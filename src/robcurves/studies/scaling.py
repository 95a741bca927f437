"""Scaling laws of robustness (Bartoldson, Diffenderfer, Parasyris & Kailkhura, ICML 2024),
for the robust loss at one eps and for the whole robustness curve.

The law, in model size ``N`` (parameters) and data size ``D`` (training examples)::

    L(N, D) = E + A / N**alpha + B / D**beta

is fitted the way the paper (after Hoffmann et al.) fits it: in the log-sum-exp form
``log L_hat = LSE(e, a - alpha log N, b - beta log D)`` with ``E = exp(e)``, ``A = exp(a)``,
``B = exp(b)``, minimising the Huber loss (``delta = 1e-3``) of the residuals
``log L_hat - log L`` with L-BFGS-B from a grid of starting points and keeping the best.
Several rows of one configuration (one ``(N, D)``, e.g. checkpoints of one run) contribute
their best (lowest) loss. With a ``quality`` column ``q`` in (0, 1] (here: one minus the
label-noise rate, a stand-in for the paper's generated-data quality) the data term becomes
``B / (D q**gamma)**beta``: a sample of quality ``q`` is worth ``q**gamma`` clean samples.

For a compute budget ``C = s N D`` the fitted law is smallest at (closed form, checked
numerically in the tests)::

    G  = (alpha A / (beta B)) ** (1 / (alpha + beta))
    N* = G (C / s) ** (beta / (alpha + beta)),   D* = (C / s) ** (alpha / (alpha + beta)) / G

:func:`fit` takes any table of ``(N, D, loss)``; :func:`sweep` trains a grid of models and
writes one JSON row per run; :func:`analyze` turns rows into fits, intervals, a held-out check,
the compute envelope and the compute-optimal allocation; :func:`write_report` draws the plots
and writes ``scaling.html`` and ``scaling.md``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from .._norms import NormLike

__all__ = [
    "ScalingFit", "fit", "predict", "compute_optimal", "compute_envelope", "as_table",
    "bootstrap", "held_out", "loss_to_accuracy", "count_macs", "training_flops",
    "robust_loss", "sweep", "analyze", "write_report", "QUICK", "FULL", "PAPER_CONSTANTS",
]

#: The constants the paper reports for its CIFAR-10 law (used by the tests as ground truth).
PAPER_CONSTANTS = {"A": 6.687, "alpha": 0.2443, "B": 7.552, "beta": 0.2281, "E": 0.5604}

HUBER_DELTA = 1e-3
_BOUNDS = {"e": (-30.0, 10.0), "a": (-30.0, 60.0), "alpha": (0.0, 4.0), "b": (-30.0, 60.0),
           "beta": (0.0, 4.0), "gamma": (0.0, 10.0)}


# ---------------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class _Table:
    N: np.ndarray
    D: np.ndarray
    y: np.ndarray
    q: np.ndarray | None
    rows: np.ndarray  # position of each kept row in the table the user gave (0-based)


def _rows_of(table: object) -> list[dict]:
    """List of dicts from a list of dicts, a dict of arrays or a CSV path."""
    if isinstance(table, (str, Path)):
        path = Path(table)
        if not path.is_file():
            raise FileNotFoundError(f"table {str(path)!r} does not exist")
        with path.open(newline="") as fh:
            return [dict(r) for r in csv.DictReader(fh)]
    if isinstance(table, Mapping):
        lengths = {k: len(np.atleast_1d(np.asarray(v))) for k, v in table.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the columns of the table have different lengths: {lengths}")
        n = next(iter(lengths.values()), 0)
        cols = {k: np.atleast_1d(np.asarray(v)) for k, v in table.items()}
        return [{k: cols[k][i] for k in cols} for i in range(n)]
    if isinstance(table, Sequence) and all(isinstance(r, Mapping) for r in table):
        return [dict(r) for r in table]
    raise TypeError(f"table must be a list of dicts, a dict of arrays or a CSV path; got "
                    f"{type(table).__name__}")


def _num(v: object) -> float:
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return math.nan
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def as_table(table: object, *, n: str = "N", d: str = "D", y: str = "loss",
             quality: str | None = None, best_per_config: bool = True) -> _Table:
    """Check and normalise a table of runs (see :func:`fit`); errors name the bad rows
    (0-based positions in the table given) before any fitting starts."""
    rows = _rows_of(table)
    if not rows:
        raise ValueError("the table is empty; a scaling fit needs runs with N, D and a loss")
    keys = [n, d, y] + ([quality] if quality else [])
    missing = [k for k in keys if k not in rows[0]]
    if missing:
        raise ValueError(f"the table has no column {', '.join(map(repr, missing))}; found "
                         f"{sorted(rows[0])}")
    vals = np.array([[_num(r.get(k)) for k in keys] for r in rows], dtype=np.float64)
    bad_nan = np.where(~np.isfinite(vals).all(1))[0]
    if bad_nan.size:
        raise ValueError(f"rows {bad_nan.tolist()} have a missing, NaN or infinite value in "
                         f"{', '.join(keys)}; drop or fix them")
    bad_pos = np.where((vals[:, :3] <= 0).any(1))[0]
    if bad_pos.size:
        first = vals[bad_pos[0], :3]
        raise ValueError(f"rows {bad_pos.tolist()} have a non-positive {n}, {d} or {y} (row "
                         f"{int(bad_pos[0])}: {n}={first[0]:g}, {d}={first[1]:g}, "
                         f"{y}={first[2]:g}); the law needs N > 0, D > 0 and loss > 0")
    if quality:
        bad_q = np.where((vals[:, 3] <= 0) | (vals[:, 3] > 1))[0]
        if bad_q.size:
            raise ValueError(f"rows {bad_q.tolist()} have {quality} outside (0, 1]")
    idx = np.arange(len(rows))
    if best_per_config:
        best: dict[tuple, int] = {}
        for i in idx:
            key = tuple(vals[i, [0, 1] + ([3] if quality else [])])
            if key not in best or vals[i, 2] < vals[best[key], 2]:
                best[key] = int(i)
        idx = np.array(sorted(best.values()), dtype=np.int64)
    v = vals[idx]
    return _Table(N=v[:, 0], D=v[:, 1], y=v[:, 2], q=v[:, 3] if quality else None, rows=idx)


# ---------------------------------------------------------------------------------- the law
@dataclass(frozen=True)
class ScalingFit:
    """A fitted law ``L = E + A / N**alpha + B / (D q**gamma)**beta``.

    ``objective`` is the Huber loss at the optimum (mean over configurations, divided by
    ``delta``); ``n_runs`` the configurations used; ``starts`` how many starting points were
    tried; ``intervals`` (after :func:`bootstrap`) maps a parameter to its percentile interval.
    """

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    gamma: float | None = None
    objective: float = math.nan
    n_runs: int = 0
    starts: int = 0
    target: str = "loss"
    intervals: dict = field(default_factory=dict)
    bootstrap_replicates: int = 0

    @property
    def n_exponent(self) -> float:
        """Exponent ``beta / (alpha + beta)`` of the compute-optimal N* in C."""
        return self.beta / (self.alpha + self.beta)

    @property
    def d_exponent(self) -> float:
        """Exponent ``alpha / (alpha + beta)`` of the compute-optimal D* in C."""
        return self.alpha / (self.alpha + self.beta)

    def predict(self, N: object, D: object, quality: object = 1.0) -> np.ndarray:
        """The fitted loss at ``(N, D)`` (and data quality ``quality``)."""
        return predict(self, N, D, quality)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(n_exponent=self.n_exponent, d_exponent=self.d_exponent)
        return out


def predict(law: ScalingFit, N: object, D: object, quality: object = 1.0) -> np.ndarray:
    """``E + A / N**alpha + B / (D q**gamma)**beta`` (broadcast over arrays)."""
    N = np.asarray(N, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    d_eff = D * q ** (law.gamma or 0.0)
    return law.E + law.A / N ** law.alpha + law.B / d_eff ** law.beta


def _objective(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray, logq: np.ndarray | None,
               logy: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    e, a, alpha, b, beta = theta[:5]
    gamma = theta[5] if logq is not None else 0.0
    logd_eff = logD + (gamma * logq if logq is not None else 0.0)
    u = np.stack([np.full_like(logN, e), a - alpha * logN, b - beta * logd_eff])
    m = u.max(0)
    ex = np.exp(u - m)
    s = ex.sum(0)
    lse = m + np.log(s)
    w = ex / s
    r = lse - logy
    hub = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    dr = np.clip(r, -delta, delta)
    k = r.size * delta
    g = [np.sum(dr * w[0]), np.sum(dr * w[1]), -np.sum(dr * w[1] * logN), np.sum(dr * w[2]),
         -np.sum(dr * w[2] * logd_eff)]
    if logq is not None:
        g.append(-np.sum(dr * w[2] * beta * logq))
    return float(hub.sum() / k), np.array(g) / k


def _default_starts(with_quality: bool, y: np.ndarray) -> list[np.ndarray]:
    e0 = sorted({-1.0, 0.0, 1.0, round(float(np.log(y.min())), 3)})
    grid = itertools.product(e0, (0.0, 5.0, 10.0, 20.0), (0.1, 0.5, 1.0),
                             (0.0, 5.0, 10.0, 20.0), (0.1, 0.5, 1.0))
    starts = [np.array(s) for s in grid]
    if with_quality:
        starts = [np.append(s, 1.0) for s in starts]
    return starts


def _minimise(t: _Table, starts: Sequence[np.ndarray], delta: float
              ) -> list[tuple[float, np.ndarray]]:
    logN, logD, logy = np.log(t.N), np.log(t.D), np.log(t.y)
    logq = np.log(t.q) if t.q is not None else None
    names = ["e", "a", "alpha", "b", "beta"] + (["gamma"] if logq is not None else [])
    bounds = [_BOUNDS[k] for k in names]
    found = []
    for s in starts:
        res = minimize(_objective, np.asarray(s, dtype=np.float64), jac=True,
                       args=(logN, logD, logq, logy, delta), method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
        if np.all(np.isfinite(res.x)) and np.isfinite(res.fun):
            found.append((float(res.fun), res.x))
    found.sort(key=lambda fx: fx[0])
    return found


def _law(theta: np.ndarray, obj: float, n_runs: int, starts: int, target: str,
         with_quality: bool) -> ScalingFit:
    return ScalingFit(E=float(np.exp(theta[0])), A=float(np.exp(theta[1])),
                      alpha=float(theta[2]), B=float(np.exp(theta[3])), beta=float(theta[4]),
                      gamma=float(theta[5]) if with_quality else None, objective=obj,
                      n_runs=n_runs, starts=starts, target=target)


def fit(table: object, *, n: str = "N", d: str = "D", y: str = "loss",
        quality: str | None = None, delta: float = HUBER_DELTA,
        starts: Sequence[Sequence[float]] | None = None, optimise: int = 24) -> ScalingFit:
    """Fit ``L(N, D) = E + A / N**alpha + B / D**beta`` to a table of runs.

    Args:
        table: a list of dicts, a dict of arrays or a CSV path, with columns ``n``, ``d`` and
            ``y`` (names configurable); rows of one configuration contribute their lowest loss.
        quality: optional column of data quality in (0, 1] (adds the ``gamma`` term).
        delta: the Huber threshold on log residuals (the paper's 1e-3).
        starts: starting points ``(e, a, alpha, b, beta[, gamma])`` (default: a grid of
            4 x 4 x 3 x 4 x 3 = 576 points, ``e`` including the log of the smallest loss).
        optimise: L-BFGS-B runs from the ``optimise`` starts with the lowest objective (all
            starts when ``None``); the best optimum is kept. Screening the grid this way gives
            the same optimum as running from every start on the paper's constants (see the
            tests) at a twentieth of the cost.

    Raises:
        ValueError: fewer configurations than parameters (5, or 6 with ``quality``),
            non-positive ``N``, ``D`` or loss, NaN rows (naming the rows), a bad ``delta``.
    """
    if not (delta > 0 and math.isfinite(delta)):
        raise ValueError(f"delta must be a positive number; got {delta}")
    t = as_table(table, n=n, d=d, y=y, quality=quality)
    k = 6 if quality else 5
    if t.N.size < k:
        raise ValueError(f"{t.N.size} distinct runs (rows {t.rows.tolist()}) cannot determine "
                         f"the law's {k} parameters; give at least {k} (and, to separate E "
                         "from the power laws, N and D spanning several decades)")
    st = [np.asarray(s, dtype=np.float64) for s in starts] if starts is not None else \
        _default_starts(quality is not None, t.y)
    if any(s.shape != (k,) for s in st):
        raise ValueError(f"each start must have {k} numbers (e, a, alpha, b, beta"
                         f"{', gamma' if quality else ''})")
    if optimise is not None and len(st) > int(optimise):
        logs = (np.log(t.N), np.log(t.D), None if t.q is None else np.log(t.q), np.log(t.y))
        vals = [_objective(s0, *logs, delta)[0] for s0 in st]
        st = [st[i] for i in np.argsort(vals, kind="stable")[:max(1, int(optimise))]]
    found = _minimise(t, st, delta)
    if not found:
        raise ValueError("the fit did not converge from any starting point")
    obj, theta = found[0]
    law = _law(theta, obj, int(t.N.size), len(st), y, quality is not None)
    object.__setattr__(law, "_optima", [th for _, th in found[:3]])
    object.__setattr__(law, "_table", t)
    return law


def bootstrap(law: ScalingFit, replicates: int = 100, seed: int = 0, level: float = 0.9,
              delta: float = HUBER_DELTA) -> ScalingFit:
    """Percentile intervals for the parameters of ``law`` (a result of :func:`fit`) from
    ``replicates`` resamples of its runs with replacement; each refit starts from the three
    best optima of the full fit. Returns a copy with ``intervals`` and
    ``bootstrap_replicates`` (resamples with fewer distinct runs than parameters are
    skipped)."""
    t: _Table = getattr(law, "_table", None)
    if t is None:
        raise ValueError("bootstrap needs a ScalingFit returned by fit()")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    rng = np.random.default_rng(seed)
    k = 6 if t.q is not None else 5
    starts = law._optima
    draws = []
    for _ in range(int(replicates)):
        i = rng.integers(0, t.N.size, t.N.size)
        if np.unique(i).size < k:
            continue
        sub = _Table(N=t.N[i], D=t.D[i], y=t.y[i], q=None if t.q is None else t.q[i], rows=i)
        found = _minimise(sub, starts, delta)
        if found:
            b = _law(found[0][1], found[0][0], sub.N.size, len(starts), law.target, k == 6)
            draws.append(b.to_dict())
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    names = ["E", "A", "alpha", "B", "beta", "n_exponent", "d_exponent"] + \
        (["gamma"] if k == 6 else [])
    intervals = {}
    if draws:
        for name in names:
            vals = np.array([dr[name] for dr in draws], dtype=np.float64)
            intervals[name] = [float(np.percentile(vals, lo)), float(np.percentile(vals, hi))]
    out = ScalingFit(**{**{f: getattr(law, f) for f in (
        "E", "A", "alpha", "B", "beta", "gamma", "objective", "n_runs", "starts", "target")},
        "intervals": {"level": level, **intervals}, "bootstrap_replicates": len(draws)})
    object.__setattr__(out, "_optima", starts)
    object.__setattr__(out, "_table", t)
    return out


def compute_optimal(law: ScalingFit, C: object, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal ``(N*, D*)`` for budgets ``C = s N D`` under the fitted law."""
    C = np.asarray(C, dtype=np.float64)
    if not (s > 0 and math.isfinite(s)) or np.any(C <= 0):
        raise ValueError(f"budgets C and the FLOPs factor s must be positive; got s={s}")
    if law.alpha <= 0 or law.beta <= 0:
        raise ValueError(f"no finite compute-optimal split when an exponent is 0 (alpha="
                         f"{law.alpha:g}, beta={law.beta:g})")
    ab = law.alpha + law.beta
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / ab)
    n_star = G * (C / s) ** (law.beta / ab)
    d_star = (C / s) ** (law.alpha / ab) / G
    return n_star, d_star


def compute_envelope(table: object, *, n: str = "N", d: str = "D", y: str = "loss",
                     c: str = "flops") -> dict:
    """The compute envelope: for each budget, the best run using at most that compute (the runs
    whose loss beats every cheaper run), and least-squares slopes of ``log N`` and ``log D``
    against ``log C`` over them (``nan`` with fewer than two such runs)."""
    rows = _rows_of(table)
    t = as_table(rows, n=n, d=d, y=y, best_per_config=False)
    C = np.array([_num(rows[i].get(c)) for i in t.rows])
    if not np.all(np.isfinite(C) & (C > 0)):
        bad = t.rows[~(np.isfinite(C) & (C > 0))].tolist()
        raise ValueError(f"rows {bad} have no positive {c!r} (compute) value")
    order = np.lexsort((t.y, C))
    front, best = [], math.inf
    for i in order:
        if t.y[i] < best:
            front.append(int(i))
            best = float(t.y[i])
    out = {"runs": [int(t.rows[i]) for i in front], "C": C[front].tolist(),
           "N": t.N[front].tolist(), "D": t.D[front].tolist(), "loss": t.y[front].tolist(),
           "n_slope": math.nan, "d_slope": math.nan}
    if len(front) >= 2 and np.ptp(np.log(C[front])) > 0:
        lc = np.log(C[front])
        out["n_slope"] = float(np.polyfit(lc, np.log(t.N[front]), 1)[0])
        out["d_slope"] = float(np.polyfit(lc, np.log(t.D[front]), 1)[0])
    return out


def held_out(table: object, k: int = 2, *, n: str = "N", d: str = "D", y: str = "loss",
             quality: str | None = None, **fit_kwargs) -> dict:
    """Fit on all runs but the ``k`` largest (by ``N * D``) and predict those: returns their
    rows, measured and predicted losses and relative errors, and the fit."""
    rows = _rows_of(table)
    t = as_table(rows, n=n, d=d, y=y, quality=quality)
    if not 1 <= k < t.N.size:
        raise ValueError(f"k must lie in 1..{t.N.size - 1}; got {k}")
    order = np.argsort(t.N * t.D)
    test, train = order[-k:], order[:-k]
    law = fit([rows[i] for i in t.rows[train]], n=n, d=d, y=y, quality=quality, **fit_kwargs)
    pred = predict(law, t.N[test], t.D[test], 1.0 if t.q is None else t.q[test])
    return {"rows": t.rows[test].tolist(), "N": t.N[test].tolist(), "D": t.D[test].tolist(),
            "measured": t.y[test].tolist(), "predicted": pred.tolist(),
            "relative_error": ((pred - t.y[test]) / t.y[test]).tolist(), "fit": law.to_dict()}


def loss_to_accuracy(loss: object, accuracy: object) -> tuple[float, float]:
    """Least-squares line ``accuracy = intercept + slope * loss`` over runs (the paper maps its
    fitted loss to accuracy with a regression over its runs); returns ``(intercept, slope)``."""
    x = np.asarray(loss, dtype=np.float64)
    yv = np.asarray(accuracy, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(yv)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        raise ValueError("loss_to_accuracy needs at least two runs with different losses")
    slope, intercept = np.polyfit(x[ok], yv[ok], 1)
    return float(intercept), float(slope)


# ---------------------------------------------------------------------------------- compute
def count_macs(module: object, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of one example through the ``Conv2d`` and
    ``Linear`` layers of ``module`` (other layers are not counted): a convolution costs
    ``C_out * H_out * W_out * (C_in / groups) * k_h * k_w``, a linear layer ``in * out``.
    Counted by running one zero input through the module with hooks."""
    import torch
    from torch import nn

    total = [0]

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        total[0] += int(out[0].numel()) * (m.in_channels // m.groups) * kh * kw

    def lin_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        total[0] += int(out[0].numel() // m.out_features) * m.in_features * m.out_features

    hooks = []
    for m in module.modules():  # type: ignore[attr-defined]
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = module.training  # type: ignore[attr-defined]
    module.eval()  # type: ignore[attr-defined]
    try:
        dev = next(module.parameters()).device  # type: ignore[attr-defined]
        with torch.no_grad():
            module(torch.zeros((1,) + tuple(int(s) for s in input_shape), device=dev))
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)  # type: ignore[attr-defined]
    return total[0]


def training_flops(macs: int, examples: int, epochs: int, attack_steps: int) -> float:
    """Training FLOPs: ``3 * (2 * macs)`` per example and pass (a forward pass is 2 FLOPs per
    MAC; forward plus backward about three forward passes), times ``1 + attack_steps`` (each
    attack step is one more forward and backward pass), times examples and epochs."""
    return 3.0 * 2.0 * float(macs) * (1 + int(attack_steps)) * int(examples) * int(epochs)


def robust_loss(module: object, x: object, y: object, norm: NormLike, eps: float, *,
                steps: int = 20, step_size: float = 2.5, batch_size: int = 256,
                seed: int = 0) -> dict:
    """The robust loss on PGD-CW examples: PGD (``steps`` steps from ``x``) ascending the
    Carlini-Wagner margin ``max_{k != y} z_k - z_y`` inside the eps-ball and the box [0, 1];
    on the examples it finds, the mean cross-entropy (``robust_loss``, the quantity the law is
    fitted to: positive, as the log-form fit needs), the mean CW margin (``cw_margin``) and the
    accuracy (``pgd_cw_accuracy``)."""
    import torch
    import torch.nn.functional as F

    from ..attacks import pgd
    from ..model import wrap

    module.eval()  # type: ignore[attr-defined]
    dev = next(module.parameters()).device  # type: ignore[attr-defined]
    clf = wrap(module, device=str(dev), batch_size=batch_size)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    ce, margin, correct = [], [], 0
    for i in range(0, xt.shape[0], batch_size):
        xb, yb = xt[i:i + batch_size].to(dev), yt[i:i + batch_size].to(dev)
        xa = pgd(clf, xb, yb, norm=norm, eps=float(eps), steps=int(steps),
                 step_size=float(step_size), loss="margin", seed=gen)
        with torch.no_grad():
            z = module(xa)  # type: ignore[operator]
            ce.append(F.cross_entropy(z, yb, reduction="none").cpu())
            other = z.masked_fill(F.one_hot(yb, z.shape[1]).bool(), -math.inf).amax(1)
            margin.append((other - z.gather(1, yb[:, None])[:, 0]).cpu())
            correct += int((z.argmax(1) == yb).sum())
    n = max(1, int(xt.shape[0]))
    return {"robust_loss": float(torch.cat(ce).mean()), "cw_margin": float(torch.cat(margin)
                                                                              .mean()),
            "pgd_cw_accuracy": correct / n, "pgd_cw_steps": int(steps)}


# ---------------------------------------------------------------------------------- sweep
#: Settings of ``--quick`` and of the full study (training epochs and attack steps, test
#: points, evaluation PGD steps, the distance attack and its options).
QUICK = {"epochs": 2, "train_steps": 2, "test_points": 200, "eval_steps": 10,
         "attack": "fmn", "attack_kwargs": {"steps": 30}, "batch_size": 64}
FULL = {"epochs": 10, "train_steps": 10, "test_points": 1000, "eval_steps": 20,
        "attack": "auto", "attack_kwargs": {}, "batch_size": 64}


def _load_split(data: str, split: str) -> object:
    from .. import data as rdata

    return rdata.load(data, split=split)


def load_splits(data: str, test_points: int, seed: int = 0) -> tuple[object, object, str]:
    """Training and test sets: the ``train`` and ``test`` splits where the source has them,
    else one set split by a seeded permutation (the last ``test_points`` points are the test
    set). Returns ``(train, test, how)``."""
    from .. import data as rdata

    try:
        train, test = _load_split(data, "train"), _load_split(data, "test")
        return train, test.subset(slice(0, min(test.n, int(test_points)))), "train/test splits"
    except TypeError:
        ds = rdata.load(data)
    if ds.n <= test_points:
        raise ValueError(f"{data!r} has {ds.n} points and no train/test splits; fewer than "
                         f"the {test_points} test points asked for")
    perm = np.random.default_rng(seed).permutation(ds.n)
    return (ds.subset(np.sort(perm[:-test_points])), ds.subset(np.sort(perm[-test_points:])),
            f"one set split by a seeded permutation ({ds.n - test_points} train, "
            f"{test_points} test)")


def _noisy(ds: object, rate: float, seed: int) -> object:
    """``ds`` with a fraction ``rate`` of its labels moved to a random other class."""
    if rate <= 0:
        return ds
    from .. import data as rdata

    rng = np.random.default_rng(seed)
    y = ds.y.copy()
    flip = rng.random(ds.n) < rate
    k = ds.num_classes
    y[flip] = (y[flip] + rng.integers(1, k, int(flip.sum()))) % k
    return rdata.Dataset(x=ds.x, y=y, name=f"{ds.name}+noise{rate:g}", classes=ds.classes,
                         source=ds.source, info={**ds.info, "label_noise": rate})


def _parse_list(text: object, kind: type, what: str) -> list:
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
    else:
        parts = list(text)  # type: ignore[call-overload]
    try:
        vals = [kind(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a comma-separated list of numbers; got {text!r}"
                         ) from None
    if not vals:
        raise ValueError(f"{what} is empty")
    return vals


def sweep(data: str, out: str | Path, *, method: str = "pgd-at", norm: NormLike = "linf",
          eps: float = 0.1, widths: object = (1, 2, 4, 8),
          train_sizes: object = (2500, 5000, 10000, 20000), label_noise: object = (0.0,),
          arch: str = "cnn-wide", quick: bool = False, settings: dict | None = None,
          auc_eps_max: float | None = None, seed: int = 0, progress: bool = True,
          log: object = print) -> list[dict]:
    """Train every (width, train size, label noise) of the grid and write, per run,
    ``OUT/runs/<id>/model.rcm`` and ``row.json``; returns the rows (also in ``OUT/runs.json``
    and ``OUT/runs.csv``).

    A row holds: ``N`` (trainable parameters), ``D`` (training examples), ``quality``
    (1 - label noise), ``macs`` (forward MACs per example, :func:`count_macs`), ``flops``
    (:func:`training_flops`), ``train_seconds`` (training wall time) and ``seconds`` (the run
    with its evaluation, in this process: ``resumed`` says training resumed a checkpoint),
    ``clean_accuracy`` and ``robust_accuracy`` at ``eps`` (PGD with the margin loss and one
    random restart, from :func:`robcurves.train.fit`), ``robust_loss`` and ``cw_margin``
    (:func:`robust_loss`), and from the minimal distances of the test points
    (:func:`robcurves.distances`) the curve's ``auc`` (area under the robust-error curve on
    [0, ``auc_eps_max``] divided by ``auc_eps_max``, default ``2 * eps``) and
    ``median_distance``.

    Resumable run by run: a run whose ``row.json`` exists with the same settings is reused as
    it is (its model file untouched); a run with a model file but no row is evaluated without
    retraining; an interrupted training resumes from its per-epoch checkpoint. A row of other
    settings raises ``ValueError`` (use another ``out``).
    """
    import torch

    from .. import __version__
    from .._norms import norm_name, parse_norm
    from ..curve import RobustnessCurve
    from ..evaluate import distances
    from ..train import fit as train_fit
    from ..train import load_model, read_meta, save_model

    p = parse_norm(norm)
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive number; got {eps}")
    ws = _parse_list(widths, float, "widths")
    ds_sizes = _parse_list(train_sizes, int, "train sizes")
    noises = _parse_list(label_noise, float, "label noise")
    if any(w <= 0 for w in ws):
        raise ValueError(f"widths must be positive; got {ws}")
    if any(s < 1 for s in ds_sizes):
        raise ValueError(f"train sizes must be >= 1; got {ds_sizes}")
    if any(not 0 <= r < 1 for r in noises):
        raise ValueError(f"label noise rates must lie in [0, 1); got {noises}")
    if method not in ("pgd-at", "trades"):
        raise ValueError(f"method must be 'pgd-at' or 'trades'; got {method!r}")
    cfg = dict(QUICK if quick else FULL)
    cfg.update(settings or {})
    auc_max = float(auc_eps_max) if auc_eps_max is not None else 2.0 * float(eps)
    if not (auc_max > 0 and math.isfinite(auc_max)):
        raise ValueError(f"auc_eps_max must be a positive number; got {auc_eps_max}")
    train_all, test, split_how = load_splits(data, cfg["test_points"], seed)
    if max(ds_sizes) > train_all.n:
        raise ValueError(f"train size {max(ds_sizes)} exceeds the {train_all.n} training points "
                         f"of {data!r}")
    order = np.random.default_rng(seed).permutation(train_all.n)
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    rows = []
    grid = list(itertools.product(ws, ds_sizes, noises))
    for k, (w, dsz, noise) in enumerate(grid):
        run_id = f"w{w:g}_d{dsz}" + (f"_noise{noise:g}" if noise > 0 else "")
        rdir = out / "runs" / run_id
        row_path, model_path = rdir / "row.json", rdir / "model.rcm"
        settings_key = {"data": str(data), "method": method, "norm": norm_name(p),
                        "eps": float(eps), "arch": arch, "width": w, "D": dsz,
                        "label_noise": noise, "seed": seed, "auc_eps_max": auc_max,
                        "split": split_how, **{k2: cfg[k2] for k2 in sorted(cfg)}}
        if row_path.exists():
            row = json.loads(row_path.read_text())
            if row.get("settings") != json.loads(json.dumps(settings_key)):
                raise ValueError(f"{row_path} was written with other settings; use another "
                                 "--out or delete that run folder")
            rows.append(row)
            log(f"[{k + 1}/{len(grid)}] {run_id}: reused")
            continue
        rdir.mkdir(parents=True, exist_ok=True)
        train = _noisy(train_all.subset(np.sort(order[:dsz])), noise, seed + 1)
        t0 = time.perf_counter()
        arch_kwargs = {"width": w}
        resumed = (rdir / "train.ckpt").exists()
        if model_path.exists() and read_meta(model_path).get("data_n") == dsz:
            module = load_model(model_path)
        else:
            module = train_fit(train, arch=arch, method=method, norm=norm, eps=float(eps),
                               steps=int(cfg["train_steps"]), epochs=int(cfg["epochs"]),
                               batch_size=int(cfg["batch_size"]), arch_kwargs=arch_kwargs,
                               eval_data=test, eval_points=test.n,
                               eval_steps=int(cfg["eval_steps"]), seed=seed, device="cpu",
                               progress=progress, checkpoint=rdir / "train.ckpt")
            save_model(module, model_path)
            (rdir / "train.ckpt").unlink(missing_ok=True)
        meta = module.robcurves_meta
        n_params = sum(int(q.numel()) for q in module.parameters() if q.requires_grad)
        macs = count_macs(module, train.input_shape)
        rl = robust_loss(module, test.x, test.y, p, float(eps), steps=int(cfg["eval_steps"]),
                         seed=seed)
        dist = distances(module, test.x, test.y, p, attack=cfg["attack"], seed=seed,
                         **cfg["attack_kwargs"])
        curve = RobustnessCurve.from_distances(dist, name=run_id)
        row = {
            "run": run_id, "width": w, "arch": arch, "N": n_params, "D": dsz,
            "label_noise": noise, "quality": 1.0 - noise, "epochs": int(cfg["epochs"]),
            "attack_steps": int(cfg["train_steps"]), "macs": macs,
            "flops": training_flops(macs, dsz, int(cfg["epochs"]), int(cfg["train_steps"])),
            "train_seconds": float(meta["train_seconds"]),
            "seconds": time.perf_counter() - t0, "resumed": resumed,
            "clean_accuracy": float(meta["clean_accuracy"]),
            "robust_accuracy": float(meta["robust_accuracy"]), **rl,
            "auc": curve.auc(auc_max, normalized=True), "auc_eps_max": auc_max,
            "median_distance": (curve.median_distance
                                if math.isfinite(curve.median_distance) else None),
            "test_points": int(test.n),
            "distance_attack": cfg["attack"], "model": str(model_path.relative_to(out)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "threads": torch.get_num_threads(), "robcurves_version": __version__,
            "settings": settings_key,
        }
        tmp = row_path.with_name("row.json.tmp")
        tmp.write_text(json.dumps(row, indent=1, default=_jsonable))
        tmp.replace(row_path)
        rows.append(json.loads(row_path.read_text()))
        log(f"[{k + 1}/{len(grid)}] {run_id}: N={n_params} D={dsz} in {row['seconds']:.1f}s; "
            f"clean {row['clean_accuracy']:.3f}, robust {row['robust_accuracy']:.3f}, robust "
            f"loss {row['robust_loss']:.3f}, AUC {row['auc']:.3f}")
    _write_rows(rows, out)
    return rows


def _jsonable(o: object) -> object:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


_CSV_COLUMNS = ["run", "width", "N", "D", "quality", "macs", "flops", "train_seconds", "seconds",
                "clean_accuracy", "robust_accuracy", "pgd_cw_accuracy", "robust_loss",
                "cw_margin", "auc", "median_distance"]


def _write_rows(rows: list[dict], out: Path) -> None:
    (out / "runs.json").write_text(json.dumps(rows, indent=1))
    with (out / "runs.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow(r)


# ---------------------------------------------------------------------------------- analysis
def _fmt(v: float) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _interval(law: dict, name: str) -> str:
    iv = law.get("intervals", {}).get(name)
    return f"{_fmt(law[name])} [{_fmt(iv[0])}, {_fmt(iv[1])}]" if iv else _fmt(law[name])


def analyze(rows: Sequence[Mapping], *, bootstrap_replicates: int = 100,
            held_out_runs: int = 2, budgets: Sequence[float] | None = None,
            seed: int = 0) -> dict:
    """Fits and derived numbers from the rows of :func:`sweep` (or any rows with ``N``,
    ``D``, ``robust_loss``, ``robust_accuracy``, ``auc`` and ``flops``).

    Returns a dict: ``loss`` and ``auc`` (fitted laws with bootstrap intervals, ``None`` with a
    ``notes`` entry when there are too few runs), ``held_out`` (fit without the largest runs,
    prediction error on them), ``envelope`` (:func:`compute_envelope`), ``s`` (median
    ``flops / (N D)``), ``optimal`` (N*, D* and the predicted loss for each budget: by default
    1, 10 and 100 times the largest run's compute), ``accuracy_map`` (robust accuracy =
    intercept + slope * loss over the runs) with ``plateau_accuracy`` (that line at E,
    clipped to [0, 1]; left out when E is not identified: fitted below a thousandth of every
    run's loss, ``loss_E_identified`` False), ``spearman_auc_loss`` and a text ``summary``.
    """
    from scipy.stats import spearmanr

    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("no runs to analyse")
    noisy = any(float(r.get("quality", 1.0)) < 1.0 for r in rows)
    q = "quality" if noisy else None
    k = 6 if noisy else 5
    notes: list[str] = []
    out: dict = {"n_runs": len(rows), "notes": notes, "quality_term": noisy}
    for target, key in (("loss", "robust_loss"), ("auc", "auc")):
        try:
            law = fit(rows, y=key, quality=q)
            law = bootstrap(law, bootstrap_replicates, seed=seed) if bootstrap_replicates else law
            out[target] = law.to_dict()
            low = min(float(r[key]) for r in rows)
            out[f"{target}_E_identified"] = bool(law.E >= 1e-3 * low)
            if law.E < 1e-3 * low:
                notes.append(f"the {target} fit puts E at {law.E:.3g}, far below every run "
                             f"({low:.3g}): these runs do not span enough N and D to separate "
                             "E from the power laws, so E and the plateau are not identified")
        except ValueError as exc:
            out[target] = None
            notes.append(f"no {target} fit: {exc}")
    flops = np.array([float(r["flops"]) for r in rows])
    nd = np.array([float(r["N"]) * float(r["D"]) for r in rows])
    s = float(np.median(flops / nd))
    out["s"] = s
    out["envelope"] = compute_envelope(rows, y="robust_loss", c="flops")
    n_cfg = as_table(rows, y="robust_loss", quality=q).N.size
    if held_out_runs and n_cfg - held_out_runs >= k:
        out["held_out"] = held_out(rows, held_out_runs, y="robust_loss", quality=q)
    else:
        out["held_out"] = None
        notes.append(f"no held-out check: {n_cfg} runs, {held_out_runs} held out leaves fewer "
                     f"than the {k} a fit needs")
    budgets = list(budgets) if budgets is not None else [float(flops.max()) * f
                                                         for f in (1, 10, 100)]
    out["optimal"] = []
    if out["loss"] is not None:
        law = ScalingFit(**{f: out["loss"][f] for f in ("E", "A", "alpha", "B", "beta",
                                                         "gamma")})
        try:
            n_s, d_s = compute_optimal(law, budgets, s)
            for c_, n_, d_ in zip(budgets, n_s, d_s, strict=True):
                out["optimal"].append({"C": c_, "N": float(n_), "D": float(d_),
                                       "loss": float(law.predict(n_, d_))})
        except ValueError as exc:
            notes.append(f"no compute-optimal allocation: {exc}")
    loss = np.array([float(r["robust_loss"]) for r in rows])
    acc = np.array([float(r["robust_accuracy"]) for r in rows])
    try:
        a0, a1 = loss_to_accuracy(loss, acc)
        out["accuracy_map"] = {"intercept": a0, "slope": a1}
        if out["loss"] is not None and out.get("loss_E_identified"):
            out["plateau_accuracy"] = float(np.clip(a0 + a1 * out["loss"]["E"], 0, 1))
    except ValueError as exc:
        out["accuracy_map"] = None
        notes.append(f"no loss-to-accuracy map: {exc}")
    auc = np.array([float(r["auc"]) for r in rows])
    out["spearman_auc_loss"] = (float(spearmanr(auc, loss)[0])
                                if len(rows) > 2 and np.ptp(auc) > 0 and np.ptp(loss) > 0
                                else math.nan)
    out["summary"] = _summary(out)
    return out


def _summary(res: dict) -> str:
    lines = [f"{res['n_runs']} runs"]
    for target, what in (("loss", "robust loss"), ("auc", "curve AUC")):
        law = res.get(target)
        if law is None:
            continue
        lines.append(f"{what}: E = {_interval(law, 'E')}, alpha = {_interval(law, 'alpha')}, "
                     f"beta = {_interval(law, 'beta')}, N* ~ C^{_interval(law, 'n_exponent')}"
                     + (f", gamma = {_interval(law, 'gamma')}" if law.get("gamma") is not None
                        else ""))
    ho = res.get("held_out")
    if ho:
        errs = ", ".join(f"{100 * e:+.1f}%" for e in ho["relative_error"])
        lines.append(f"held out (largest N*D): measured {[round(v, 4) for v in ho['measured']]}"
                     f", predicted {[round(v, 4) for v in ho['predicted']]} ({errs})")
    for o in res.get("optimal", []):
        lines.append(f"C = {o['C']:.3g} FLOPs: N* = {o['N']:.3g}, D* = {o['D']:.3g}, "
                     f"predicted robust loss {o['loss']:.4g}")
    if res.get("plateau_accuracy") is not None:
        lines.append(f"plateau: robust loss E = {_fmt(res['loss']['E'])} -> robust accuracy "
                     f"{res['plateau_accuracy']:.3f} (linear map over the runs)")
    lines.append(f"Spearman correlation of AUC and robust loss over runs: "
                 f"{_fmt(res['spearman_auc_loss'])}")
    lines += [f"note: {n}" for n in res["notes"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- report
def _plots(res: dict, rows: Sequence[Mapping], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    N = np.array([float(r["N"]) for r in rows])
    D = np.array([float(r["D"]) for r in rows])
    q = np.array([float(r.get("quality", 1.0)) for r in rows])
    clean = q == 1.0
    files: dict[str, Path] = {}
    n_grid = np.logspace(np.log10(N.min()) - 0.3, np.log10(N.max()) + 0.3, 100)
    for target, key, label in (("loss", "robust_loss", "robust loss (CE on PGD-CW)"),
                               ("auc", "auc", "curve AUC (normalised)")):
        y = np.array([float(r[key]) for r in rows])
        lawd = res.get(target)
        law = None if lawd is None else ScalingFit(
            **{f: lawd[f] for f in ("E", "A", "alpha", "B", "beta", "gamma")})
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for i, dv in enumerate(sorted(set(D[clean]))):
            m = clean & (D == dv)
            ax.plot(N[m], y[m], "o", color=f"C{i}", label=f"D = {dv:g}")
            if law is not None:
                ax.plot(n_grid, law.predict(n_grid, dv), "-", color=f"C{i}", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (parameters)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.set_title(f"{label} against N" + (" (lines: fitted law)" if law else ""))
        fig.tight_layout()
        files[f"{target}_vs_n"] = folder / f"{target}_vs_n.png"
        fig.savefig(files[f"{target}_vs_n"], dpi=110)
        plt.close(fig)
        if law is None:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ln = np.linspace(np.log10(N.min()) - 0.5, np.log10(N.max()) + 1.5, 80)
        ld = np.linspace(np.log10(D.min()) - 0.5, np.log10(D.max()) + 1.5, 80)
        gn, gd = np.meshgrid(ln, ld)
        cs = ax.contourf(gn, gd, law.predict(10 ** gn, 10 ** gd), levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, label=f"fitted {label}")
        ax.scatter(np.log10(N[clean]), np.log10(D[clean]), c=y[clean], cmap="viridis",
                   norm=cs.norm, edgecolors="w", s=50, label="runs (measured)")
        ax.set_xlabel("log10 N")
        ax.set_ylabel("log10 D")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"fitted {target} surface with the runs")
        fig.tight_layout()
        files[f"{target}_surface"] = folder / f"{target}_surface.png"
        fig.savefig(files[f"{target}_surface"], dpi=110)
        plt.close(fig)
    if res.get("loss") is not None and res.get("optimal"):
        law = ScalingFit(**{f: res["loss"][f] for f in ("E", "A", "alpha", "B", "beta",
                                                         "gamma")})
        s = res["s"]
        flops = np.array([float(r["flops"]) for r in rows])
        cs_ = sorted({*np.quantile(flops, [0.0, 0.5, 1.0]).tolist(),
                      *(o["C"] for o in res["optimal"])})
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for i, c_ in enumerate(cs_):
            n_s, d_s = compute_optimal(law, c_, s)
            nn_ = np.logspace(np.log10(n_s) - 2, np.log10(n_s) + 2, 200)
            ax.plot(nn_, law.predict(nn_, c_ / (s * nn_)), color=f"C{i}", label=f"C = {c_:.2g}")
            ax.plot(n_s, law.predict(n_s, d_s), "*", color=f"C{i}", ms=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (parameters), D = C / (s N); N* / 100 .. 100 N*")
        ax.set_ylabel("fitted robust loss")
        ax.set_title("iso-FLOP curves (stars: N*)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files["isoflop"] = folder / "isoflop.png"
        fig.savefig(files["isoflop"], dpi=110)
        plt.close(fig)
    return files


def write_report(res: dict, rows: Sequence[Mapping], out: str | Path) -> list[Path]:
    """Plots (``plots/*.png``), ``analysis.json``, ``scaling.html`` (self-contained: the
    plots are embedded) and ``scaling.md`` in ``out``; returns the paths written."""
    import base64

    import jinja2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(res, rows, out / "plots")
    (out / "analysis.json").write_text(json.dumps(res, indent=1, default=_jsonable))
    env = jinja2.Environment(loader=jinja2.PackageLoader("robcurves.studies", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]),
                             keep_trailing_newline=True)
    env.filters["g"] = _fmt
    env.filters["iv"] = lambda law, name: _interval(law, name)
    ctx = {"res": res, "rows": rows, "columns": _CSV_COLUMNS,
           "plots": {k: str(p.relative_to(out)) for k, p in plots.items()},
           "inline": {k: base64.b64encode(p.read_bytes()).decode() for k, p in plots.items()}}
    html = out / "scaling.html"
    html.write_text(env.get_template("scaling.html.j2").render(**ctx))
    md = out / "scaling.md"
    md.write_text(env.get_template("scaling.md.j2").render(**ctx))
    return [html, md, out / "analysis.json", *plots.values()]

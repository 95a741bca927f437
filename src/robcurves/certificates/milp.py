"""Exact minimal l_inf / l1 distances of small ReLU networks by mixed-integer programming.

For a point ``x`` of class ``y`` and a search radius ``R`` (an attack's distance, so the optimum
lies inside; or the whole box), the program is

    min ||delta||_p  over  delta with x + delta in the box and ||delta||_inf <= R (||.||_1 <= R),
    z_i = W_i h_{i-1} + b_i,  h_i = relu(z_i),  logits = W_L h_{L-1} + b_L,
    logits_k >= logits_y for at least one k != y,

with ReLUs encoded by big-M constraints whose constants are CROWN bounds on each ReLU's input
over the domain (stable ReLUs need no binary), and the "some other class wins" disjunction by one
binary per class whose big-M is a CROWN bound on the logit gap. The l_inf objective is one
variable ``t >= |delta_j|``; the l1 objective splits ``delta = d+ - d-``.

HiGHS (``scipy.optimize.milp``) solves it under a per-point time limit. Results are honest: the
reported distance is the solver's proven lower (dual) bound, equal to the optimum when it is
solved (``status="optimal"``); the best adversarial's distance is the upper bound.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import torch

from ._layers import ReLU, Step, affine_blocks, forward
from .crown import preactivation_bounds

__all__ = ["MILPResult", "milp_distances"]


@dataclass(frozen=True)
class MILPResult:
    """Per-point MILP outcome.

    Attributes:
        lower: proven lower bounds on ``d*`` (the optimum when ``status == "optimal"``).
        upper: distance of the best adversarial the solver found (``inf`` if none).
        status: ``"optimal"``, ``"time-limit"``, ``"no-adversarial"`` (infeasible inside the
            search radius: ``d* >= radius``), ``"misclassified"``.
        radius: the search radius used per point.
        seconds: solver wall time per point.
        n_binary: binary variables per point (unstable ReLUs plus class selectors).
    """

    lower: np.ndarray
    upper: np.ndarray
    status: list[str]
    radius: np.ndarray
    seconds: np.ndarray
    n_binary: np.ndarray

    @property
    def n_solved(self) -> int:
        return sum(s in ("optimal", "misclassified", "no-adversarial") for s in self.status)


def _solve_point(blocks: list, pre: list[tuple[np.ndarray, np.ndarray]],
                 logit_bounds: tuple[np.ndarray, np.ndarray], x: np.ndarray, y: int, p: float,
                 radius: float, bounds: tuple[float, float], time_limit: float
                 ) -> tuple[float, float, str, int]:
    n_in = x.shape[0]
    lo_d = np.maximum(bounds[0] - x, -radius)
    hi_d = np.minimum(bounds[1] - x, radius)
    unstable = [(lo < 0) & (hi > 0) for lo, hi in pre]
    l_out, u_out = logit_bounds
    classes = [k for k in range(len(l_out)) if k != y and u_out[k] >= l_out[y]]
    if not classes:
        return radius, math.inf, "no-adversarial", 0
    # variable layout
    n_obj = 1 if p == math.inf else n_in  # t, or d- (d+ are the first n_in variables)
    offsets = [n_in + n_obj]
    for mask in unstable:
        offsets.append(offsets[-1] + 2 * int(mask.sum()))  # a (relu output) and binary
    n_var = offsets[-1]
    lb, ub = np.zeros(n_var), np.zeros(n_var)
    integrality = np.zeros(n_var)
    c = np.zeros(n_var)
    rows, row_lo, row_hi = [], [], []

    def add(a: sp.spmatrix, lo: np.ndarray, hi: np.ndarray) -> None:
        rows.append(sp.csr_matrix(a))
        row_lo.append(np.broadcast_to(lo, (a.shape[0],)))
        row_hi.append(np.broadcast_to(hi, (a.shape[0],)))

    eye = sp.identity(n_in, format="csr")
    if p == math.inf:
        lb[:n_in], ub[:n_in] = lo_d, hi_d
        lb[n_in], ub[n_in] = 0.0, radius
        c[n_in] = 1.0
        tcol = sp.csr_matrix((np.ones(n_in), (np.arange(n_in), np.full(n_in, n_in))),
                             shape=(n_in, n_var))
        sel = sp.hstack([eye, sp.csr_matrix((n_in, n_var - n_in))]).tocsr()
        add(sel - tcol, -np.inf, 0.0)   # delta - t <= 0
        add(-sel - tcol, -np.inf, 0.0)  # -delta - t <= 0
        expr = sel
    else:
        lb[:n_in], ub[:n_in] = 0.0, np.maximum(hi_d, 0.0)
        lb[n_in:2 * n_in], ub[n_in:2 * n_in] = 0.0, np.maximum(-lo_d, 0.0)
        c[: 2 * n_in] = 1.0
        expr = sp.hstack([eye, -eye, sp.csr_matrix((n_in, n_var - 2 * n_in))]).tocsr()
        add(sp.csr_matrix(c[None]), -np.inf, radius)  # ||delta||_1 <= R
    const = x.astype(np.float64)
    n_binary = 0
    for i, (lo, hi) in enumerate(pre):
        w, b = blocks[i]
        z, z0 = (w @ expr).tocsr(), w @ const + b
        mask = unstable[i]
        idx = np.flatnonzero(mask)
        m = idx.size
        a_cols = offsets[i] + np.arange(m)
        d_cols = offsets[i] + m + np.arange(m)
        lb[a_cols], ub[a_cols] = 0.0, hi[idx]
        lb[d_cols], ub[d_cols], integrality[d_cols] = 0.0, 1.0, 1.0
        n_binary += m
        if m:
            zu = z[idx]
            a_sel = sp.csr_matrix((np.ones(m), (np.arange(m), a_cols)), shape=(m, n_var))
            d_l = sp.csr_matrix((-lo[idx], (np.arange(m), d_cols)), shape=(m, n_var))
            d_u = sp.csr_matrix((-hi[idx], (np.arange(m), d_cols)), shape=(m, n_var))
            add(a_sel - zu, z0[idx], np.inf)                       # a >= z
            add(a_sel - zu + d_l, -np.inf, z0[idx] - lo[idx])       # a <= z - l (1 - d)
            add(a_sel + d_u, -np.inf, 0.0)                         # a <= u d
        # next expression: active -> z, dead -> 0, unstable -> a
        active = (lo >= 0).astype(np.float64)
        keep = sp.diags(active) @ z
        pick = sp.csr_matrix((np.ones(m), (idx, a_cols)), shape=(z.shape[0], n_var))
        expr = (keep + pick).tocsr()
        const = active * z0
    w, b = blocks[-1]
    logits, l0 = (w @ expr).tocsr(), w @ const + b
    a_net = sp.vstack(rows).tocsr()
    lo_net, hi_net = np.concatenate(row_lo), np.concatenate(row_hi)
    # One program per target class k (logit_k >= logit_y is a hard constraint: a much
    # stronger relaxation than a disjunction), most likely classes first; each one only
    # searches below the best distance found so far.
    obj_row = sp.csr_matrix(c[None])
    clean = l0  # logits at delta = 0 (the expression's constant part)
    order = sorted(classes, key=lambda k: clean[y] - clean[k])
    deadline = time.perf_counter() + time_limit
    best_upper, open_lower = math.inf, math.inf  # open_lower: min bound of unfinished classes
    cutoff = radius
    timed_out = False
    for k in order:
        left = deadline - time.perf_counter()
        if left <= 0:
            timed_out = True
            open_lower = min(open_lower, 0.0)  # classes never tried: nothing is proven
            break
        gap = logits[k] - logits[y]
        a_all = sp.vstack([a_net, gap, obj_row]).tocsr()
        cons = scipy.optimize.LinearConstraint(
            a_all, np.concatenate([lo_net, [-(l0[k] - l0[y])], [-np.inf]]),
            np.concatenate([hi_net, [np.inf], [cutoff]]))
        res = scipy.optimize.milp(c, integrality=integrality,
                                  bounds=scipy.optimize.Bounds(lb, ub), constraints=cons,
                                  options={"time_limit": float(left), "mip_rel_gap": 1e-4,
                                           "disp": bool(os.environ.get("ROBCURVES_MILP_DISP"))})
        if res.status == 2:  # no adversarial of class k closer than the cutoff
            continue
        if res.status not in (0, 1):
            raise RuntimeError(f"HiGHS failed on a MILP: {res.message}")
        if res.x is not None and np.isfinite(res.fun):
            best_upper = min(best_upper, float(res.fun))
            cutoff = min(cutoff, best_upper)
        dual = getattr(res, "mip_dual_bound", None)
        dual = float(dual) if dual is not None and np.isfinite(dual) else 0.0
        if res.status == 0 and not integrality.any():  # a pure LP: its optimum is proven
            dual = float(res.fun)
        if res.status == 1:
            timed_out = True
            open_lower = min(open_lower, max(0.0, dual))
        else:
            open_lower = min(open_lower, max(0.0, min(dual, float(res.fun))))
    if math.isinf(best_upper) and not timed_out:
        return radius, math.inf, "no-adversarial", n_binary
    # every class is either solved (>= its optimum >= best), cut off (>= cutoff >= best) or
    # open (>= its dual bound)
    lower = min(best_upper, open_lower)
    return max(0.0, lower), best_upper, ("time-limit" if timed_out else "optimal"), n_binary


def milp_distances(steps: list[Step], x: torch.Tensor, y: torch.Tensor, p: float,
                   bounds: tuple[float, float], upper: torch.Tensor | None = None,
                   time_limit: float = 10.0, bound_method: str = "crown",
                   progress: bool = False, on_point: Callable[[], None] | None = None
                   ) -> MILPResult:
    """Exact (when solved) minimal distances for each point; see the module docstring.

    Args:
        steps: float64 flattened network (:func:`sequential_layers`).
        x, y: points ``(N, *shape)`` in the box and labels.
        p: ``math.inf`` or ``1.0``.
        upper: per-point distances of known adversarials (e.g. attack distances; ``inf`` for
            none): the search radius. Without one the radius covers the whole box, which makes
            the big-M bounds loose and the MILP much slower.
        time_limit: seconds per point.
        bound_method: ``"crown"`` or ``"ibp"`` for the big-M constants.
        on_point: called after each point.
    """
    from tqdm.auto import tqdm

    if p not in (math.inf, 1.0):
        raise ValueError(f"the MILP supports l_inf and l1 (linear objectives); got norm {p}")
    n = x.shape[0]
    n_in = x[0].numel()
    box = (bounds[1] - bounds[0]) * (1.0 if p == math.inf else n_in)
    radius = np.full(n, box)
    if upper is not None:
        u = upper.detach().cpu().double().numpy()
        radius = np.where(np.isfinite(u), np.minimum(u * (1 + 1e-3) + 1e-6, box), box)
    blocks = affine_blocks(steps)
    ext = steps + [ReLU(steps[-1].out_shape, "logits")]  # to bound the logits too
    relu_idx = [i for i, s in enumerate(steps) if isinstance(s, ReLU)]
    lower = np.zeros(n)
    upp = np.full(n, math.inf)
    status: list[str] = []
    secs, nbin = np.zeros(n), np.zeros(n, dtype=np.int64)
    with torch.no_grad():
        pred = forward(steps, x).argmax(1)
    for j in tqdm(range(n), disable=not progress, desc="milp"):
        t0 = time.perf_counter()
        if int(pred[j]) != int(y[j]):
            status.append("misclassified")
            upp[j] = 0.0
            if on_point is not None:
                on_point()
            continue
        xr = x[j:j + 1]
        eps = torch.tensor([radius[j]], dtype=x.dtype, device=x.device)
        with torch.no_grad():
            pre = preactivation_bounds(ext, xr, eps, p, bounds, bound_method)
        pre_np = [(pre[i][0].reshape(-1).cpu().numpy(), pre[i][1].reshape(-1).cpu().numpy())
                  for i in relu_idx]
        lb_out = pre[len(steps)]
        logit_b = (lb_out[0].reshape(-1).cpu().numpy(), lb_out[1].reshape(-1).cpu().numpy())
        lo_j, up_j, st, nb = _solve_point(blocks, pre_np, logit_b,
                                          x[j].reshape(-1).cpu().double().numpy(), int(y[j]), p,
                                          float(radius[j]), bounds, time_limit)
        if st == "no-adversarial" and radius[j] >= box:
            lo_j = math.inf
        lower[j], upp[j], secs[j], nbin[j] = lo_j, up_j, time.perf_counter() - t0, nb
        status.append(st)
        if on_point is not None:
            on_point()
    return MILPResult(lower=lower, upper=upp, status=status, radius=radius, seconds=secs,
                      n_binary=nbin)

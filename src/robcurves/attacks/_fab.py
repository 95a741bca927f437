"""Fast Adaptive Boundary attack (FAB; Croce & Hein, ICML 2020) for l_inf, l2 and l1.

At each step the decision boundary is linearised at the current iterate ``x_i``: for every
candidate class ``k`` the hyperplane ``f_k(x_i) + grad f_k(x_i) . (z - x_i) = 0`` with
``f_k = z_k - z_y``, and the class whose hyperplane is closest in the dual norm
(``|f_k| / ||grad f_k||_q``) is chosen. Both the iterate and the original point ``x`` are
projected onto that hyperplane intersected with the input box (the exact minimal-l_p
box-constrained projection, :func:`project_hyperplane_box`), giving steps ``d_i`` and ``d_x``.
The next iterate is the convex combination
``(1 - a)(x_i + eta d_i) + a (x + eta d_x)`` with ``a = min(||d_i|| / (||d_i|| + ||d_x||),
alpha_max)`` (biased towards the original point), clipped to the box. If it is adversarial it
is recorded and pulled back towards the original: ``x + beta (x_{i+1} - x)``.

Restarts start from a random point of the l_p ball of radius half the best distance found so
far (half the first linearised distance where none was found) around ``x``, as in the paper.

Passes per active point and step: one forward and ``candidates`` backward passes for the
linearisation (the gradients of ``z_k - z_y`` for the ``candidates`` highest-scoring classes
besides the label, one backward each through a shared forward; ``targets`` uses one class),
plus one forward to test the new iterate before the pull-back. The paper linearises all
``K - 1`` classes; ``candidates=9`` does that for up to 10 classes.

Differences from the published algorithm:

* **Best of every query**: every iterate the model sees (the linearisation points and the
  tested new iterates) updates a :class:`~robcurves.attacks._core.BestAdversarial`, so the
  result is the closest verified adversarial over the whole run, never only the last one.
* **Convergence**: a broken point stops costing once its best distance has not shrunk by more
  than ``tol`` (relative) during ``patience`` steps (the paper runs every point for all steps).
* **Hyperplane missing the box**: where no point of the box lies on the linearised boundary,
  the step goes to the box corner that moves furthest towards it (the paper leaves this case
  open).
* **Final line search** (as the other minimal-norm attacks here): a forward-only bisection on
  the segment from ``x`` to the best adversarial instead of the paper's final search.
"""

from __future__ import annotations

import math

import torch

from .._norms import dual_norm, lp_norm
from ..model import Classifier
from ._core import (
    BestAdversarial,
    Convergence,
    attack,
    default_patience,
    expand,
    generator_for,
    line_search,
    random_start,
)

__all__ = ["fab", "project_hyperplane_box"]


def project_hyperplane_box(w: torch.Tensor, b: torch.Tensor, lo: torch.Tensor,
                           hi: torch.Tensor, p: float) -> torch.Tensor:
    """Per row, the step ``d`` of smallest l_p norm with ``w . d = b`` and ``lo <= d <= hi``.

    ``w, lo, hi`` have shape ``(N, ...)`` with ``lo <= 0 <= hi``; ``b`` has shape ``(N,)``.
    Where no such ``d`` exists (the hyperplane misses the box), the box corner that maximises
    ``sign(b) w . d`` (zero on coordinates where ``w`` is zero).

    All three norms reduce to a monotone one-dimensional problem after flipping ``w`` so that
    ``b >= 0`` and writing ``m_i >= 0`` for the room coordinate ``i`` has along ``sign(w_i)``:

    * l2: ``d_i = sign(w_i) min(lam |w_i|, m_i)`` (KKT), ``w . d`` piecewise linear in ``lam``;
    * l_inf: ``d_i = sign(w_i) min(t, m_i)``, ``w . d`` piecewise linear in ``t``;
    * l1: a fractional knapsack: fill coordinates by decreasing ``|w_i|`` up to their room.

    Each is solved exactly by sorting the breakpoints (no iteration), in float64.
    """
    n = w.shape[0]
    dtype = w.dtype
    wf = w.reshape(n, -1).double()
    lof, hif = lo.reshape(n, -1).double(), hi.reshape(n, -1).double()
    dim = wf.shape[1]
    s = torch.where(b < 0, -1.0, 1.0).to(torch.float64)
    wf = wf * s[:, None]
    bb = b.double().abs()
    aw = wf.abs()
    room = torch.where(wf > 0, hif, -lof).clamp_min(0.0)
    room = torch.where(aw > 0, room, torch.zeros_like(room))
    ar = torch.arange(n, device=w.device)
    if p == 1.0:
        order = aw.argsort(dim=1, descending=True)
        aw_s, room_s = aw.gather(1, order), room.gather(1, order)
        cum = (aw_s * room_s).cumsum(1)
        j = (cum < bb[:, None]).sum(1)  # the coordinate that completes b
        feasible = j < dim
        jc = j.clamp(max=dim - 1)
        before = torch.where(j > 0, cum[ar, (j - 1).clamp(min=0)], torch.zeros_like(bb))
        part = ((bb - before) / aw_s[ar, jc].clamp_min(1e-300)).clamp_min(0.0)
        part = torch.minimum(part, room_s[ar, jc])
        idx = torch.arange(dim, device=w.device)[None]
        mag_s = torch.where(idx < j[:, None], room_s, torch.zeros_like(room_s))
        mag_s[ar, jc] = torch.where(feasible, part, mag_s[ar, jc])
        mag = torch.zeros_like(mag_s).scatter_(1, order, mag_s)
    else:
        if p == math.inf:
            a, t = aw, room
        else:
            a, t = aw * aw, room / aw.clamp_min(1e-300)
        t = torch.where(aw > 0, t, torch.zeros_like(t))
        order = t.argsort(dim=1)
        t_s, a_s = t.gather(1, order), a.gather(1, order)
        cum_a, cum_c = a_s.cumsum(1), (a_s * t_s).cumsum(1)
        tot_a = cum_a[:, -1:]
        reach = t_s * (tot_a - cum_a) + cum_c  # w . d when the parameter equals t_s[j]
        j = (reach < bb[:, None]).sum(1)
        feasible = j < dim
        jm = (j - 1).clamp(min=0)
        zero = torch.zeros_like(bb)
        a_before = torch.where(j > 0, cum_a[ar, jm], zero)
        c_before = torch.where(j > 0, cum_c[ar, jm], zero)
        lam = (bb - c_before) / (tot_a[:, 0] - a_before).clamp_min(1e-300)
        lam = torch.maximum(lam, torch.where(j > 0, t_s[ar, jm], zero))
        lam = torch.minimum(lam, t_s[ar, j.clamp(max=dim - 1)])
        mag = torch.minimum(lam[:, None], t)
        if p == 2.0:
            mag = mag * aw
    mag = torch.where(feasible[:, None], mag, room)
    d = torch.sign(wf) * mag
    return d.reshape(w.shape).to(dtype)


def _linearise(model: Classifier, x: torch.Tensor, y: torch.Tensor, candidates: int,
               targets: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at ``x``, ``f_k = z_k - z_y`` ``(N, C)`` for the ``C`` highest-scoring classes
    besides the label (or the given targets, ``C = 1``) and their input gradients
    ``(N, C, ...)``: one forward and ``C`` backward passes per point."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model.logits(xg)
        if targets is not None:
            classes = targets[:, None]
        else:
            order = z.detach().clone()
            order.scatter_(1, y[:, None], -torch.inf)
            classes = order.topk(min(candidates, z.shape[1] - 1), dim=1).indices
        diff = z.gather(1, classes) - z.gather(1, y[:, None])
        c = classes.shape[1]
        grads = []
        for i in range(c):
            (g,) = torch.autograd.grad(diff[:, i].sum(), xg, retain_graph=i < c - 1)
            grads.append(g)
    model.n_backward += int(x.shape[0]) * c
    return z.detach(), diff.detach(), torch.stack(grads, 1)


@attack()
def fab(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
        steps: int = 100, restarts: int = 0, alpha_max: float = 0.1, eta: float = 1.05,
        beta: float = 0.9, candidates: int = 9, targets: torch.Tensor | None = None,
        tol: float = 1e-3, patience: int | None = None, refine: int = 10, seed: int = 0,
        tracker: BestAdversarial | None = None) -> torch.Tensor:
    """FAB minimal-norm adversarials; returns ``x`` itself where no adversarial was found.

    Args:
        norm: ``inf``, ``2`` or ``1``.
        steps: FAB steps per run at most (per active point: 1 forward + ``candidates``
            backward passes to linearise, 1 forward to test the new iterate).
        restarts: extra runs from random starts inside the ball of half the best distance.
        alpha_max: largest weight of the original point's projection in the combination.
        eta: extrapolation of both projections (``> 1`` steps past the linearised boundary).
        beta: pull-back factor towards the original after a successful step (``0 < beta < 1``).
        candidates: classes linearised per step, the highest-scoring ones besides the label
            (9: every class of a 10-class problem, as in the paper).
        targets: optional per-point class ``(N,)`` whose boundary alone is linearised (one
            backward pass per step); any misclassification still counts as adversarial.
        tol, patience: a broken point stops once its best distance has not improved by more
            than ``tol`` (relative) during ``patience`` steps (default ``max(10, steps // 5)``;
            0 disables).
        refine: forward-only bisection steps on the segment from ``x`` to the best adversarial
            at the end (0 disables).
        seed: seeds the random starts of the restarts.
    """
    q = dual_norm(p)
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if int(restarts) < 0:
        raise ValueError(f"restarts must be >= 0; got {restarts}")
    if not 0.0 <= alpha_max <= 1.0:
        raise ValueError(f"alpha_max must lie in [0, 1]; got {alpha_max}")
    if not eta >= 1.0:
        raise ValueError(f"eta must be >= 1; got {eta}")
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must lie in (0, 1); got {beta}")
    if int(candidates) < 1:
        raise ValueError(f"candidates must be >= 1; got {candidates}")
    patience = default_patience(steps, patience)
    n = x.shape[0]
    if targets is not None:
        targets = torch.as_tensor(targets).to(model.device)
        if targets.shape != (n,):
            raise ValueError(f"targets must have shape ({n},); got {tuple(targets.shape)}")
        if (targets == y).any():
            raise ValueError(f"targets must differ from the labels; target == label at "
                             f"{(targets == y).nonzero().squeeze(1).tolist()[:5]}")
    lo, hi = model.bounds
    tracker = tracker if tracker is not None else BestAdversarial(x, y, p)
    gen = generator_for(seed, x.device)
    lin0 = torch.zeros(n, dtype=x.dtype, device=x.device)  # first linearised distance
    ar = torch.arange(n, device=x.device)

    def run(start: torch.Tensor, active: torch.Tensor, first: bool) -> None:
        xi = start.clone()
        conv = Convergence(tracker, tol, patience)
        for k in range(int(steps)):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            xa, x0 = xi[rows], x[rows]
            z, f, w = _linearise(model, xa, y[rows], candidates,
                                 None if targets is None else targets[rows])
            tracker.update(xa, z, rows)
            wq = lp_norm(w.flatten(0, 1), q).reshape(f.shape)
            s = (f.abs() / wq.clamp_min(1e-12)).argmin(1)
            fs, ws = f[ar[:rows.numel()], s], w[ar[:rows.numel()], s]
            d_i = project_hyperplane_box(ws, -fs, lo - xa, hi - xa, p)
            b_x = -fs - (ws * (x0 - xa)).flatten(1).sum(1)
            d_x = project_hyperplane_box(ws, b_x, lo - x0, hi - x0, p)
            n_i, n_x = lp_norm(d_i, p), lp_norm(d_x, p)
            if first and k == 0:
                lin0[rows] = n_i
            a = expand((n_i / (n_i + n_x).clamp_min(1e-12)).clamp(max=alpha_max), xa)
            xn = torch.clamp((1 - a) * (xa + eta * d_i) + a * (x0 + eta * d_x), lo, hi)
            with torch.no_grad():
                zn = model.logits(xn)
            adv = tracker.update(xn, zn, rows)
            xi[rows] = torch.where(expand(adv, xn), x0 + beta * (xn - x0), xn)
            stop = conv.stale(k, rows)
            stop |= tracker.dist[rows] == 0  # misclassified clean input: nothing to search
            active[rows[stop]] = False

    run(x, torch.ones(n, dtype=torch.bool, device=x.device), first=True)
    for _ in range(int(restarts)):
        dist = tracker.dist.to(x.dtype)
        radius = torch.where(tracker.found, dist, lin0) / 2
        active = (radius > 0) & torch.isfinite(radius)
        if not active.any():
            break
        start = random_start(x, torch.where(active, radius, torch.zeros_like(radius)), p,
                             model.bounds, gen)
        run(start, active, first=False)
    line_search(model, tracker, refine)
    return torch.where(expand(tracker.found, x), tracker.best, x)

"""The affine attack of Tramèr & Boneh (NeurIPS 2019): one perturbation made of several l_p
components, each in its own ball.

For norms ``p_1..p_K`` with scales ``s_k`` and a weight vector ``lambda`` on the simplex, the
affine threat of size ``t`` is ``{x + sum_k delta_k : ||delta_k||_{p_k} <= lambda_k t s_k}``
intersected with the input box. Over all ``lambda`` it is the convex hull of the union of the
balls ``t s_k B_{p_k}`` (inside the box), so the *affine size* of a decomposition is
``sum_k ||delta_k||_{p_k} / s_k`` (the smallest ``t`` whose budgets hold it, at
``lambda_k`` proportional to ``||delta_k|| / s_k``).

:func:`affine_search` finds, per point and per ``lambda`` of a grid on the simplex, the smallest
``t`` at which :func:`affine_pgd` breaks the point (doubling then bisection over ``t``:
:func:`robcurves.attacks._search.search_eps`), and keeps per point the best over the grid. The
grid holds the simplex's vertices, where the attack is a per-norm PGD search, so the result is
never larger than the union of those per-norm searches.

:func:`affine_pgd` is PGD on the margin loss: every step moves each component along its own
steepest-ascent direction (:func:`~robcurves.attacks._core.steepest_step`, l1 with sparse
steps), projects it onto its own ball (:func:`~robcurves.attacks._core.project` with an
unbounded box), then projects the sum onto the input box by shrinking every component in the
coordinates where the sum leaves it (``delta_k <- c * delta_k`` with ``c in [0, 1]`` per
coordinate), which keeps a valid decomposition: shrinking a coordinate never grows a norm.
"""

from __future__ import annotations

import math

import torch

from .._box import max_radius
from .._norms import lp_norm
from ..model import Classifier, margin
from ._core import (
    BestAdversarial,
    box_mask,
    expand,
    generator_for,
    margin_loss,
    project,
    random_start,
    search_box,
    steepest_step,
)

__all__ = ["AffineBest", "affine_pgd", "affine_search", "simplex_grid"]

_FREE = (-math.inf, math.inf)


def simplex_grid(k: int, divisions: int) -> torch.Tensor:
    """All weight vectors ``(i_1, ..., i_k) / divisions`` with non-negative integers summing to
    ``divisions``, vertices first, as a float64 tensor ``(L, k)``."""
    def compositions(total: int, parts: int) -> list[tuple[int, ...]]:
        if parts == 1:
            return [(total,)]
        return [(i,) + rest for i in range(total, -1, -1)
                for rest in compositions(total - i, parts - 1)]

    pts = torch.tensor(compositions(divisions, k), dtype=torch.float64) / divisions
    vertex = (pts == 1).any(1)
    return torch.cat([pts[vertex], pts[~vertex]])


class AffineBest:
    """Per row, the adversarial of smallest affine size seen so far and its components.

    ``dist`` and ``found`` follow :class:`~robcurves.attacks._core.BestAdversarial` (what
    :func:`~robcurves.attacks._search.search_eps` reads); a candidate counts as adversarial
    under the same margin rule (``BestAdversarial.margin_tol``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, norms: tuple[float, ...],
                 scales: torch.Tensor) -> None:
        self.x, self.y, self.norms, self.scales = x, y, norms, scales
        self.best = x.clone()
        self.comps = x.new_zeros((len(norms),) + tuple(x.shape))
        self.dist = torch.full((x.shape[0],), math.inf, dtype=torch.float64, device=x.device)

    @property
    def found(self) -> torch.Tensor:
        return torch.isfinite(self.dist)

    def size(self, comps: torch.Tensor) -> torch.Tensor:
        """Affine size ``sum_k ||delta_k||_{p_k} / s_k`` per row (float64)."""
        return sum(lp_norm(comps[k].double(), p) / float(self.scales[k])
                   for k, p in enumerate(self.norms))

    def update(self, rows: torch.Tensor, comps: torch.Tensor, cand: torch.Tensor,
               logits: torch.Tensor) -> torch.Tensor:
        noise = BestAdversarial.margin_tol * logits.abs().amax(1).clamp_min(1.0)
        adv = margin(logits, self.y[rows]) < -noise
        d = self.size(comps)
        better = adv & (d < self.dist[rows])
        if better.any():
            r = rows[better]
            self.dist[r] = d[better]
            self.best[r] = cand[better]
            self.comps[:, r] = comps[:, better]
        return adv


def _box_shrink(x: torch.Tensor, comps: torch.Tensor, bounds: tuple[float, float]
                ) -> torch.Tensor:
    """Shrink the components coordinate-wise so that ``x + sum_k comps[k]`` lies in the box."""
    total = comps.sum(0)
    inside = (x + total).clamp(*bounds) - x
    c = torch.where(total != 0, inside / torch.where(total != 0, total, 1.0),
                    torch.ones_like(total)).clamp(0.0, 1.0)
    return comps * c


def affine_pgd(model: Classifier, x: torch.Tensor, y: torch.Tensor, norms: tuple[float, ...],
               eps: torch.Tensor, tracker: AffineBest, rows: torch.Tensor, *, steps: int = 20,
               step_size: float = 2.5, sparsity: float = 0.99,
               init: torch.Tensor | None = None) -> None:
    """PGD on the margin loss over ``x + sum_k delta_k``, ``||delta_k||_{p_k} <= eps[:, k]``.

    ``x``, ``y``: the rows attacked (``rows`` are their positions in ``tracker``); ``eps``:
    ``(n, K)`` per-row, per-component radii; ``init``: ``(K, n, ...)`` starting components
    (projected first). Each component steps ``step_size * eps_k / steps`` along its steepest
    ascent direction. A row stops at its first adversarial iterate, which ``tracker`` records
    with its components.
    """
    lo, hi = model.bounds
    n, k_norms = x.shape[0], len(norms)
    comps = x.new_zeros((k_norms,) + tuple(x.shape)) if init is None else init.clone()
    zero = torch.zeros_like(x)
    for k, p in enumerate(norms):
        comps[k] = project(comps[k], zero, eps[:, k], p, _FREE)
    comps = _box_shrink(x, comps, (lo, hi))
    alpha = eps * step_size / steps
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    for it in range(steps + 1):
        r = active.nonzero().squeeze(1)
        if r.numel() == 0:
            break
        xa = (x[r] + comps[:, r].sum(0)).clamp(lo, hi)
        if it == steps:
            with torch.no_grad():
                tracker.update(rows[r], comps[:, r], xa, model.logits(xa))
            break
        z, _, g = model.value_and_grad(xa, y[r], margin_loss)
        adv = tracker.update(rows[r], comps[:, r], xa, z)
        active[r[adv]] = False
        keep = ~adv
        r, xa, g = r[keep], xa[keep], g[keep]
        if r.numel() == 0:
            break
        g = box_mask(g, xa, (lo, hi))
        sub = comps[:, r]
        z0 = torch.zeros_like(xa)
        for k, p in enumerate(norms):
            step = expand(alpha[r, k], xa) * steepest_step(g, p, sparsity)
            sub[k] = project(sub[k] + step, z0, eps[r, k], p, _FREE)
        comps[:, r] = _box_shrink(x[r], sub, (lo, hi))


def affine_search(model: Classifier, x: torch.Tensor, y: torch.Tensor,
                  norms: tuple[float, ...], scales: tuple[float, ...], *, divisions: int = 4,
                  steps: int = 20, search_steps: int = 10, restarts: int = 0,
                  tol: float = 1e-3, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per point, the smallest affine size found over a simplex grid of weights.

    The vertices run the per-norm search :func:`~robcurves.attacks.pgd_search` (DeepFool
    start, epsilon doubling and bisection with PGD); every other weight vector of the grid
    starts from the point's best vertex adversarial and bisects ``t`` below it with
    :func:`affine_pgd` (or doubles ``t`` where no vertex broke the point).

    Returns ``(size, x_adv, comps, lam)``: float64 ``(N,)`` affine sizes (``0`` for
    misclassified points, ``inf`` where nothing was found), the adversarials (the clean input
    where none), their components ``(K, N, ...)`` and the weight row ``(N, K)`` that found
    each (NaN where none).
    """
    from ._search import pgd_search, search_eps

    n, k_norms = x.shape[0], len(norms)
    s = torch.tensor(scales, dtype=torch.float64, device=x.device)
    shape1 = (1,) * (x.ndim - 1)
    # vertices: the per-norm searches
    best = AffineBest(x, y, norms, s.to(x.dtype))
    lam_best = torch.full((n, k_norms), math.nan, dtype=torch.float64, device=x.device)
    for k, p in enumerate(norms):
        sub = BestAdversarial(x, y, p)
        pgd_search._run(model, x, y, p, steps=steps, search_steps=search_steps,
                        restarts=restarts, tol=tol, seed=seed, tracker=sub)
        size = sub.dist / scales[k]
        better = size < best.dist
        if better.any():
            best.dist[better] = size[better]
            best.best[better] = sub.best[better]
            best.comps[:, better] = 0.0
            best.comps[k, better] = sub.best[better] - x[better]
            lam_best[better] = torch.eye(k_norms, dtype=torch.float64, device=x.device)[k]
    lam = simplex_grid(k_norms, divisions).to(x.device)
    lam = lam[(lam < 1).all(1)]  # the interior and edges of the simplex
    n_l = lam.shape[0]
    if n_l:
        xr = x.repeat_interleave(n_l, dim=0)
        yr = y.repeat_interleave(n_l, dim=0)
        lam_r = lam.repeat(n, 1)  # row i * L + j holds point i, weights j
        tracker = AffineBest(xr, yr, norms, s.to(x.dtype))
        tracker.dist[:] = best.dist.repeat_interleave(n_l)
        tracker.best[:] = best.best.repeat_interleave(n_l, dim=0)
        tracker.comps[:] = best.comps.repeat_interleave(n_l, dim=1)
        gen = generator_for(seed, x.device)
        box = search_box(x, model.bounds)
        dim = x[0].numel()
        t_max = max(max_radius(dim, p, box) / sc for p, sc in zip(norms, scales, strict=True))
        t_max *= k_norms  # the centre of the simplex needs K times the vertex budgets

        def attempt(rows: torch.Tensor, t: torch.Tensor, warm: bool) -> None:
            eps = (lam_r[rows] * t[:, None] * s[None, :]).to(x.dtype)
            init = None
            if warm:
                ratio = (t / tracker.dist[rows]).clamp(max=1.0).to(x.dtype)
                init = tracker.comps[:, rows] * ratio.reshape((1, -1) + shape1)
            before = tracker.dist[rows].clone()
            affine_pgd(model, xr[rows], yr[rows], norms, eps, tracker, rows, steps=steps,
                       init=init)
            for _ in range(restarts):
                left_mask = tracker.dist[rows] >= before
                left = rows[left_mask]
                if left.numel() == 0:
                    break
                e_left = eps[left_mask]
                start = torch.stack([random_start(torch.zeros_like(xr[left]), e_left[:, k], p,
                                                  _FREE, gen)
                                     for k, p in enumerate(norms)])
                affine_pgd(model, xr[left], yr[left], norms, e_left, tracker, left,
                           steps=steps, init=start)

        search_eps(tracker, t_max / 256, t_max, attempt, search_steps=search_steps, tol=tol)
        d, j = tracker.dist.reshape(n, n_l).min(1)
        pick = torch.arange(n, device=x.device) * n_l + j
        better = d < best.dist
        if better.any():
            best.dist[better] = d[better]
            best.best[better] = tracker.best[pick[better]]
            best.comps[:, better] = tracker.comps[:, pick[better]]
            lam_best[better] = lam[j[better]]
    found = best.found
    x_adv = torch.where(expand(found, x), best.best, x)
    return best.dist, x_adv, best.comps, lam_best

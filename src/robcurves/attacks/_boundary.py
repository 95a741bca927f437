"""Boundary-attack refinement (after Brendel, Rauber & Bethge, 2018): a decision-based l2
random walk along the decision boundary that shrinks each point's adversarial perturbation.

Starting from adversarials (``x_init``, or HopSkipJump's when not given), every step of a
point draws a random direction orthogonal to its perturbation, moves on the sphere of its
current distance around ``x`` (the *spherical* step), then shrinks the perturbation by a
fraction (the *source* step). A candidate that is still adversarial replaces the current one.
Per point, the two step sizes adapt to their success (a 1/5-success rule for the source step,
1/2 for the spherical one). All state is per-point tensors; each step costs every active point
two label queries, counted towards ``budget`` (a hard per-point cap). Distances from
this attack are black-box upper bounds (``boundary.black_box is True``).
"""

from __future__ import annotations

import math

import torch

from .._norms import lp_norm
from ..model import Classifier
from ._core import attack, expand, generator_for
from ._hsja import LabelOracle, hsja

__all__ = ["boundary"]


@attack(norms=(2.0,))
def boundary(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
             steps: int = 1000, budget: int = 10000, init_queries: int | None = None,
             n_targets: int = 1, spherical_step: float = 0.05, source_step: float = 0.02,
             adapt: float = 1.5, seed: int = 0, x_init: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Refine l2 adversarials by a boundary random walk; ``x`` where none was found.

    Args:
        norm: only l2.
        steps: walk steps (two queries per active point each).
        budget: hard cap on label queries (model forward passes) per point, HopSkipJump's
            start included.
        init_queries: HopSkipJump budget for the start when ``x_init`` is None (default
            ``min(3000, budget // 3)``; with ``n_targets``, see
            :func:`~robcurves.attacks._hsja.hsja`).
        spherical_step: initial spherical step, relative to the current distance.
        source_step: initial fraction by which a step shrinks the perturbation.
        adapt: factor by which step sizes grow on success (and shrink on failure).
        seed: seeds the random directions (and HopSkipJump's start).
        x_init: starting adversarials (rows that are not adversarial stay unbroken).
    """
    max_queries = int(budget)
    init_queries = min(3000, max_queries // 3) if init_queries is None else int(init_queries)
    n = x.shape[0]
    lo_b, hi_b = model.bounds
    start_queries = 0
    if x_init is None:
        if init_queries > max_queries:
            raise ValueError(f"init_queries={init_queries} exceeds budget={max_queries}")
        before = model.n_forward
        x_init = hsja._run(model, x, y, 2.0, budget=init_queries, n_targets=n_targets,
                           seed=seed)
        start_queries = math.ceil((model.n_forward - before) / max(n, 1))
    xa = x_init.detach().to(x.device, x.dtype).clone()
    oracle = LabelOracle(model, y)
    oracle.queries += start_queries
    every = torch.arange(n, device=x.device)
    adv = oracle(xa, every)
    inside = ((xa >= lo_b) & (xa <= hi_b)).reshape(n, -1).all(1)
    dist = lp_norm((xa - x).double(), 2.0)
    live = adv & inside & (dist > 0)
    dist = torch.where(adv & inside, dist, torch.full_like(dist, math.inf))
    best = torch.where(expand(adv & inside, x), xa, x)
    sph = torch.full((n,), float(spherical_step), dtype=x.dtype, device=x.device)
    src = torch.full((n,), float(source_step), dtype=x.dtype, device=x.device)
    gen = generator_for(seed + 1, x.device)
    for _ in range(steps):
        rows = (live & (oracle.queries + 2 <= max_queries)).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        xr, cur = x[rows], best[rows]
        pert = cur - xr
        d = lp_norm(pert, 2.0)
        unit = pert / expand(d.clamp_min(1e-20), pert)
        eta = torch.randn(cur.shape, generator=gen, device=x.device, dtype=x.dtype)
        eta = eta - unit * expand((eta * unit).reshape(len(rows), -1).sum(1), eta)
        eta = eta / expand(lp_norm(eta, 2.0).clamp_min(1e-20), eta) * expand(sph[rows] * d, eta)
        on_sphere = cur + eta
        offset = on_sphere - xr
        on_sphere = xr + offset * expand(d / lp_norm(offset, 2.0).clamp_min(1e-20), offset)
        on_sphere = on_sphere.clamp(lo_b, hi_b)
        cand = (on_sphere + expand(src[rows], xr) * (xr - on_sphere)).clamp(lo_b, hi_b)
        both = oracle(torch.cat([on_sphere, cand]), torch.cat([rows, rows]))
        sph_ok, cand_ok = both[:len(rows)], both[len(rows):]
        sph[rows] = torch.where(sph_ok, sph[rows] * adapt, sph[rows] / adapt).clamp(1e-4, 1.0)
        src[rows] = torch.where(cand_ok, src[rows] * adapt,
                                src[rows] / adapt ** 0.25).clamp(1e-6, 0.5)
        nd = lp_norm((cand - xr).double(), 2.0)
        take = cand_ok & (nd < dist[rows])
        best[rows[take]] = cand[take]
        dist[rows[take]] = nd[take]
    return torch.where(expand(torch.isfinite(dist), x), best, x)


boundary.black_box = True

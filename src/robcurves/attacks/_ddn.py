"""Decoupled direction and norm (DDN; Rony et al., CVPR 2019), l2 only.

Each step ascends the cross-entropy by a normalised gradient step of length ``alpha`` (cosine
annealed), then rescales the perturbation onto the l2 sphere of radius ``eps``, which shrinks
by ``1 - gamma`` while the iterate is adversarial and grows by ``1 + gamma`` while it is not.
Gradient components pointing out of the box at saturated coordinates are zeroed before the
normalisation (box-aware step) and every queried iterate updates the per-point best.
"""

from __future__ import annotations

import torch

from .._norms import lp_norm
from ..model import Classifier
from ._core import (
    BestAdversarial,
    Convergence,
    attack,
    box_mask,
    box_radius,
    ce_loss,
    cosine,
    default_patience,
    expand,
    line_search,
    normalize,
    query_remaining,
)

__all__ = ["ddn"]


@attack(norms=(2.0,))
def ddn(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *, steps: int = 100,
        init_norm: float = 1.0, gamma: float = 0.05, alpha_init: float = 1.0,
        alpha_final: float = 0.01, tol: float = 1e-3, patience: int | None = None,
        refine: int = 10, tracker: BestAdversarial | None = None) -> torch.Tensor:
    """DDN adversarials in l2; returns ``x`` itself where no adversarial was found.

    Args:
        norm: must be l2 (accepted for the common attack signature).
        steps: gradient steps at most (one forward and one backward pass per active point).
        init_norm: starting radius ``eps`` (in input units).
        gamma: relative change of ``eps`` per step.
        alpha_init, alpha_final: absolute l2 step length, cosine annealed.
        tol, patience: a broken point stops once its best distance has not improved by more
            than ``tol`` (relative) during ``patience`` steps (default ``max(10, steps // 5)``;
            0 disables).
        refine: forward-only bisection steps towards ``x`` from the best adversarial, which
            removes the up to ``gamma`` overshoot of the radius (0 disables).
    """
    n = x.shape[0]
    lo, hi = model.bounds
    tracker = tracker if tracker is not None else BestAdversarial(x, y, 2.0)
    delta = torch.zeros_like(x)
    eps = torch.full((n,), float(init_norm), dtype=x.dtype, device=x.device)
    worst = box_radius(x, 2.0, model.bounds)
    conv = Convergence(tracker, tol, default_patience(steps, patience))
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    for k in range(steps):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        alpha = cosine(k, steps, alpha_init, alpha_final)
        xa = x[rows] + delta[rows]
        z, _, g = model.value_and_grad(xa, y[rows], ce_loss)
        adv = tracker.update(xa, z, rows)
        e = torch.where(adv, eps[rows] * (1 - gamma), eps[rows] * (1 + gamma))
        e = torch.minimum(e, worst[rows])
        eps[rows] = e
        d = delta[rows] + alpha * normalize(box_mask(g, xa, model.bounds), 2.0)
        d = d * expand(e / lp_norm(d, 2.0).clamp_min(1e-12), d)
        delta[rows] = torch.clamp(x[rows] + d, lo, hi) - x[rows]
        active[rows[conv.stale(k, rows)]] = False
    query_remaining(model, tracker, active, x + delta)
    line_search(model, tracker, refine)
    return torch.where(expand(tracker.found, x), tracker.best, x)

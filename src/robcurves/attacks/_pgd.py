"""Projected gradient descent at a fixed, per-sample epsilon (l_inf, l2, and l1 with sparse
steps). Used to train robust models and, inside :mod:`robcurves.attacks._search`, to find
minimal adversarial distances by bisection over epsilon."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..model import Classifier
from ._core import (
    BestAdversarial,
    attack,
    box_mask,
    ce_loss,
    expand,
    generator_for,
    margin_loss,
    per_point_eps,
    project,
    random_start,
    steepest_step,
)

__all__ = ["pgd"]

_LOSSES = {"ce": ce_loss, "margin": margin_loss}


@attack()
def pgd(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
        eps: torch.Tensor | float, steps: int = 20, step_size: float = 2.5,
        loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "ce",
        random_init: bool = False, x_init: torch.Tensor | None = None,
        seed: int | torch.Generator | None = 0, early_stop: bool = False, sparsity: float = 0.99,
        tracker: BestAdversarial | None = None) -> torch.Tensor:
    """PGD inside ``{x' : ||x' - x||_p <= eps, x' in model.bounds}``.

    Args:
        eps: radius, a float or a per-sample ``(N,)`` tensor.
        step_size: step length as a multiple of ``eps / steps`` (per sample).
        loss: ``"ce"`` (cross-entropy, for training), ``"margin"`` (``max_k z_k - z_y``) or a
            callable ``(logits, y) -> (N,)`` per-sample loss to ascend (for example TRADES' KL
            term); it is called on the rows still active, all rows unless ``early_stop``.
        random_init: start from a random point of the ball (else from ``x_init`` or ``x``).
        x_init: starting points (projected into the ball).
        seed: seeds the random start: an int, a ``torch.Generator`` used as it is (a training
            loop passes one, so that every batch draws new starts), or None (torch's global
            generator).
        early_stop: freeze points once misclassified (they cost nothing afterwards).
        sparsity: for l1, the step moves only coordinates whose |gradient| is in this top
            quantile (0.99: the top 1%), then projects onto the l1 ball and the box.

    Returns:
        The final iterates (adversarial or not); with ``early_stop`` the first
        misclassified iterate of each point.
    """
    if callable(loss):
        loss_fn = loss
    elif loss in _LOSSES:
        loss_fn = _LOSSES[loss]
    else:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable; got {loss!r}")
    n = x.shape[0]
    eps_t = per_point_eps(eps, x)
    alpha = eps_t * step_size / steps
    if x_init is not None:
        x_adv = project(x_init.to(x.device), x, eps_t, p, model.bounds)
    elif random_init:
        x_adv = random_start(x, eps_t, p, model.bounds, generator_for(seed, x.device))
    else:
        x_adv = x.clone()
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    for _ in range(steps):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        xa = x_adv[rows]
        z, _, g = model.value_and_grad(xa, y[rows], loss_fn)
        adv = z.argmax(1) != y[rows]
        if tracker is not None:
            tracker.update(xa, z, rows)
        if early_stop:
            active[rows[adv]] = False
            keep = ~adv
            rows, xa, g = rows[keep], xa[keep], g[keep]
            if rows.numel() == 0:
                break
        g = box_mask(g, xa, model.bounds)
        a = expand(alpha[rows], xa)
        step = a * steepest_step(g, p, sparsity)
        x_adv[rows] = project(xa + step, x[rows], eps_t[rows], p, model.bounds)
    if tracker is not None or early_stop:
        rows = active.nonzero().squeeze(1)
        if rows.numel():
            with torch.no_grad():
                z = model.logits(x_adv[rows])
            if tracker is not None:
                tracker.update(x_adv[rows], z, rows)
    return x_adv.detach()

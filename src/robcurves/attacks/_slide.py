"""SLIDE, the sparse l1 descent attack of Tramèr & Boneh (NeurIPS 2019).

The steepest l1 ascent direction moves one coordinate per step, which makes l1 PGD crawl; SLIDE
moves every coordinate whose |gradient| is at or above the ``percentile``-th percentile of the
point's |gradient| (99 by default), each by the sign of its gradient, scaled to a step of l1
length ``step_size``, then projects back onto the l1 ball intersected with the box (exactly,
:func:`robcurves.attacks._core.project_l1_box`). Coordinates at a box face whose gradient
points outside are left out before the percentile is taken (the paper's gradient clipping).

:func:`slide` attacks at a fixed, per-point eps; :func:`slide_search` (registered as
``"slide"`` in ``ATTACKS``) finds a minimal l1 distance by per-point bisection over eps, every
per-point quantity a tensor.
"""

from __future__ import annotations

import math

import torch

from .._norms import parse_norm
from ..model import Classifier
from ._core import (
    BestAdversarial,
    attack,
    box_mask,
    ce_loss,
    check_attack_inputs,
    expand,
    generator_for,
    margin_loss,
    project,
)
from ._search import search_eps

__all__ = ["slide", "slide_search", "slide_direction"]

_LOSSES = {"ce": ce_loss, "margin": margin_loss}


def _check_l1(norm: object) -> None:
    if parse_norm(norm) != 1.0:
        raise ValueError(f"SLIDE is an l1 attack; got norm {norm!r} (pass norm=1 or 'l1')")


def _check_percentile(percentile: float) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
            or not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be a number in [0, 100); got {percentile!r}")
    return float(percentile)


def _check_steps(name: str, v: object, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {v!r}")
    return v


def slide_direction(g: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """Unit-l1 SLIDE direction: ``sign(g)`` where ``|g| >= P_percentile(|g|)`` (per point, over
    its coordinates; never where ``g = 0``), divided by its l1 norm. Zero rows stay zero."""
    flat = g.reshape(g.shape[0], -1)
    a = flat.abs()
    thr = torch.quantile(a.float(), percentile / 100.0, dim=1, keepdim=True).to(a.dtype)
    e = torch.sign(flat) * ((a >= thr) & (a > 0))
    n = e.abs().sum(1, keepdim=True).clamp_min(1.0)
    return (e / n).reshape(g.shape)


@attack(norms=(1.0,))
def slide(model: Classifier, x: torch.Tensor, y: torch.Tensor, norm: float, *,
          eps: torch.Tensor | float, steps: int = 20, percentile: float = 99.0,
          step_size: float | None = None, loss: str = "ce", random_init: bool = False,
          seed: int = 0, tracker: BestAdversarial | None = None) -> torch.Tensor:
    """SLIDE inside ``{x' : ||x' - x||_1 <= eps, x' in model.bounds}``.

    Args:
        norm: must be l1 (kept in the common attack signature).
        eps: l1 radius, a float or a per-point ``(N,)`` tensor (>= 0).
        steps: iterations (the paper: 20 on MNIST... 60 on CIFAR).
        percentile: coordinates with |gradient| at or above this percentile move (99: about
            the top 1%).
        step_size: l1 length of each step; default ``eps / 10`` per point (the paper's
            ``eps_iter = 1`` at ``eps = 10``).
        loss: ``"ce"`` or ``"margin"``, ascended.
        random_init: start from a random point of the ball (seeded by ``seed``) instead of x.
        tracker: if given, every queried iterate updates this per-point best adversarial.

    Returns:
        The final iterates ``(N, ...)``, always inside the ball and the box; where a point was
        misclassified by some iterate and ``tracker`` is given, the tracker holds the closest.
    """
    _check_l1(norm)
    percentile = _check_percentile(percentile)
    steps = _check_steps("steps", steps)
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}; got {loss!r}")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    check_attack_inputs(model, x, y)
    x = x.detach().to(model.device)
    y = y.to(model.device)
    n = x.shape[0]
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(n).clone()
    if torch.isnan(eps_t).any() or (eps_t < 0).any():
        raise ValueError(f"eps must be >= 0; got min {float(eps_t.min())}")
    if step_size is None:
        alpha = eps_t / 10.0
    else:
        if not (step_size > 0 and math.isfinite(step_size)):
            raise ValueError(f"step_size must be a positive finite number; got {step_size!r}")
        alpha = torch.full_like(eps_t, float(step_size))
    x_adv = x.clone()
    if random_init:
        from ._pgd import random_start

        x_adv = random_start(x, eps_t, 1.0, model.bounds, generator_for(seed, x.device))
    loss_fn = _LOSSES[loss]
    for _ in range(steps):
        z, _, g = model.value_and_grad(x_adv, y, loss_fn)
        if tracker is not None:
            tracker.update(x_adv, z)
        g = box_mask(g, x_adv, model.bounds)
        step = expand(alpha, x_adv) * slide_direction(g, percentile)
        x_adv = project(x_adv + step, x, eps_t, 1.0, model.bounds)
    if tracker is not None:
        with torch.no_grad():
            tracker.update(x_adv, model.logits(x_adv))
    return x_adv.detach()


@attack(norms=(1.0,))
def slide_search(model: Classifier, x: torch.Tensor, y: torch.Tensor, norm: float, *,
                 steps: int = 20, percentile: float = 99.0, search_steps: int = 10,
                 tol: float = 1e-3, eps_start: float | None = None, seed: int = 0,
                 tracker: BestAdversarial | None = None) -> torch.Tensor:
    """Adversarials of (approximately) minimal l1 norm found with SLIDE; ``x`` where none was.

    Each point starts at ``eps_start`` (default: 1/256 of the box's l1 diameter) and doubles
    it until SLIDE breaks it or the whole box is covered; then it bisects between the largest
    eps where SLIDE failed and its closest verified adversarial for ``search_steps`` rounds (or
    until ``hi - lo <= tol * hi``). Distances are those of verified adversarials, so upper
    bounds.
    """
    _check_l1(norm)
    percentile = _check_percentile(percentile)
    steps = _check_steps("steps", steps)
    search_steps = _check_steps("search_steps", search_steps, low=0)
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive finite number; got {tol!r}")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    check_attack_inputs(model, x, y)
    x = x.detach().to(model.device)
    y = y.to(model.device)
    tracker = tracker or BestAdversarial(x, y, 1.0)
    with torch.no_grad():
        tracker.update(x, model.logits(x))  # misclassified points: distance 0
    lo_b, hi_b = model.bounds
    width = (hi_b - lo_b) if math.isfinite(hi_b - lo_b) else None
    eps_max = width * x[0].numel() if width is not None else math.inf
    if eps_start is None:
        if width is None:
            raise ValueError("unbounded inputs: pass eps_start (the first l1 radius to try)")
        eps_start = eps_max / 256
    if not (eps_start > 0 and math.isfinite(eps_start)):
        raise ValueError(f"eps_start must be a positive finite number; got {eps_start!r}")
    search_eps(tracker, float(eps_start), eps_max,
               lambda rows, eps, warm: _run(model, x, y, rows, eps, steps, percentile, seed,
                                            tracker),
               search_steps=search_steps, tol=tol)
    return torch.where(expand(tracker.found, x), tracker.best, x)


def _run(model: Classifier, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
         eps: torch.Tensor, steps: int, percentile: float, seed: int,
         tracker: BestAdversarial) -> None:
    """SLIDE at per-point ``eps`` on ``rows`` (margin loss), merging what it finds into
    ``tracker``."""
    sub = BestAdversarial(x[rows], y[rows], 1.0)
    sub.dist[:] = tracker.dist[rows]
    sub.best[:] = tracker.best[rows]
    slide._run(model, x[rows], y[rows], 1.0, eps=eps.to(x.dtype), steps=steps,
               percentile=percentile, loss="margin", seed=seed, tracker=sub)
    better = sub.dist < tracker.dist[rows]
    tracker.dist[rows[better]] = sub.dist[better]
    tracker.best[rows[better]] = sub.best[better]

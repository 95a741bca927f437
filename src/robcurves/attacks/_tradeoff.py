"""The outer binary search over the trade-off constant ``c`` that Carlini-Wagner (:mod:`._cw`)
and EAD (:mod:`._ead`) share.

Each round restarts an inner optimisation from the clean input and minimises ``distance +
c * max(margin, -kappa)`` per point for up to ``steps`` iterations. Afterwards ``c`` is bisected
per point: downwards where the round reached margin ``-kappa`` (a success), else it grows
tenfold until a first success, then is bisected upwards. The attacks differ only in the inner
step, given as a :class:`Round`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..model import Classifier, margin
from ._core import BestAdversarial, expand, line_search

__all__ = ["Round", "tradeoff_search"]

#: ``c`` above this means "no upper bound on c found yet" (the paper's 1e10)
_NO_UPPER = 1e10


class Round:
    """One round of an inner optimisation at fixed ``c`` (a subclass per attack).

    ``point(k, rows)`` is where the model is queried at iteration ``k`` (the gradient of the
    clamped margin ``f`` is taken there); ``step(k, rows, xa, f, g, c)`` advances the iterates of
    ``rows`` and returns the objective at ``xa``; ``last(rows)`` are the current iterates, which
    the model has not seen yet when the round ends.
    """

    def point(self, k: int, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, k: int, rows: torch.Tensor, xa: torch.Tensor, f: torch.Tensor,
             g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def last(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def clamped_margin(kappa: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """CW's ``f``: ``max(z_y - max_{k != y} z_k, -kappa)`` per sample."""
    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return margin(logits, y).clamp_min(-kappa)
    return loss


def _update_constants(c: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                      success: torch.Tensor) -> None:
    """One binary-search step on the per-point trade-off constants ``c`` (in place): bisect
    down where ``success``, else grow tenfold until an upper bound exists, then bisect up."""
    upper.copy_(torch.where(success, torch.minimum(upper, c), upper))
    lower.copy_(torch.where(success, lower, torch.maximum(lower, c)))
    bounded = upper < _NO_UPPER
    c.copy_(torch.where(bounded, (lower + upper) / 2, c * 10))


def _abort_stale(active: torch.Tensor, rows: torch.Tensor, obj: torch.Tensor,
                 tracker: BestAdversarial, check_loss: torch.Tensor,
                 check_dist: torch.Tensor) -> None:
    """The paper's early abort, checked every ``patience`` iterations: a point stops its round
    when its objective has not decreased since the last check and no closer adversarial was
    found (or it is already at distance 0)."""
    prev, dprev = check_loss[rows], check_dist[rows]
    stale = (obj >= prev - 1e-4 * prev.abs()) & (tracker.dist[rows] >= dprev)
    stale |= tracker.dist[rows] == 0
    check_loss[rows], check_dist[rows] = obj, tracker.dist[rows].clone()
    active[rows[stale]] = False


def tradeoff_search(model: Classifier, x: torch.Tensor, y: torch.Tensor,
                    tracker: BestAdversarial, new_round: Callable[[], Round], *, steps: int,
                    search_steps: int, c_init: float, kappa: float, abort_early: bool,
                    refine: int) -> torch.Tensor:
    """Run ``search_steps`` rounds (each from ``new_round()``) with per-point ``c`` starting at
    ``c_init``; every query updates ``tracker``; a final ``refine``-step line search. Returns
    the best adversarials (``x`` where none was found).

    ``abort_early``: every ``max(1, steps // 10)`` iterations a point ends its round if its
    objective has not decreased (by 1e-4 relative) since the last check and it found no closer
    adversarial; stopped points and clean misclassified points cost no passes.
    """
    n = x.shape[0]
    loss_fn = clamped_margin(float(kappa))
    patience = max(1, steps // 10)
    c = torch.full((n,), float(c_init), dtype=torch.float64, device=x.device)
    lower = torch.zeros_like(c)
    upper = torch.full_like(c, _NO_UPPER)
    for _ in range(search_steps):
        todo = tracker.dist != 0  # a misclassified clean point has nothing left to improve
        if not todo.any():
            break
        rnd = new_round()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        check_loss = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
        check_dist = torch.full_like(tracker.dist, math.inf)
        active = todo.clone()
        cx = c.to(x.dtype)
        for k in range(steps):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            xa = rnd.point(k, rows)
            z, f, g = model.value_and_grad(xa, y[rows], loss_fn)
            adv = tracker.update(xa, z, rows)
            success[rows] |= adv & (margin(z, y[rows]) <= -kappa)
            obj = rnd.step(k, rows, xa, f, g, cx[rows])
            if abort_early and k % patience == 0:
                _abort_stale(active, rows, obj, tracker, check_loss, check_dist)
        # the last iterates of the points still running have not been queried
        rows = active.nonzero().squeeze(1)
        if rows.numel():
            xa = rnd.last(rows)
            with torch.no_grad():
                z = model.logits(xa)
            adv = tracker.update(xa, z, rows)
            success[rows] |= adv & (margin(z, y[rows]) <= -kappa)
        _update_constants(c, lower, upper, success)
    line_search(model, tracker, refine)
    return torch.where(expand(tracker.found, x), tracker.best, x)

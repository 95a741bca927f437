"""Minimal adversarial distance by per-point bisection over epsilon with PGD (or APGD).

A DeepFool start gives each point an upper bound; points DeepFool cannot break get an
epsilon that doubles until PGD breaks them (from 1/256 of the box's l_p diameter up to the
diameter; for unbounded inputs, of the box :func:`~robcurves.attacks._core.search_box` derives
from the batch); then each point bisects between the largest
epsilon where PGD failed and the closest verified adversarial so far, warm-starting PGD from
that adversarial scaled into the smaller ball. All per-point state is tensors.

``inner="apgd"`` (:func:`apgd_search`, registered as ``"apgd-search"``) runs Auto-PGD
(:func:`robcurves.attacks._apgd.apgd`, margin loss) at each epsilon instead of fixed-step PGD.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._box import max_radius
from ..model import Classifier
from ._apgd import apgd
from ._core import BestAdversarial, attack, expand, generator_for, search_box
from ._deepfool import deepfool
from ._pgd import pgd

__all__ = ["pgd_search", "apgd_search"]

_INNER = ("pgd", "apgd")


@attack()
def pgd_search(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
               steps: int = 20, search_steps: int = 10, restarts: int = 0, tol: float = 1e-3,
               seed: int = 0, inner: str = "pgd", tracker: BestAdversarial | None = None
               ) -> torch.Tensor:
    """Adversarials of (approximately) minimal l_p norm; ``x`` itself where none was found.

    Args:
        steps: PGD (or APGD) iterations per epsilon tried.
        search_steps: bisection steps per point after the first adversarial is found.
        restarts: extra random-start PGD runs at each epsilon where the warm start failed.
        tol: a point stops once ``hi - lo <= tol * hi``.
        seed: seeds the random starts.
        inner: the fixed-epsilon attack run at each epsilon: ``"pgd"`` (fixed step
            ``2.5 eps / steps``) or ``"apgd"`` (Auto-PGD: step ``2 eps`` halved at checkpoints,
            momentum; l_inf, l2 and l1 with sparse steps).
    """
    if inner not in _INNER:
        raise ValueError(f"inner must be one of {', '.join(_INNER)}; got {inner!r}")
    gen = generator_for(seed, x.device)
    tracker = tracker or BestAdversarial(x, y, p)
    with torch.no_grad():
        z = model.logits(x)
    tracker.update(x, z)  # misclassified points: distance 0
    todo = ~tracker.found
    if todo.any():
        r = todo.nonzero().squeeze(1)
        sub = BestAdversarial(x[r], y[r], p)
        deepfool._run(model, x[r], y[r], p, tracker=sub)
        _merge(tracker, sub, r)

    # Points DeepFool missed: double epsilon until PGD breaks them or the box is exhausted.
    eps_max = max_radius(x[0].numel(), p, search_box(x, model.bounds))

    def attempt(rows: torch.Tensor, eps: torch.Tensor, warm: bool) -> None:
        _attempt(model, x, y, rows, eps, p, steps, restarts, tracker, gen, warm=warm,
                 inner=inner)

    search_eps(tracker, eps_max / 256, eps_max, attempt, search_steps=search_steps, tol=tol)
    return torch.where(expand(tracker.found, x), tracker.best, x)


@attack()
def apgd_search(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
                steps: int = 20, search_steps: int = 10, restarts: int = 0, tol: float = 1e-3,
                seed: int = 0, tracker: BestAdversarial | None = None) -> torch.Tensor:
    """:func:`pgd_search` with Auto-PGD at each epsilon (``inner="apgd"``)."""
    return pgd_search._run(model, x, y, p, steps=steps, search_steps=search_steps,
                           restarts=restarts, tol=tol, seed=seed, tracker=tracker, inner="apgd")


def search_eps(tracker: BestAdversarial, eps_start: float, eps_max: float,
               attempt: Callable[[torch.Tensor, torch.Tensor, bool], None], *,
               search_steps: int, tol: float, max_doublings: int = 64) -> None:
    """The per-point epsilon search of the minimal-norm search attacks, updating ``tracker``.

    Points not yet broken double their epsilon from ``eps_start`` (while it is at most
    ``eps_max``, at most ``max_doublings`` times) until ``attempt(rows, eps, warm=False)`` breaks
    them; then each point bisects between the largest epsilon that failed and its closest
    adversarial (``attempt(rows, mid, warm=True)``) for ``search_steps`` rounds, or until
    ``hi - lo <= tol * hi``. ``attempt`` runs a fixed-epsilon attack on ``rows`` at the per-point
    ``eps`` (float64) and merges what it finds into ``tracker``.
    """
    n = tracker.dist.shape[0]
    device = tracker.dist.device
    lo = torch.zeros(n, dtype=torch.float64, device=device)
    eps = torch.full((n,), float(eps_start), dtype=torch.float64, device=device)
    for _ in range(max_doublings):
        rows = (~tracker.found & (eps <= eps_max)).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        attempt(rows, eps[rows], False)
        failed = rows[~tracker.found[rows]]
        lo[failed] = eps[failed]
        eps[failed] = eps[failed] * 2
    for _ in range(search_steps):
        hi = tracker.dist
        rows = (torch.isfinite(hi) & (hi > 0) & (hi - lo > tol * hi)).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        mid = (lo[rows] + hi[rows]) / 2
        before = hi[rows].clone()
        attempt(rows, mid, True)
        failed = tracker.dist[rows] >= before
        lo[rows[failed]] = mid[failed]


def _merge(tracker: BestAdversarial, sub: BestAdversarial, rows: torch.Tensor) -> None:
    better = sub.dist < tracker.dist[rows]
    tracker.dist[rows[better]] = sub.dist[better]
    tracker.best[rows[better]] = sub.best[better]


def _attempt(model: Classifier, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
             eps: torch.Tensor, p: float, steps: int, restarts: int,
             tracker: BestAdversarial, gen: torch.Generator, warm: bool, inner: str = "pgd"
             ) -> None:
    """PGD (or APGD) at per-point ``eps`` on ``rows`` (warm-started from the best adversarial
    scaled into the ball when ``warm``), then random restarts for the rows it did not
    improve."""
    sub = BestAdversarial(x[rows], y[rows], p)
    sub.dist[:] = tracker.dist[rows]
    sub.best[:] = tracker.best[rows]
    start = None
    if warm:
        scale = (eps / tracker.dist[rows]).clamp(max=1.0).to(x.dtype)
        start = x[rows] + (tracker.best[rows] - x[rows]) * expand(scale, x[rows])
    before = sub.dist.clone()
    eps32 = eps.to(x.dtype)
    if inner == "apgd":
        apgd._run(model, x[rows], y[rows], p, eps=eps32, steps=steps, loss="margin",
                  x_init=start, random_init=False, tracker=sub)
    else:
        pgd._run(model, x[rows], y[rows], p, eps=eps32, steps=steps, loss="margin",
                 x_init=start, early_stop=True, tracker=sub)
    for _ in range(restarts):
        left = (sub.dist >= before).nonzero().squeeze(1)
        if left.numel() == 0:
            break
        sub_r = BestAdversarial(x[rows][left], y[rows][left], p)
        if inner == "apgd":
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=gen.device))
            apgd._run(model, x[rows][left], y[rows][left], p, eps=eps32[left], steps=steps,
                      loss="margin", random_init=True, seed=seed, tracker=sub_r)
        else:
            pgd._run(model, x[rows][left], y[rows][left], p, eps=eps32[left], steps=steps,
                     loss="margin", random_init=True, seed=gen, early_stop=True,
                     tracker=sub_r)
        _merge(sub, sub_r, left)
    _merge(tracker, sub, rows)

"""Auto-PGD (APGD; Croce & Hein, ICML 2020) at a fixed, per-point epsilon: l_inf, l2 and l1.

PGD without a step-size schedule to tune. Each point starts with step ``eta = 2 eps`` and
moves with momentum: ``z = P(x_k + eta * step(grad))``, then
``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))`` with ``alpha = 0.75``
(the first step is plain). At the checkpoints ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``,
``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` a point halves its step and
restarts from its best-loss iterate if (1) its loss increased in fewer than ``rho = 75%`` of
the steps since the previous checkpoint, or (2) its step was not halved at the previous
checkpoint and its best loss has not improved since. ``P`` is the projection onto the l_p
ball inside the box (:func:`robcurves.attacks._core.project`, exact for l_inf and l1).

Losses: cross-entropy, the margin ``max_k z_k - z_y`` and the difference-of-logits ratio
``(max_{k != y} z_k - z_y) / (z_pi1 - z_pi3)`` (DLR, invariant to shifting and scaling the
logits; needs 3 classes or more) and its targeted form for APGD-T,
``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` towards a given class ``t`` (4 classes or more).

Differences from the published algorithm:

* **Box-aware steps** as in :func:`robcurves.attacks._pgd.pgd`: gradient components pointing
  out of the box at saturated coordinates are zeroed before the step direction is formed.
* **l1** uses the sparse steepest step of :func:`~robcurves.attacks._pgd.pgd` (sign of the top
  1% of gradient coordinates, l1-normalised) with the exact l1-ball-and-box projection; it is
  *not* the adaptive-sparsity APGD-l1 of Croce & Hein (ICCV 2021).
* **Restart from the best iterate**: the gradient stored with that iterate is reused (no extra
  pass) and the momentum term restarts at zero.
* **Early stop and tracking**: with ``early_stop`` a point stops costing passes once an
  iterate is adversarial; every queried iterate updates the optional tracker.
"""

from __future__ import annotations

import math
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

__all__ = ["apgd", "dlr_loss", "dlr_targeted_loss", "checkpoints"]


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference-of-logits ratio ``(max_{k != y} z_k - z_y) / (z_pi1 - z_pi3 + 1e-12)``,
    ``pi`` sorting the logits in decreasing order (to ascend)."""
    if logits.shape[1] < 3:
        raise ValueError(f"the dlr loss needs at least 3 classes; the model has {logits.shape[1]}")
    top = logits.sort(dim=1, descending=True).values
    return margin_loss(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Targeted DLR ``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` (to ascend);
    ``labels`` is ``(N, 2)``: the true class and the target per point. Needs 4 classes or
    more."""
    if logits.shape[1] < 4:
        raise ValueError(f"the targeted dlr loss needs at least 4 classes; the model has "
                         f"{logits.shape[1]}")
    top = logits.sort(dim=1, descending=True).values
    zy = logits.gather(1, labels[:, :1]).squeeze(1)
    zt = logits.gather(1, labels[:, 1:]).squeeze(1)
    return (zt - zy) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss, "dlr-targeted": dlr_targeted_loss,
}


def checkpoints(steps: int) -> list[int]:
    """The steps ``w_j = ceil(p_j * steps)``, ``0 < w_j < steps``, where APGD may halve its
    step size."""
    ps = [0.0, 0.22]
    while True:
        nxt = ps[-1] + max(ps[-1] - ps[-2] - 0.03, 0.06)
        if nxt > 1.0:
            break
        ps.append(nxt)
    return sorted({w for w in (math.ceil(round(v * steps, 9)) for v in ps[1:]) if 0 < w < steps})


@attack()
def apgd(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
         eps: torch.Tensor | float, steps: int = 100, loss: str = "ce",
         x_init: torch.Tensor | None = None, random_init: bool = True, early_stop: bool = True,
         alpha: float = 0.75, rho: float = 0.75, sparsity: float = 0.99,
         seed: int | torch.Generator = 0, targets: torch.Tensor | None = None,
         tracker: BestAdversarial | None = None) -> torch.Tensor:
    """APGD inside ``{x' : ||x' - x||_p <= eps, x' in model.bounds}``.

    Args:
        norm: ``inf``, ``2`` or ``1``.
        eps: radius per point, an ``(N,)`` tensor (or a float for all points), in input units.
        steps: iterations at most (one forward and one backward pass per active point each,
            plus one forward at the end for the last iterate of the points still active).
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (``max_k z_k - z_y``), ``"dlr"`` or
            ``"dlr-targeted"`` (APGD-T; needs ``targets``).
        x_init: starting points (projected into the ball); else a random point of the ball
            (``random_init``, seeded by ``seed``) or ``x`` itself.
        early_stop: freeze a point at its first adversarial iterate.
        alpha: weight of the new projected gradient step against the previous update
            (momentum ``1 - alpha``).
        rho: checkpoint condition (1): halve if the loss increased in fewer than this fraction
            of the steps since the previous checkpoint.
        sparsity: l1 only: the step moves the top ``1 - sparsity`` fraction of coordinates.
        targets: per-point target class ``(N,)`` for ``loss="dlr-targeted"`` (any
            misclassification still counts as adversarial).

    Returns:
        Per point an adversarial inside the ball where one was found (the closest one queried;
        with ``early_stop`` the first), else the iterate of highest loss.
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}; got {loss!r}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1]; got {alpha}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must lie in [0, 1]; got {rho}")
    if (loss == "dlr-targeted") != (targets is not None):
        raise ValueError(f"targets go with loss='dlr-targeted' (and it needs them); got loss "
                         f"{loss!r} and targets {'given' if targets is not None else 'None'}")
    n = x.shape[0]
    labels = y  # what the loss sees: the label, or (label, target) pairs for APGD-T
    if targets is not None:
        targets = torch.as_tensor(targets).to(model.device)
        if targets.shape != (n,) or bool((targets == y).any()):
            raise ValueError(f"targets must have shape ({n},) and differ from the labels; got "
                             f"shape {tuple(targets.shape)}")
        labels = torch.stack([y, targets], 1)
    eps_t = per_point_eps(eps, x)
    loss_fn = _LOSSES[loss]
    bounds = model.bounds
    own = BestAdversarial(x, y, p)
    if x_init is not None:
        if x_init.shape != x.shape:
            raise ValueError(f"x_init must have the shape of x {tuple(x.shape)}; got "
                             f"{tuple(x_init.shape)}")
        xc = project(x_init.detach().to(x.device), x, eps_t, p, bounds)
    elif random_init:
        xc = random_start(x, eps_t, p, bounds, generator_for(seed, x.device))
    else:
        xc = x.clone()
    x_prev = xc.clone()
    step = 2 * eps_t
    f_prev = torch.full((n,), -math.inf, dtype=x.dtype, device=x.device)
    f_best = f_prev.clone()
    x_best, g_best = xc.clone(), torch.zeros_like(x)
    n_up = torch.zeros(n, dtype=torch.long, device=x.device)
    ck_step, ck_best = step.clone(), f_best.clone()
    checks, last_check = set(checkpoints(int(steps))), 0
    active = torch.ones(n, dtype=torch.bool, device=x.device)

    def record(rows: torch.Tensor, xa: torch.Tensor, z: torch.Tensor,
               f: torch.Tensor) -> torch.Tensor:
        # only a misclassified iterate can be adversarial (BestAdversarial asks for a margin
        # below minus a noise tolerance): show `own` those alone, not every step's images
        hit = (margin_loss(z, y[rows]) > 0).nonzero().squeeze(1)
        if hit.numel():
            own.update(xa[hit], z[hit], rows[hit])
        if tracker is not None:
            tracker.update(xa, z, rows)
        better = f > f_best[rows]
        f_best[rows[better]] = f[better]
        x_best[rows[better]] = xa[better]
        return better

    for k in range(int(steps)):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        xa = xc[rows]
        z, f, g = model.value_and_grad(xa, labels[rows], loss_fn)
        better = record(rows, xa, z, f)
        g_best[rows[better]] = g[better]
        if k > 0:
            n_up[rows] += (f > f_prev[rows]).long()
        else:
            ck_best[rows] = f_best[rows]
        f_prev[rows] = f
        if early_stop:
            hit = own.found[rows]
            active[rows[hit]] = False
            rows, xa, g = rows[~hit], xa[~hit], g[~hit]
            if rows.numel() == 0:
                break
        xp = x_prev[rows]
        if k in checks:
            cond1 = n_up[rows] < rho * (k - last_check)
            cond2 = (ck_step[rows] == step[rows]) & (ck_best[rows] == f_best[rows])
            halve = cond1 | cond2
            ck_step[rows], ck_best[rows] = step[rows], f_best[rows]
            step[rows[halve]] = step[rows[halve]] / 2
            h = expand(halve, xa)
            xa = torch.where(h, x_best[rows], xa)
            g = torch.where(h, g_best[rows], g)
            xp = torch.where(h, xa, xp)
            n_up[rows] = 0
            last_check = k
        x0, e = x[rows], eps_t[rows]
        direction = steepest_step(box_mask(g, xa, bounds), p, sparsity)
        zk = project(xa + expand(step[rows], xa) * direction, x0, e, p, bounds)
        if k > 0:
            zk = project(xa + alpha * (zk - xa) + (1 - alpha) * (xa - xp), x0, e, p, bounds)
        x_prev[rows] = xa
        xc[rows] = zk
    rows = active.nonzero().squeeze(1)
    if rows.numel():  # the last iterates have not been queried yet
        with torch.no_grad():
            z = model.logits(xc[rows])
        record(rows, xc[rows], z, loss_fn(z, labels[rows]))
    return torch.where(expand(own.found, x), own.best, x_best).detach()

"""DeepFool (Moosavi-Dezfooli et al., 2016) for l_inf, l2 and l1: iterated linearisation of the
decision boundary of the closest class. Cheap, and exact for affine classifiers when the box
does not bind; used as the starting point of the bisection search."""

from __future__ import annotations

import math

import torch

from .._norms import dual_norm
from ..model import Classifier
from ._core import BestAdversarial, attack, expand, line_search

__all__ = ["deepfool", "linear_targets"]


def _class_gradients(model: Classifier, x: torch.Tensor, y: torch.Tensor,
                     classes: torch.Tensor | int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at ``x``, the candidate classes ``(N, C)``, the differences ``f_k - f_y`` for them
    ``(N, C)`` and their input gradients ``(N, C, ...)``: one forward pass, and one backward
    pass per candidate class. ``classes`` is either the candidates or a count ``C``: the ``C``
    highest-scoring classes other than the label, read from this same forward pass."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model.logits(xg)
        if not isinstance(classes, torch.Tensor):
            order = z.detach().clone()
            order.scatter_(1, y[:, None], -torch.inf)
            classes = order.topk(min(int(classes), z.shape[1] - 1), dim=1).indices
        diff = z.gather(1, classes) - z.gather(1, y[:, None])
        grads = []
        for c in range(classes.shape[1]):
            (g,) = torch.autograd.grad(diff[:, c].sum(), xg, retain_graph=c < classes.shape[1] - 1)
            grads.append(g)
    model.n_backward += int(x.shape[0]) * classes.shape[1]
    return z.detach(), classes, diff.detach(), torch.stack(grads, 1)


def _min_step(f: torch.Tensor, w: torch.Tensor, p: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest l_p step ``r`` with ``f + w.r = 0`` for each candidate (``f < 0``), shaped like
    ``w``, and its l_p norm ``|f| / ||w||_q`` (the distance to each linearised boundary)."""
    flat = w.flatten(2)
    q = dual_norm(p)
    if q == math.inf:
        wq = flat.abs().amax(2)
    else:
        wq = torch.linalg.vector_norm(flat, ord=q, dim=2)
    scale = (f.abs() / wq.clamp_min(1e-12))  # (N, C): distance to each linearised boundary
    if p == math.inf:
        r = torch.sign(flat) * scale[..., None]
    elif p == 2.0:
        r = flat / wq.clamp_min(1e-12)[..., None] * scale[..., None]
    else:
        j = flat.abs().argmax(2, keepdim=True)
        r = torch.zeros_like(flat).scatter_(2, j, torch.sign(flat.gather(2, j)))
        r = r * scale[..., None]
    return r.reshape(w.shape), scale


@attack()
def deepfool(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
             steps: int = 50, overshoot: float = 0.02, candidates: int = 10,
             refine: int = 14, tracker: BestAdversarial | None = None) -> torch.Tensor:
    """Minimal-norm DeepFool; returns adversarials (``x`` itself where none was found).

    Args:
        steps: iterations at most (points stop once misclassified).
        overshoot: the accumulated step is scaled by ``1 + overshoot`` to cross the boundary.
        candidates: classes considered per step (the highest-scoring ones besides the label).
        refine: forward-only bisection steps on the segment from ``x`` to the adversarial, which
            removes the overshoot (0 disables). The boundary is then located to within
            ``2**-refine`` of the segment: 14 steps (6e-5) keep the distance reproducible to
            1e-4 when the same model is evaluated by another framework with float32 rounding.
    """
    lo, hi = model.bounds
    tracker = tracker or BestAdversarial(x, y, p)
    n = x.shape[0]
    r_tot = torch.zeros_like(x)
    x_adv = x.clone()
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    for _ in range(steps + 1):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        xa = x_adv[rows]
        with torch.no_grad():
            z0 = model.logits(xa)
        adv = tracker.update(xa, z0, rows)
        active[rows[adv]] = False
        rows, xa = rows[~adv], xa[~adv]
        if rows.numel() == 0 or _ == steps:
            break
        k = min(candidates, z0.shape[1] - 1)
        order = z0[~adv].clone()
        order.scatter_(1, y[rows, None], -torch.inf)
        classes = order.topk(k, dim=1).indices
        _, _, f, w = _class_gradients(model, xa, y[rows], classes)
        r, dist = _min_step(f, w, p)
        best = dist.argmin(1)
        step = r[torch.arange(rows.numel(), device=x.device), best]
        r_tot[rows] = r_tot[rows] + step
        x_adv[rows] = torch.clamp(x[rows] + (1 + overshoot) * r_tot[rows], lo, hi)
    line_search(model, tracker, refine)
    return torch.where(expand(tracker.found, x), tracker.best, x)


@attack()
def linear_targets(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
                   candidates: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes ranked by the linearised l_p distance to their decision boundary at ``x``.

    One forward pass and ``candidates`` backward passes per point (the highest-scoring classes
    other than the label are the candidates). Returns ``(classes, distances)``, both
    ``(N, candidates)``, sorted by increasing distance ``|z_k - z_y| / ||grad(z_k - z_y)||_q``.
    Not an attack, but called the same way (``linear_targets(model, x, y, norm, *,
    candidates)``).
    """
    classes, dist, _ = _ranking(model, x, y, p, candidates)
    return classes, dist


_AtX = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _ranking(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, candidates: int
             ) -> tuple[torch.Tensor, torch.Tensor, _AtX]:
    """``linear_targets``, also returning what it computed at ``x``: the logits ``(N, K)``, and
    in the ranked order the differences ``f_k - f_y`` ``(N, C)`` and their gradients
    ``(N, C, ...)`` (``auto`` starts its runs from them)."""
    z, classes, f, w = _class_gradients(model, x, y, int(candidates))
    _, dist = _min_step(f, w, p)
    dist, rank = dist.sort(dim=1)
    w = w.gather(1, rank.reshape(rank.shape + (1,) * (w.ndim - 2)).expand_as(w))
    return classes.gather(1, rank), dist, (z, f.gather(1, rank), w)

"""CROWN-style backward linear relaxation and IBP margins, and the per-point radius search.

The input domain of point ``x`` with radius ``eps`` is ``{x' : ||x' - x||_p <= eps,
lo <= x' <= hi}`` (the l_p ball intersected with the input box). A linear function
``a . x' + c`` is bounded below over that set by :func:`concretize_lower`: exactly for l_inf (a
box) and l1 (a fractional knapsack, solved by sorting), and for l2 by a Lagrangian dual bound
that is valid for every multiplier and maximised by bisection (never below the plain ball or box
bounds).

:func:`crown_margins` bounds the margins ``f_y(x') - f_k(x')`` for all ``k != y`` from below:
every ReLU's input bounds are computed by a backward pass from that layer (intersected with IBP),
unstable ReLUs use the triangle's upper line and the adaptive lower line (slope 1 if
``u > -l`` else 0). :func:`certified_radius` bisects, per point, the largest eps at which all
margins are certified positive.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._box import max_radius
from ._layers import Affine, ReLU, Step
from .ibp import ibp_steps

__all__ = ["concretize_lower", "crown_margins", "ibp_margins", "preactivation_bounds",
           "certified_radius", "input_box"]

_CHUNK_ELEMENTS = 2 ** 24  # largest (rows x input size) block of coefficients built at once


def input_box(x: torch.Tensor, eps: torch.Tensor, bounds: tuple[float, float]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Box hull ``[max(x - eps, lo), min(x + eps, hi)]`` of the domain (any l_p ball)."""
    e = eps.reshape((-1,) + (1,) * (x.ndim - 1))
    return (x - e).clamp_min(bounds[0]), (x + e).clamp_max(bounds[1])


def concretize_lower(a: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, p: float,
                     bounds: tuple[float, float], l2_iters: int = 30) -> torch.Tensor:
    """Lower bound of ``min a . x'`` over ``||x' - x||_p <= eps`` and ``lo <= x' <= hi``.

    Args:
        a: coefficients ``(N, K, *input_shape)``.
        x: centres ``(N, *input_shape)`` inside the box.
        eps: radii ``(N,)``, ``>= 0``.
        p: ``math.inf``, ``2.0`` or ``1.0``.
    Returns:
        ``(N, K)``: exact for l_inf and l1, a valid (dual) lower bound for l2.
    """
    n, k = a.shape[:2]
    a = a.reshape(n, k, -1)
    xf = x.reshape(n, 1, -1)
    e = eps.reshape(n, 1)
    base = (a * xf).sum(-1)  # a . x
    dlo, dhi = bounds[0] - xf, bounds[1] - xf  # box on delta (<= 0 <= )
    if p == math.inf:
        el = e[:, :, None]
        lo_d, hi_d = torch.maximum(-el, dlo), torch.minimum(el, dhi)
        return base + (a.clamp_min(0) * lo_d + a.clamp_max(0) * hi_d).sum(-1)
    # room in the direction that decreases a . delta
    room = torch.where(a > 0, -dlo, torch.where(a < 0, dhi, torch.zeros_like(a)))
    if p == 1.0:
        mag, order = a.abs().sort(dim=-1, descending=True)
        r = room.expand_as(a).gather(-1, order)
        before = r.cumsum(-1) - r
        take = torch.minimum((e[:, :, None] - before).clamp_min(0), r)
        return base - (mag * take).sum(-1)
    if p != 2.0:
        raise ValueError(f"unsupported norm {p}; expected inf, 2 or 1")
    # l2: for any t > 0, d(t) = clip(-a t, dlo, dhi) minimises a.d + (|d|^2 - eps^2) / (2t)
    # over the box, a lower bound on the constrained minimum (weak duality).
    corner = torch.where(a > 0, dlo, torch.where(a < 0, dhi, torch.zeros_like(a)))
    box_bound = (a * corner).sum(-1)
    anorm = a.norm(dim=-1)
    ball_bound = -e * anorm
    corner_fits = corner.norm(dim=-1) <= e
    safe_a = torch.where(a.abs() > 0, a.abs(), torch.ones_like(a))
    t_max = torch.where(a.abs() > 0, corner.abs() / safe_a, torch.zeros_like(a)).amax(-1)
    t_lo = (e / anorm.clamp_min(1e-300)).clamp_min(1e-300)
    t_hi = torch.maximum(t_max, t_lo)
    log_lo, log_hi = t_lo.log(), t_hi.log()

    def dual(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.minimum(torch.maximum(-a * t[:, :, None], dlo), dhi)
        sq = (d * d).sum(-1)
        return (a * d).sum(-1) + (sq - e * e) / (2 * t), sq

    for _ in range(l2_iters):
        mid = (log_lo + log_hi) / 2
        _, sq = dual(mid.exp())
        inside = sq <= e * e
        log_lo = torch.where(inside, mid, log_lo)
        log_hi = torch.where(inside, log_hi, mid)
    g, _ = dual(log_lo.exp())
    best = torch.maximum(torch.maximum(g, ball_bound), box_bound)
    best = torch.where(corner_fits, box_bound, best)  # the box corner is feasible: exact
    return base + best


def _relax(a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``a . relu(z)`` by a linear lower bound in ``z``: ``(a', const)``."""
    n, k = a.shape[:2]
    lo, hi = lo[:, None], hi[:, None]
    active, dead = lo >= 0, hi <= 0
    unstable = ~(active | dead)
    denom = torch.where(unstable, hi - lo, torch.ones_like(hi))
    up_slope = torch.where(active, torch.ones_like(hi),
                           torch.where(unstable, hi / denom, torch.zeros_like(hi)))
    up_const = torch.where(unstable, -up_slope * lo, torch.zeros_like(hi))
    low_slope = torch.where(active | (unstable & (hi > -lo)), torch.ones_like(hi),
                            torch.zeros_like(hi))
    a_pos, a_neg = a.clamp_min(0), a.clamp_max(0)
    const = (a_neg * up_const).reshape(n, k, -1).sum(-1)
    return a_pos * low_slope + a_neg * up_slope, const


def _backward(steps: list[Step], upto: int, a: torch.Tensor,
              pre: dict[int, tuple[torch.Tensor, torch.Tensor]]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Push coefficients ``a`` on the output of ``steps[:upto]`` back to the input."""
    const = a.new_zeros(a.shape[:2])
    for i in reversed(range(upto)):
        s = steps[i]
        if isinstance(s, ReLU):
            a, c = _relax(a, *pre[i])
        else:
            assert isinstance(s, Affine)
            a, c = s.backward(a)
        const = const + c
    return a, const


def preactivation_bounds(steps: list[Step], x: torch.Tensor, eps: torch.Tensor, p: float,
                         bounds: tuple[float, float], method: str = "crown"
                         ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Bounds ``(lower, upper)`` on the input of every ReLU step ``i`` (keyed by ``i``).

    ``method="ibp"`` uses interval arithmetic on the box hull of the domain; ``"crown"`` runs
    a backward pass from each ReLU layer (in chunks of neurons) and intersects with IBP.
    """
    lo_in, hi_in = input_box(x, eps, bounds)
    _, _, ibp_pre = ibp_steps(steps, lo_in, hi_in, keep=True)
    relu_idx = [i for i, s in enumerate(steps) if isinstance(s, ReLU)]
    pre = dict(zip(relu_idx, ibp_pre, strict=True))
    if method == "ibp":
        return pre
    n = x.shape[0]
    for i in relu_idx:
        shape = steps[i].in_shape
        m = math.prod(shape)
        lo_i, hi_i = (t.reshape(n, m).clone() for t in pre[i])
        # only neurons that are unstable for some point need a backward pass
        rows_all = ((lo_i < 0) & (hi_i > 0)).any(0).nonzero().reshape(-1)
        width = max(math.prod(s.in_shape) for s in steps[: i + 1])
        chunk = max(1, _CHUNK_ELEMENTS // max(1, n * width * 2))
        for start in range(0, rows_all.numel(), chunk):
            rows = rows_all[start:start + chunk]
            r = rows.numel()
            eye = torch.zeros((r, m), dtype=x.dtype, device=x.device)
            eye[torch.arange(r), rows] = 1.0
            a = torch.cat([eye, -eye]).reshape((1, 2 * r) + shape).expand((n, 2 * r) + shape)
            a_in, const = _backward(steps, i, a, pre)
            val = concretize_lower(a_in, x, eps, p, bounds) + const
            lo_i[:, rows] = torch.maximum(lo_i[:, rows], val[:, :r])
            hi_i[:, rows] = torch.minimum(hi_i[:, rows], -val[:, r:])
        hi_i = torch.maximum(hi_i, lo_i)
        pre[i] = (lo_i.reshape((n,) + shape), hi_i.reshape((n,) + shape))
    return pre


def _spec(y: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N, K-1, K)`` rows ``e_y - e_j`` for ``j != y``."""
    n = y.shape[0]
    others = torch.arange(k, device=y.device)[None].expand(n, k)
    others = others[others != y[:, None]].reshape(n, k - 1)
    c = torch.zeros((n, k - 1, k), dtype=dtype, device=y.device)
    c.scatter_(2, y[:, None, None].expand(n, k - 1, 1), 1.0)
    c.scatter_(2, others[:, :, None], -1.0)
    return c


def crown_margins(steps: list[Step], x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                  p: float, bounds: tuple[float, float]) -> torch.Tensor:
    """Lower bounds ``(N, K-1)`` on ``f_y - f_k`` over each point's domain (CROWN)."""
    pre = preactivation_bounds(steps, x, eps, p, bounds, "crown")
    c = _spec(y, steps[-1].out_shape[0], x.dtype)
    a_in, const = _backward(steps, len(steps), c, pre)
    return concretize_lower(a_in, x, eps, p, bounds) + const


def ibp_margins(steps: list[Step], x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                p: float, bounds: tuple[float, float]) -> torch.Tensor:
    """Lower bounds ``(N, K-1)`` on ``f_y - f_k`` by IBP on the box hull of the domain.

    The margin matrix is folded into the affine steps after the last ReLU, so those steps are
    bounded exactly for the interval reaching them.
    """
    last = max((i for i, s in enumerate(steps) if isinstance(s, ReLU)), default=-1) + 1
    lo_in, hi_in = input_box(x, eps, bounds)
    lo, hi, _ = ibp_steps(steps[:last], lo_in, hi_in)
    c = _spec(y, steps[-1].out_shape[0], x.dtype)
    a, const = _backward(steps[last:], len(steps) - last, c, {})
    n, k = a.shape[:2]
    mid = ((hi + lo) / 2).reshape(n, 1, -1)
    rad = ((hi - lo) / 2).reshape(n, 1, -1)
    a = a.reshape(n, k, -1)
    return (a * mid).sum(-1) - (a.abs() * rad).sum(-1) + const


MARGINS: dict[str, Callable] = {"crown": crown_margins, "ibp": ibp_margins}


def certified_radius(steps: list[Step], x: torch.Tensor, y: torch.Tensor, p: float,
                     bounds: tuple[float, float], method: str = "crown",
                     upper: torch.Tensor | None = None, iters: int = 14) -> torch.Tensor:
    """Per-point largest certified radius found by bisection (a lower bound on ``d*``).

    Args:
        steps: flattened network (float64 recommended).
        x, y: points inside the box and their labels; points the network misclassifies get 0.
        upper: optional per-point upper brackets (e.g. attack distances; ``inf`` = none).
            Without one the bracket is the radius covering the whole box, and a point certified
            on the whole box gets ``+inf`` (no adversarial exists inside the bounds).
        iters: bisection steps (the result is within ``bracket / 2**iters`` below the largest
            radius the method certifies).
    """
    margins = MARGINS[method]
    n = x.shape[0]
    with torch.no_grad():
        out = x
        for s in steps:
            out = s.forward(out)
        correct = out.argmax(1) == y
        box = max_radius(x[0].numel(), p, bounds)
        hi = torch.full((n,), box, dtype=x.dtype, device=x.device)
        if upper is not None:
            u = upper.to(dtype=x.dtype, device=x.device)
            hi = torch.where(torch.isfinite(u), torch.minimum(u, hi), hi)
        hi0 = hi.clone()
        cert_hi = margins(steps, x, y, hi, p, bounds).amin(1) > 0
        lo = torch.zeros_like(hi)
        for _ in range(iters):
            mid = (lo + hi) / 2
            ok = margins(steps, x, y, mid, p, bounds).amin(1) > 0
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        radius = torch.where(cert_hi, hi0, lo)
        whole_box = cert_hi & (hi0 >= box)
        radius = torch.where(whole_box, torch.full_like(radius, math.inf), radius)
        return torch.where(correct, radius, torch.zeros_like(radius))

"""The Maximum Margin Regulariser (MMR) of Croce, Andriushchenko & Hein (2019) and its universal
variant of Croce & Hein (2020).

Inside the linear region of a ReLU network that contains ``x`` (the region of its activation
pattern), every pre-activation is affine: ``z_j(x') = v_j . x' + c_j``, and so are the logits
``f_k(x') = V_k . x' + c_k``. The l_p distance from ``x`` to the hyperplane of hidden unit ``j``
is ``d_B = |z_j(x)| / ||v_j||_q`` and to the decision hyperplane between the true class ``y`` and
class ``k`` it is ``d_D = (f_y(x) - f_k(x)) / ||V_y - V_k||_q``, with ``1/p + 1/q = 1``. MMR is

    (1/k_B) sum over the k_B smallest d_B of max(0, 1 - d_B / gamma_B)
  + (1/k_D) sum over the k_D smallest d_D of max(0, 1 - d_D / gamma_D)

(the true class has no decision hyperplane and contributes 0). The ``v_j`` are computed all at
once by passing an identity batch (one image per input coordinate) through the network with each
point's ReLU pattern fixed: a forward-mode Jacobian of the region's affine map, differentiable
with respect to the parameters. Points are processed in chunks under activation checkpointing,
so the memory held for the backward pass is one chunk's Jacobians.
"""

from __future__ import annotations

import math

import torch

from ..certificates._layers import Affine, ReLU, Step

__all__ = ["region_geometry", "region_distances", "mmr_terms", "hinge_topk"]

_SMALL_JACOBIANS = 2 ** 22  # batch x input size x widest layer kept without checkpointing
_STABLE = 1e-12  # floor of a hyperplane normal's norm (a zero normal: the unit is constant)


def region_geometry(steps: list[Step], x: torch.Tensor
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Pre-activations and their input gradients in each point's linear region.

    Returns ``(zs, vs, logits, v_out)``: for every ReLU step, ``z`` ``(N, m)`` and ``v``
    ``(N, m, d)`` (``d`` the input size); the logits ``(N, K)`` and their gradients
    ``(N, K, d)``. The region is the activation pattern ``z > 0``.
    """
    n = x.shape[0]
    in_shape = steps[0].in_shape
    d = math.prod(in_shape)
    h = x
    jac = torch.eye(d, dtype=x.dtype, device=x.device).reshape((d,) + in_shape)
    shared = True  # before the first ReLU the Jacobian is the same for every point
    zs, vs = [], []
    for s in steps:
        if isinstance(s, ReLU):
            m = math.prod(s.in_shape)
            per_point = (jac.reshape(1, d, m).expand(n, d, m) if shared
                         else jac.reshape(n, d, m))
            zs.append(h.reshape(n, m))
            vs.append(per_point.transpose(1, 2))
            mask = (h > 0).to(h.dtype)
            h = h * mask
            jac = (per_point * mask.reshape(n, 1, m)).reshape((n * d,) + s.in_shape)
            shared = False
        else:
            assert isinstance(s, Affine)
            h = s.forward(h)
            jac = s.linear(jac)
    k = h.reshape(n, -1).shape[1]
    v_out = (jac.reshape(1, d, k).expand(n, d, k) if shared else jac.reshape(n, d, k))
    return zs, vs, h.reshape(n, k), v_out.transpose(1, 2)


def region_distances(steps: list[Step], x: torch.Tensor, y: torch.Tensor, q: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d_B, d_D)``: l_p distances (``q`` the dual exponent) from each point to the hyperplane
    of every hidden unit ``(N, H)`` and to every decision hyperplane ``(N, K)`` inside its
    linear region (``d_D`` is ``+inf`` at the true class; negative for misclassified points)."""
    zs, vs, logits, v_out = region_geometry(steps, x)
    return _distances(zs, vs, logits, v_out, y, (q,))[0]


def _distances(zs, vs, logits, v_out, y, qs):
    out = []
    fy = logits.gather(1, y[:, None])
    vy = v_out[torch.arange(y.shape[0], device=y.device), y][:, None]
    true = torch.nn.functional.one_hot(y, logits.shape[1]).bool()
    for q in qs:
        parts = [z.abs() / v.norm(p=q, dim=-1).clamp_min(_STABLE)
                 for z, v in zip(zs, vs, strict=True)]
        d_b = torch.cat(parts, 1) if parts else logits.new_zeros((len(y), 0))
        d_d = (fy - logits) / (vy - v_out).norm(p=q, dim=-1).clamp_min(_STABLE)
        out.append((d_b, d_d.masked_fill(true, math.inf)))
    return out


def hinge_topk(dist: torch.Tensor, gamma: float, k: int) -> torch.Tensor:
    """Per point: the sum of ``max(0, 1 - d / gamma)`` over its ``k`` smallest distances,
    divided by ``k`` ``(N,)``."""
    k = min(int(k), dist.shape[1])
    if k <= 0:
        return dist.new_zeros(dist.shape[0])
    hinge = (1 - dist / gamma).clamp_min(0)
    return hinge.topk(k, dim=1).values.sum(1) / k


def _union_hinges(dists: list[torch.Tensor], gammas: list[float], weights: list[float],
                  k: int) -> torch.Tensor:
    """MMR-Universal's region term: the units among the ``k`` nearest in *some* norm; each
    contributes its hinge in every norm (weighted), the sum divided by ``k``."""
    k = min(int(k), dists[0].shape[1])
    if k <= 0:
        return dists[0].new_zeros(dists[0].shape[0])
    chosen = torch.zeros_like(dists[0], dtype=torch.bool)
    for dist in dists:
        idx = dist.detach().topk(k, dim=1, largest=False).indices
        chosen.scatter_(1, idx, True)
    total = dists[0].new_zeros(dists[0].shape[0])
    for dist, g, w in zip(dists, gammas, weights, strict=True):
        total = total + w * ((1 - dist / g).clamp_min(0) * chosen).sum(1)
    return total / k


def mmr_terms(steps: list[Step], x: torch.Tensor, y: torch.Tensor, qs: tuple[float, ...],
              gamma_b: tuple[float, ...], gamma_d: tuple[float, ...],
              weights: tuple[float, ...], k_b: int, k_d: int, chunk: int = 16) -> torch.Tensor:
    """Per-point regulariser ``(N,)`` for the dual exponents ``qs``.

    One norm (``len(qs) == 1``): MMR, ``weights[0] * (region term + decision term)``. Several
    (MMR-Universal, ``qs = (inf, 1.0)`` for l1 and l_inf): the region term sums over the units
    among the ``k_b`` nearest in any of the norms, each norm's hinges weighted; the decision
    term is the weighted sum of each norm's term. Computed ``chunk`` points at a time under
    activation checkpointing (same values and gradients, less memory) when the batch's Jacobians
    are large."""
    def part(xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        zs, vs, logits, v_out = region_geometry(steps, xc)
        ds = _distances(zs, vs, logits, v_out, yc, qs)
        if len(qs) == 1:
            d_b, d_d = ds[0]
            return weights[0] * (hinge_topk(d_b, gamma_b[0], k_b)
                                 + hinge_topk(d_d, gamma_d[0], k_d))
        reg = _union_hinges([d[0] for d in ds], list(gamma_b), list(weights), k_b)
        for (_, d_d), g, w in zip(ds, gamma_d, weights, strict=True):
            reg = reg + w * hinge_topk(d_d, g, k_d)
        return reg

    d = math.prod(steps[0].in_shape)
    widest = max(math.prod(s.in_shape) for s in steps)
    if x.shape[0] * d * widest <= _SMALL_JACOBIANS:
        return part(x, y)  # small enough to keep: no recomputation
    from torch.utils.checkpoint import checkpoint  # slow to import: only when needed

    outs = []
    for i in range(0, x.shape[0], chunk):
        xc, yc = x[i:i + chunk], y[i:i + chunk]
        outs.append(checkpoint(part, xc, yc, use_reentrant=False) if torch.is_grad_enabled()
                    else part(xc, yc))
    return torch.cat(outs)

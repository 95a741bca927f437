"""The Maximum Margin Regulariser (MMR) of Croce, Andriushchenko & Hein (2019) and its universal
variant of Croce & Hein (2020).

Inside the linear region of a ReLU network that contains ``x`` (the region of its activation
pattern), every pre-activation is affine: ``z_j(x') = v_j . x' + c_j``, and so are the logits
``f_k(x') = V_k . x' + c_k``. The l_p distance from ``x`` to the hyperplane of hidden unit ``j``
is ``d_B = |z_j(x)| / ||v_j||_q`` and to the decision hyperplane between the true class ``y`` and
class ``k`` it is ``d_D = (f_y(x) - f_k(x)) / ||V_y - V_k||_q``, with ``1/p + 1/q = 1``. MMR is

    (1/k_B) sum over the k_B smallest d_B of max(0, 1 - d_B / gamma_B)
  + (1/k_D) sum over the k_D smallest d_D of max(0, 1 - d_D / gamma_D)

(the true class has no decision hyperplane and contributes 0). In general the ``v_j`` are
computed all at once by passing an identity batch (one image per input coordinate) through the
network with each point's ReLU pattern fixed: a forward-mode Jacobian of the region's affine map,
differentiable with respect to the parameters (:func:`region_geometry`). Networks that start
``Conv, ReLU, Conv, ReLU, Flatten, Linear`` (``cnn-small``) take an exact shortcut that skips the
zeros of that batch: a first-layer normal is its kernel at its receptive field, a second-layer
normal lives on its receptive-field window, and only from the first dense layer on are the
normals input-sized (:func:`_conv_geometry`; same values and gradients up to rounding, several
times faster). Points are processed in chunks under activation checkpointing, so the memory held
for the backward pass is one chunk's Jacobians.
"""

from __future__ import annotations

import math

import torch

from ..certificates._layers import Affine, ReLU, Step, _Conv, _Linear, _Reshape

__all__ = ["region_geometry", "region_distances", "mmr_terms", "hinge_topk"]

_SMALL_JACOBIANS = 2 ** 22  # batch x input size x widest layer kept without checkpointing
_STABLE = 1e-12  # floor of a hyperplane normal's norm (a zero normal: the unit is constant)


def region_geometry(steps: list[Step], x: torch.Tensor
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Pre-activations and their input gradients in each point's linear region.

    Returns ``(zs, vs, logits, v_out)``: for every ReLU step, ``z`` ``(N, m)`` and ``v``
    ``(N, m, d)`` (``d`` the input size); the logits ``(N, K)`` and their gradients
    ``(N, K, d)``. The region is the activation pattern ``z > 0``. Dense: an identity batch
    through every layer (the reference that the conv fast path of :func:`mmr_terms` matches).
    """
    d = math.prod(steps[0].in_shape)
    jac = torch.eye(d, dtype=x.dtype, device=x.device).reshape((d,) + steps[0].in_shape)
    return _walk(steps, x, jac, True, [], [])


def _walk(steps, h, jac, shared, zs, vs):
    """Forward-mode Jacobian through ``steps`` from ``h`` ``(N, *in)`` and its Jacobian ``jac``
    ``(d, *in)`` (``shared``: the same for every point) or ``(N * d, *in)``."""
    n = h.shape[0]
    d = jac.shape[0] if shared else jac.shape[0] // n
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


def _conv_plan(steps: list[Step]) -> dict | None:
    """The patch geometry when ``steps`` start ``Conv, ReLU, Conv, ReLU, Flatten, Linear``
    (plain convolutions: one group, no dilation) and the second layer's receptive fields tile
    the input as one unfold; else ``None`` (the dense path)."""
    if len(steps) < 6 or not (isinstance(steps[0], _Conv) and isinstance(steps[1], ReLU)
                              and isinstance(steps[2], _Conv) and isinstance(steps[3], ReLU)
                              and isinstance(steps[4], _Reshape)
                              and isinstance(steps[5], _Linear)):
        return None
    c1, c2 = steps[0], steps[2]
    if any(tuple(c.dilation) != (1, 1) or c.groups != 1 for c in (c1, c2)):
        return None
    k1, k2 = c1.w.shape[2:], c2.w.shape[2:]
    s1, s2, p1, p2 = tuple(c1.stride), tuple(c2.stride), tuple(c1.padding), tuple(c2.padding)
    # input rows s1 * (s2 * i - p2 + a) - p1 + a' (a < k2, a' < k1): a window of K rows
    # starting at S * i - P
    kk = tuple(s1[i] * (k2[i] - 1) + k1[i] for i in range(2))
    ss = tuple(s1[i] * s2[i] for i in range(2))
    pp = tuple(s1[i] * p2[i] + p1[i] for i in range(2))
    _, h0, w0 = c1.in_shape
    _, h2, w2 = c2.out_shape
    blocks = tuple((size + 2 * pp[i] - kk[i]) // ss[i] + 1 for i, size in enumerate((h0, w0)))
    if blocks != (h2, w2):
        return None
    return {"K": kk, "S": ss, "P": pp}


def _conv_geometry(steps: list[Step], x: torch.Tensor, plan: dict, qs: tuple[float, ...]
                   ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]], torch.Tensor,
                              torch.Tensor]:
    """What :func:`region_geometry` gives, without the identity batch through the convolutions,
    as ``(zs, norms, logits, v_out)`` with ``norms[i][l]`` the ``qs[i]``-norms of layer ``l``'s
    normals ``(N, m)``.

    The first conv layer's normals are its kernels placed at their receptive fields (the same
    for every point; their norms count the in-image part only). A second-layer neuron's normal
    lives on its receptive field, a ``K x K`` input window: computed as such a patch from the
    first layer's unfolded ReLU pattern and the kernels placed at their offsets. The first dense
    layer's normals sum those patches (a fold) into full input-sized vectors; the rest is the
    dense forward-mode walk."""
    c1, r1, c2, r2, flat, lin = steps[:6]
    n = x.shape[0]
    kk, ss, pp = plan["K"], plan["S"], plan["P"]
    w1, w2 = c1.w, c2.w
    ch1, ch0, k1h, k1w = w1.shape
    ch2, _, k2h, k2w = w2.shape
    _, h0, w0 = c1.in_shape
    d = ch0 * h0 * w0
    ones = x.new_ones((1, ch0, h0, w0))
    # layer 1: kernels at their receptive fields, restricted to the image
    valid1 = torch.nn.functional.unfold(ones, (k1h, k1w), padding=c1.padding, stride=c1.stride)
    v1 = w1.reshape(ch1, -1, 1) * valid1  # (C1, C0 k1h k1w, L1)
    z1 = c1.forward(x)
    m1 = (z1 > 0).to(x.dtype)
    h1 = z1 * m1
    z2 = c2.forward(h1)
    m2 = (z2 > 0).to(x.dtype)
    # layer 2: the kernel of layer 1 at offset (s1 a, s1 b) of the window, for each tap (a, b)
    # of layer 2: rows ordered (c1, a, b) as unfold orders the taps
    s1 = c1.stride
    placed = [torch.nn.functional.pad(w1, (s1[1] * b, kk[1] - k1w - s1[1] * b,
                                           s1[0] * a, kk[0] - k1h - s1[0] * a))
              for a in range(k2h) for b in range(k2w)]
    taps = torch.stack(placed, 1).reshape(ch1 * k2h * k2w, ch0 * kk[0] * kk[1])
    pattern = torch.nn.functional.unfold(m1, (k2h, k2w), padding=c2.padding, stride=c2.stride)
    n_blocks = pattern.shape[2]
    masked = w2.reshape(1, 1, ch2, -1) * pattern.transpose(1, 2)[:, :, None, :]
    v2 = masked @ taps  # (N, L, C2, C0 K K): the second layer's normals on their windows
    valid2 = torch.nn.functional.unfold(ones, kk, padding=pp, stride=ss)  # (1, C0 K K, L)
    v2_in = v2 * valid2.transpose(1, 2)[:, :, None, :]
    # the first dense layer: its weights on the active second-layer units, window by window,
    # then the windows summed into the input (fold drops the padding)
    out = lin.w.shape[0]
    wl = lin.w.reshape(out, ch2, n_blocks).permute(2, 0, 1)  # (L, O, C2)
    act = m2.reshape(n, ch2, n_blocks).transpose(1, 2)[:, :, None, :]  # (N, L, 1, C2)
    windows = (wl * act) @ v2  # (N, L, O, C0 K K)
    v3 = torch.nn.functional.fold(windows.permute(0, 2, 3, 1).reshape(n * out, -1, n_blocks),
                                  (h0, w0), kk, padding=pp, stride=ss).reshape(n, out, d)
    zs = [z1.reshape(n, -1), z2.reshape(n, -1)]
    norms = [[v1.norm(p=q, dim=1).reshape(1, -1).expand(n, -1),
              v2_in.norm(p=q, dim=-1).transpose(1, 2).reshape(n, -1)] for q in qs]
    h3 = lin.forward(flat.forward(z2 * m2))
    zs, vs, logits, v_out = _walk(steps[6:], h3, v3.transpose(1, 2).reshape(n * d, out), False,
                                  zs, [])
    for q, nq in zip(qs, norms, strict=True):
        nq += [v.norm(p=q, dim=-1) for v in vs]
    return zs, norms, logits, v_out


def _geometry(steps: list[Step], x: torch.Tensor, qs: tuple[float, ...]):
    """``(zs, norms, logits, v_out)`` (see :func:`_conv_geometry`) by the conv fast path where
    it applies, else from :func:`region_geometry`."""
    plan = _conv_plan(steps)
    if plan is not None:
        return _conv_geometry(steps, x, plan, qs)
    zs, vs, logits, v_out = region_geometry(steps, x)
    return zs, [[v.norm(p=q, dim=-1) for v in vs] for q in qs], logits, v_out


def region_distances(steps: list[Step], x: torch.Tensor, y: torch.Tensor, q: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d_B, d_D)``: l_p distances (``q`` the dual exponent) from each point to the hyperplane
    of every hidden unit ``(N, H)`` and to every decision hyperplane ``(N, K)`` inside its
    linear region (``d_D`` is ``+inf`` at the true class; negative for misclassified points)."""
    zs, norms, logits, v_out = _geometry(steps, x, (q,))
    return _distances(zs, norms, logits, v_out, y, (q,))[0]


def _distances(zs, norms, logits, v_out, y, qs):
    out = []
    fy = logits.gather(1, y[:, None])
    vy = v_out[torch.arange(y.shape[0], device=y.device), y][:, None]
    true = torch.nn.functional.one_hot(y, logits.shape[1]).bool()
    for q, nq in zip(qs, norms, strict=True):
        parts = [z.abs() / nv.clamp_min(_STABLE) for z, nv in zip(zs, nq, strict=True)]
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
        zs, norms, logits, v_out = _geometry(steps, xc, qs)
        ds = _distances(zs, norms, logits, v_out, yc, qs)
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

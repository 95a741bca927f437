"""Wong & Kolter's dual network as a differentiable bound on the logit margins.

Wong & Kolter (2018, "Provable defenses via the convex outer adversarial polytope") relax every
unstable ReLU (pre-activation bounds ``l < 0 < u``) to the triangle and fix the dual slopes to
``d = u / (u - l)``: in the primal view ``d * z <= relu(z) <= d * z - d * l`` (stable ReLUs are
exact: ``d = 1`` active, ``d = 0`` dead). Pushing a linear objective ``a . relu(z)`` back through
such a layer keeps one coefficient vector ``a * d`` for both the lower and the upper bound; only
the constants differ (``sum min(a, 0) * (-d l)`` below, ``sum max(a, 0) * (-d l)`` above). That
is the dual network: one backward pass per objective row gives both bounds.

Pre-activation bounds are built layer by layer (as in the paper): the first block is bounded
exactly over the input domain, every later ReLU's inputs by the dual network of the layers
below; they are intersected with interval bounds, which can only tighten them (and the dual pass
is run only for the neurons the interval leaves unstable). Where the steps below a ReLU are only
convolutions, scales and ReLUs (the first layers of a CNN), each neuron's row is kept as its
receptive field on every map, as the CROWN certifier does (the same bounds, far fewer numbers:
on ``cnn-small``, a 10x10 input patch instead of the 28x28 image). ``intermediate="ibp"`` uses
interval bounds alone for the hidden layers (much cheaper; a documented deviation from the paper).

The margins ``f_y - f_k`` are then bounded below by the dual network of the whole network,
concretised over the input domain with :func:`robcurves.certificates.crown.concretize_lower`
(exact for l_inf and l1 over ball and box, a valid dual bound for l2). Everything is
differentiable with respect to the module's parameters, so its cross-entropy trains the model.
"""

from __future__ import annotations

import math

import torch

from ..certificates._layers import Affine, ReLU, Step, _Conv, _Scale
from ..certificates.crown import (
    Geometry,
    _at,
    _patch_geometries,
    _patch_transpose,
    _position,
    concretize_lower,
    input_box,
)
from ..certificates.ibp import ibp_steps

__all__ = ["kw_margins", "kw_preactivation_bounds", "INTERMEDIATE"]

INTERMEDIATE = ("dual", "ibp")
_CHUNK_ELEMENTS = 2 ** 22  # largest (rows x widest layer) block of coefficients at once

# per ReLU step: (slope d, slack t) with d z <= relu(z) <= d z + t
KWRelax = tuple[torch.Tensor, torch.Tensor]


def kw_relaxation(lo: torch.Tensor, hi: torch.Tensor) -> KWRelax:
    """Slopes ``d`` (1 active, 0 dead, ``u / (u - l)`` unstable) and slacks ``t = -d l``
    (0 for stable neurons) of Wong & Kolter's relaxation on ``[lo, hi]``."""
    active, dead = lo >= 0, hi <= 0
    unstable = ~(active | dead)
    denom = torch.where(unstable, hi - lo, torch.ones_like(hi))
    d = torch.where(active, torch.ones_like(hi), torch.where(unstable, hi / denom,
                                                              torch.zeros_like(hi)))
    t = torch.where(unstable, -d * lo, torch.zeros_like(hi))
    return d, t


def _dual_backward(steps: list[Step], upto: int, a: torch.Tensor, rel: dict[int, KWRelax]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Push rows ``a`` ``(N, K, *out_shape of steps[upto-1])`` back to the input.

    Returns ``(a_in, const_lo, const_hi)``: for every input ``x'`` of the domain,
    ``a_in . x' + const_lo <= a . f(x') <= a_in . x' + const_hi``.
    """
    n, k = a.shape[:2]
    c_lo = a.new_zeros((n, k))
    c_hi = a.new_zeros((n, k))
    for i in reversed(range(upto)):
        s = steps[i]
        if isinstance(s, ReLU):
            d, t = rel[i]
            d, t = d[:, None], t[:, None]
            c_lo = c_lo + (a.clamp_max(0) * t).reshape(n, k, -1).sum(-1)
            c_hi = c_hi + (a.clamp_min(0) * t).reshape(n, k, -1).sum(-1)
            a = a * d
        else:
            assert isinstance(s, Affine)
            a, c = s.backward(a)
            c_lo, c_hi = c_lo + c, c_hi + c
    return a, c_lo, c_hi


def _tighten(steps: list[Step], i: int, x: torch.Tensor, eps: torch.Tensor, p: float,
             bounds: tuple[float, float], pts: torch.Tensor, rows: torch.Tensor,
             rel: dict[int, KWRelax], cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual lower and upper bounds on neurons ``rows`` of step ``i``'s input for points
    ``pts`` (one entry per pair): as patches where the steps below allow, else dense rows."""
    geos = _patch_geometries(steps, i)
    if geos is None:
        return _tighten_dense(steps, i, x, eps, p, bounds, pts, rows, rel)
    return _tighten_patches(steps, i, geos, x, eps, p, bounds, pts, rows, rel, cache)


def _tighten_dense(steps: list[Step], i: int, x: torch.Tensor, eps: torch.Tensor, p: float,
                   bounds: tuple[float, float], pts: torch.Tensor, rows: torch.Tensor,
                   rel: dict[int, KWRelax]) -> tuple[torch.Tensor, torch.Tensor]:
    """One dense unit row per neuron pushed back through every step below. The rows of each
    point go in blocks of ``B`` side by side (``(blocks, B)``, the last block of a point padded
    with zero rows; ``B`` half the mean number of rows per point, so padding adds at most about
    half the rows), so a point's relaxations and centre are copied once per block, not per row.
    """
    n = x.shape[0]
    shape = steps[i].in_shape
    m = math.prod(shape)
    counts = torch.bincount(pts, minlength=n)
    size = max(1, -(-pts.numel() // (2 * n)))  # B
    per_point = -(-counts // size)
    slot = torch.arange(pts.numel(), device=pts.device) - (counts.cumsum(0) - counts)[pts]
    blk = (per_point.cumsum(0) - per_point)[pts] + slot // size
    col = slot % size
    owner = torch.repeat_interleave(torch.arange(n, device=pts.device), per_point)
    width = max(math.prod(st.in_shape) for st in steps[: i + 1])
    chunk = max(1, _CHUNK_ELEMENTS // (size * width))  # blocks at once
    eye = torch.zeros((owner.numel(), size, m), dtype=x.dtype, device=x.device)
    eye[blk, col, rows] = 1.0
    new_lo, new_hi = [], []
    for c0 in range(0, owner.numel(), chunk):
        q = owner[c0:c0 + chunk]
        a = eye[c0:c0 + chunk].reshape((-1, size) + shape)
        a_in, c_lo, c_hi = _dual_backward(steps, i, a, {k: (d[q], t[q])
                                                         for k, (d, t) in rel.items()})
        new_lo.append(concretize_lower(a_in, x[q], eps[q], p, bounds) + c_lo)
        new_hi.append(c_hi - concretize_lower(-a_in, x[q], eps[q], p, bounds))
    return torch.cat(new_lo)[blk, col], torch.cat(new_hi)[blk, col]


def _tighten_patches(steps: list[Step], i: int, geos: list[Geometry], x: torch.Tensor,
                     eps: torch.Tensor, p: float, bounds: tuple[float, float], pts: torch.Tensor,
                     rows: torch.Tensor, rel: dict[int, KWRelax], cache: dict
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same bounds as :func:`_tighten_dense` where ``steps[:i]`` is a chain of
    convolutions, scales and ReLUs: each row kept as its receptive field on every map (the
    certificates' patch geometry, :func:`robcurves.certificates.crown._patch_geometries`),
    pushed back by transposed convolutions of the patch alone and bounded on the input patch
    (the coefficients outside it are zero)."""
    c, nh, nw = steps[i].in_shape
    out_hw = (nh, nw)
    width = max(steps[j].in_shape[0] * math.prod(geos[j][2]) for j in range(i + 1))
    chunk = max(1, _CHUNK_ELEMENTS // width)
    # padding gets a value inside the box, where a zero coefficient contributes nothing
    inside = min(max(0.0, bounds[0]), bounds[1])
    new_lo, new_hi = [], []
    for c0 in range(0, pts.numel(), chunk):
        pt, rw = pts[c0:c0 + chunk], rows[c0:c0 + chunk]
        r = pt.numel()
        hh, ww = _position(rw, i, steps)
        a = torch.zeros((r, 1, c, 1, 1), dtype=x.dtype, device=x.device)
        a[torch.arange(r, device=x.device), 0, rw // (nh * nw)] = 1.0
        c_lo = a.new_zeros((r, 1))
        c_hi = a.new_zeros((r, 1))
        zero = torch.zeros_like(pt)
        for j in reversed(range(i)):
            st, geo = steps[j], geos[j + 1]  # the rows live on the output map of step j
            if isinstance(st, ReLU):
                d, t = (_at(v, geo, out_hw, pt, hh, ww) for v in rel[j])
                c_lo = c_lo + (a.clamp_max(0) * t).flatten(2).sum(-1)
                c_hi = c_hi + (a.clamp_min(0) * t).flatten(2).sum(-1)
                a = a * d
            elif isinstance(st, _Scale):
                ones = torch.ones((1,) + st.out_shape, dtype=a.dtype, device=a.device)
                shift = (a * _at(st.shift * ones, geo, out_hw, zero, hh, ww)).flatten(2).sum(-1)
                c_lo, c_hi = c_lo + shift, c_hi + shift
                a = a * _at(st.scale * ones, geo, out_hw, zero, hh, ww)
            else:
                assert isinstance(st, _Conv)
                if st.b is not None:
                    bias = a.sum((-2, -1)) @ st.b
                    c_lo, c_hi = c_lo + bias, c_hi + bias
                a = _patch_transpose(st, a.reshape((r,) + a.shape[2:]), ("kw-patch-T", i, j),
                                     cache)[:, None]
                ones = torch.ones((1, 1) + st.in_shape[1:], dtype=a.dtype, device=a.device)
                a = a * _at(ones, geos[j], out_hw, zero, hh, ww)
        x_patch = _at(x - inside, geos[0], out_hw, pt, hh, ww)[:, 0] + inside
        new_lo.append((concretize_lower(a, x_patch, eps[pt], p, bounds) + c_lo)[:, 0])
        new_hi.append((c_hi - concretize_lower(-a, x_patch, eps[pt], p, bounds))[:, 0])
    return torch.cat(new_lo), torch.cat(new_hi)


def kw_preactivation_bounds(steps: list[Step], x: torch.Tensor, eps: torch.Tensor, p: float,
                            bounds: tuple[float, float], intermediate: str = "dual"
                            ) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]],
                                       dict[int, KWRelax]]:
    """Bounds on the input of every ReLU step (keyed by step index) and their relaxations.

    Args:
        steps: :func:`robcurves.certificates._layers.sequential_layers` of the network.
        x: centres ``(N, *input_shape)``; eps: radii ``(N,)``; p: ``inf``, ``2.0`` or ``1.0``.
        bounds: the input box.
        intermediate: ``"dual"`` (Wong & Kolter) or ``"ibp"`` (interval bounds only).
    """
    if intermediate not in INTERMEDIATE:
        raise ValueError(f"intermediate must be one of {', '.join(INTERMEDIATE)}; got "
                         f"{intermediate!r}")
    n = x.shape[0]
    lo, hi = input_box(x, eps, bounds)
    pre: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    rel: dict[int, KWRelax] = {}
    cache: dict = {}  # the patch path's small matrices of transposed convolutions
    start = 0
    for i, s in enumerate(steps):
        if not isinstance(s, ReLU):
            continue
        lo, hi, _ = ibp_steps(steps[start:i], lo, hi)
        if intermediate == "dual" and (start > 0 or p != math.inf):
            # l_inf on the first block: the interval over the box hull is already exact
            shape = s.in_shape
            m = math.prod(shape)
            lo_f, hi_f = lo.reshape(n, m), hi.reshape(n, m)
            pts, rows = ((lo_f < 0) & (hi_f > 0)).nonzero(as_tuple=True)
            if pts.numel():
                nl, nh = _tighten(steps, i, x, eps, p, bounds, pts, rows, rel, cache)
                lo_f = lo_f.index_put((pts, rows), torch.maximum(lo_f[pts, rows], nl))
                hi_f = hi_f.index_put((pts, rows), torch.minimum(hi_f[pts, rows], nh))
                hi_f = torch.maximum(hi_f, lo_f)
                lo, hi = lo_f.reshape((n,) + shape), hi_f.reshape((n,) + shape)
        pre[i] = (lo, hi)
        rel[i] = kw_relaxation(lo, hi)
        lo, hi = torch.relu(lo), torch.relu(hi)
        start = i + 1
    return pre, rel


def margin_spec(y: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N, K, K)`` rows ``e_y - e_j`` for every class ``j`` (the row ``j = y`` is zero)."""
    eye = torch.eye(k, dtype=dtype, device=y.device)
    return eye[y][:, None, :] - eye[None, :, :]


def kw_margins(steps: list[Step], x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
               p: float, bounds: tuple[float, float], intermediate: str = "dual"
               ) -> torch.Tensor:
    """Lower bounds ``(N, K)`` on ``f_y(x') - f_j(x')`` over each point's domain
    ``{||x' - x||_p <= eps} ∩ box`` by Wong & Kolter's dual network; the entry ``j = y`` is 0.

    Differentiable with respect to the parameters behind ``steps``; ``-margins`` are the
    worst-case logits relative to the true class whose cross-entropy is Wong & Kolter's loss.
    """
    if x.shape[0] != y.shape[0] or eps.shape != (x.shape[0],):
        raise ValueError(f"x, y and eps must have one entry per point; got shapes "
                         f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(eps.shape)}")
    _, rel = kw_preactivation_bounds(steps, x, eps, p, bounds, intermediate)
    k = steps[-1].out_shape[0]
    c = margin_spec(y, k, x.dtype)
    a_in, c_lo, _ = _dual_backward(steps, len(steps), c, rel)
    return concretize_lower(a_in, x, eps, p, bounds) + c_lo

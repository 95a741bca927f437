"""CROWN-style backward linear relaxation and IBP margins, and the per-point radius search.

The input domain of point ``x`` with radius ``eps`` is ``{x' : ||x' - x||_p <= eps,
lo <= x' <= hi}`` (the l_p ball intersected with the input box). A linear function
``a . x' + c`` is bounded below over that set by :func:`concretize_lower`: exactly for l_inf (a
box) and l1 (a fractional knapsack, solved by sorting), and for l2 by a Lagrangian dual bound
that is valid for every multiplier and maximised by bisection (never below the plain ball or box
bounds).

:func:`crown_margins` bounds the margins ``f_y(x') - f_k(x')`` for all ``k != y`` from below.
ReLU input bounds are built layer by layer: interval arithmetic from the previous layer's bounds,
then one backward pass for each (point, neuron) that the interval leaves unstable. Where the
steps below the layer are only convolutions, scales and ReLUs (the first layers of a CNN), a
neuron's rows are kept as image patches (its receptive field on each map), pushed back by
transposed convolutions of the patch alone and bounded on the input patch; elsewhere the rows
are dense, pushed back point by point (the affine block just below the layer is kept as a dense
matrix when small, so its rows are read, not recomputed). Unstable ReLUs use the triangle's
upper line and the adaptive lower line (slope 1 if ``u > -l`` else 0). :func:`certified_radius`
bisects, per point, the largest eps at which all margins are certified positive.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._box import max_radius
from ._layers import Affine, ReLU, Step, _Conv, _Scale, forward
from .ibp import ibp_steps

__all__ = ["concretize_lower", "crown_margins", "ibp_margins", "preactivation_bounds",
           "certified_radius", "input_box", "relaxation"]

_CHUNK_ELEMENTS = 2 ** 20  # largest (rows x input size) block of coefficients built at once
_DENSE_BLOCK_ELEMENTS = 2 ** 24  # largest affine block kept as a dense matrix


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
    if p != math.inf:  # |delta_i| <= ||delta||_p <= eps: the same domain, and a finite box
        el = e[:, :, None]
        dlo, dhi = torch.maximum(dlo, -el), torch.minimum(dhi, el)
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


Relaxation = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def relaxation(lo: torch.Tensor, hi: torch.Tensor) -> Relaxation:
    """Linear bounds ``low * z <= relu(z) <= up * z + up_const`` on ``[lo, hi]`` (elementwise).

    Stable neurons are exact; unstable ones use the triangle's upper line and the adaptive lower
    line (slope 1 if ``hi > -lo`` else 0). Returns ``(low, up, up_const)``.
    """
    active, dead = lo >= 0, hi <= 0
    unstable = ~(active | dead)
    one, zero = torch.ones_like(hi), torch.zeros_like(hi)
    denom = torch.where(unstable, hi - lo, one)
    up = torch.where(active, one, torch.where(unstable, hi / denom, zero))
    up_const = torch.where(unstable, -up * lo, zero)
    low = torch.where(active | (unstable & (hi > -lo)), one, zero)
    return low, up, up_const


def _relax(a: torch.Tensor, rel: Relaxation) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``a . relu(z)`` by a linear lower bound in ``z``: ``(a', const)``."""
    n, k = a.shape[:2]
    low, up, up_const = (t[:, None] for t in rel)
    const = (a.clamp_max(0) * up_const).reshape(n, k, -1).sum(-1)
    return a * torch.where(a > 0, low, up), const


def _backward(steps: list[Step], start: int, upto: int, a: torch.Tensor,
              rel: dict[int, Relaxation]) -> tuple[torch.Tensor, torch.Tensor]:
    """Push coefficients ``a`` on the output of ``steps[:upto]`` back to the input of
    ``steps[start]``; ``rel`` holds the relaxation of every ReLU step on the way."""
    const = a.new_zeros(a.shape[:2])
    for i in reversed(range(start, upto)):
        s = steps[i]
        if isinstance(s, ReLU):
            a, c = _relax(a, rel[i])
        else:
            assert isinstance(s, Affine)
            a, c = s.backward(a)
        const = const + c
    return a, const


def _block(steps: list[Step], start: int, upto: int, cache: dict | None, like: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The affine map of ``steps[start:upto]`` (no ReLU among them) as a dense matrix
    ``(n_out, *in_shape)`` and bias ``(n_out,)``, computed once per ``cache``; ``None`` when it
    would be too large (the rows are then pushed back through the steps each time); built with
    ``like``'s dtype and device (the points')."""
    key = (start, upto)
    if cache is not None and key in cache:
        return cache[key]
    out_shape = steps[upto - 1].out_shape if upto > start else steps[start].in_shape
    in_shape = steps[start].in_shape
    m, width = math.prod(out_shape), math.prod(in_shape)
    block = None
    if m * width <= _DENSE_BLOCK_ELEMENTS:
        eye = torch.eye(m, dtype=like.dtype, device=like.device).reshape((1, m) + out_shape)
        w, b = _backward(steps, start, upto, eye, {})
        block = (w[0], b[0])
    if cache is not None:
        cache[key] = block
    return block


def _tighten(steps: list[Step], i: int, start: int, x: torch.Tensor, eps: torch.Tensor,
             p: float, bounds: tuple[float, float], lo: torch.Tensor, hi: torch.Tensor,
             rel: dict[int, Relaxation], cache: dict | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds on the input of ReLU step ``i`` (``steps[start:i]`` affine), intersected
    with ``[lo, hi]``: one backward pass per (point, neuron) that ``[lo, hi]`` leaves unstable."""
    n = x.shape[0]
    shape = steps[i].in_shape
    m = math.prod(shape)
    lo_i, hi_i = lo.reshape(n, m).clone(), hi.reshape(n, m).clone()
    pts, rows = ((lo_i < 0) & (hi_i > 0)).nonzero(as_tuple=True)
    if pts.numel() == 0:
        return lo, hi
    key = ("patches", i)
    if cache is None or key not in cache:
        geos = _patch_geometries(steps, i)
        if cache is not None:
            cache[key] = geos
    geos = cache[key] if cache is not None else geos
    block = None if geos is not None else _block(steps, start, i, cache, x)
    if geos is not None:  # a row is one patch per map, at most a map's channels x K_h x K_w
        width = max(steps[j].in_shape[0] * math.prod(geos[j][2]) for j in range(i + 1))
    else:
        width = max(math.prod(s.in_shape) for s in steps[: i + 1])
    chunk = max(1, _CHUNK_ELEMENTS // (2 * width))
    if geos is not None:  # the whole chain down to the input as patches
        for c0 in range(0, pts.numel(), chunk):
            pt, rw = pts[c0:c0 + chunk], rows[c0:c0 + chunk]
            a_in, c_in = _patch_rows(steps, i, geos, pt, rw, rel, x.dtype, cache)
            # bounded on the patch: the coefficients outside it are zero (padding gets a
            # value inside the box, where a zero coefficient contributes nothing)
            inside = min(max(0.0, bounds[0]), bounds[1])
            x_patch = _at(x - inside, geos[0], steps[i].in_shape[1:], pt, *_position(rw, i, steps))
            val = concretize_lower(a_in, x_patch[:, 0] + inside, eps[pt], p, bounds) + c_in
            lo_i[pt, rw] = torch.maximum(lo_i[pt, rw], val[:, 0])
            hi_i[pt, rw] = torch.minimum(hi_i[pt, rw], -val[:, 1])
    else:  # dense rows, point by point (each point's relaxations apply to all its rows)
        which, counts = torch.unique_consecutive(pts, return_counts=True)
        for q, rows_q in zip(which.tolist(), rows.split(counts.tolist()), strict=True):
            rel_q = {k: tuple(t[q:q + 1] for t in v) for k, v in rel.items() if k < start}
            for c0 in range(0, rows_q.numel(), chunk):
                rw = rows_q[c0:c0 + chunk]
                r = rw.numel()
                if block is not None:
                    a, const = block[0][rw], block[1][rw]
                else:
                    eye = torch.zeros((r, 1, m), dtype=x.dtype, device=x.device)
                    eye[torch.arange(r), 0, rw] = 1.0
                    a, const = _backward(steps, start, i, eye.reshape((r, 1) + shape), {})
                    a, const = a[:, 0], const[:, 0]
                # the affine part is linear: the upper bound's row is the lower bound's, negated
                a, const = torch.cat([a, -a])[None], torch.cat([const, -const])[None]
                a_in, c_in = _backward(steps, 0, start, a, rel_q)
                val = (concretize_lower(a_in, x[q:q + 1], eps[q:q + 1], p, bounds)
                       + const + c_in)[0]
                lo_i[q, rw] = torch.maximum(lo_i[q, rw], val[:r])
                hi_i[q, rw] = torch.minimum(hi_i[q, rw], -val[r:])
    hi_i = torch.maximum(hi_i, lo_i)
    return lo_i.reshape((n,) + shape), hi_i.reshape((n,) + shape)


# -- patches: rows of conv layers kept as small image patches --------------------------------
#
# A neuron at position (h, w) of a convolution's output depends on a window of its input; the
# window of a chain conv -> relu -> conv ... down to the network input is a patch of size K at
# origin (h * S + O, w * S + O) on each map (per spatial dimension). Rows for such neurons are
# pushed back as (rows, C, K_h, K_w) patches by transposed convolutions of the patch alone, and
# the elementwise steps (ReLU relaxations, scales) read their values at the patch's positions.

Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # (S, O, K) per dimension


def _patch_geometries(steps: list[Step], i: int) -> list[Geometry] | None:
    """The patch geometry of step ``i``'s input neurons on the input map of each step
    ``j <= i`` (index ``j``; ``1 x 1`` at ``i``), or ``None`` when ``steps[:i]`` is not a chain
    of convolutions, scales and ReLUs on images whose patches stay smaller than their maps."""
    if len(steps[i].in_shape) != 3:
        return None
    geos: list[Geometry] = [((1, 1), (0, 0), (1, 1))] * (i + 1)
    for j in reversed(range(i)):
        st = steps[j]
        if len(st.in_shape) != 3 or len(st.out_shape) != 3:
            return None
        s_, o_, k_ = (list(v) for v in geos[j + 1])
        if isinstance(st, _Conv):
            for d in range(2):
                stride, pad, dil = st.stride[d], st.padding[d], st.dilation[d]
                kernel = st.w.shape[2 + d]
                s_[d], o_[d] = s_[d] * stride, o_[d] * stride - pad
                k_[d] = (k_[d] - 1) * stride + dil * (kernel - 1) + 1
        elif not isinstance(st, (ReLU, _Scale)):
            return None
        if k_[0] >= st.in_shape[1] or k_[1] >= st.in_shape[2]:
            return None  # patches as large as the map: the dense rows are cheaper
        geos[j] = ((s_[0], s_[1]), (o_[0], o_[1]), (k_[0], k_[1]))
    return geos


def _windows(t: torch.Tensor, geo: Geometry, out_hw: tuple[int, int]) -> torch.Tensor:
    """View ``(N, C, n_h, n_w, K_h, K_w)`` of the windows of maps ``t`` ``(N, C, H, W)`` at the
    neurons ``(h, w)`` of an ``out_hw`` grid, zero outside the map."""
    (s0, s1), (o0, o1), (k0, k1) = geo
    h, w = t.shape[-2:]
    pads = []
    for size, s, o, k, n_out in ((w, s1, o1, k1, out_hw[1]), (h, s0, o0, k0, out_hw[0])):
        pads += [-o, max(0, (n_out - 1) * s + o + k - size)]
    tp = torch.nn.functional.pad(t, pads)
    return tp.unfold(2, k0, s0).unfold(3, k1, s1)


def _at(t: torch.Tensor, geo: Geometry, out_hw: tuple[int, int], pt: torch.Tensor,
        hh: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
    """The patches ``(rows, 1, C, K_h, K_w)`` of ``t`` ``(N, C, H, W)`` read by each row."""
    return _windows(t, geo, out_hw)[pt, :, hh, ww][:, None]


_PATCH_MATRIX_ELEMENTS = 2 ** 22  # largest matrix of a transposed convolution on patches


def _patch_transpose(st: _Conv, a: torch.Tensor, key: tuple, cache: dict | None
                     ) -> torch.Tensor:
    """The transposed convolution of patches ``a`` ``(rows, C_out, K_h, K_w)`` (no padding: the
    whole window); a matrix product when the map's matrix on one patch is small (cached)."""
    def conv_t(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv_transpose2d(t, st.w, None, st.stride, 0, 0, st.groups,
                                                    st.dilation)
    size = math.prod(a.shape[1:])
    if cache is None:
        return conv_t(a)
    if key not in cache:
        like = a.new_zeros((1,) + a.shape[1:])
        out_shape = conv_t(like).shape[1:]
        matrix = None
        if size * math.prod(out_shape) <= _PATCH_MATRIX_ELEMENTS:
            eye = torch.eye(size, dtype=a.dtype, device=a.device).reshape((size,) + a.shape[1:])
            matrix = (conv_t(eye).reshape(size, -1), out_shape)
        cache[key] = matrix
    if cache[key] is None:
        return conv_t(a)
    matrix, out_shape = cache[key]
    return (a.reshape(a.shape[0], size) @ matrix).reshape((a.shape[0],) + tuple(out_shape))


def _position(rw: torch.Tensor, i: int, steps: list[Step]) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial positions ``(h, w)`` of the flat neuron indices ``rw`` of step ``i``'s input."""
    _, nh, nw = steps[i].in_shape
    return (rw // nw) % nh, rw % nw


def _patch_rows(steps: list[Step], i: int, geos: list[Geometry], pt: torch.Tensor,
                rw: torch.Tensor, rel: dict[int, Relaxation], dtype: torch.dtype,
                cache: dict | None                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Input coefficients on each row's input patch ``(r, 2, C, K_h, K_w)`` (geometry
    ``geos[0]``) and constants ``(r, 2)`` of the lower (``+e_row``) and upper (``-e_row``)
    bounds of neurons ``rw`` of step ``i``'s input, for points ``pt``."""
    c, nh, nw = steps[i].in_shape
    out_hw = (nh, nw)
    r = pt.numel()
    ch = rw // (nh * nw)
    hh, ww = _position(rw, i, steps)
    a = torch.zeros((r, 2, c, 1, 1), dtype=dtype, device=pt.device)
    ar = torch.arange(r, device=pt.device)
    a[ar, 0, ch] = 1.0
    a[ar, 1, ch] = -1.0
    const = a.new_zeros((r, 2))
    for j in reversed(range(i)):
        st, geo = steps[j], geos[j + 1]  # the rows live on the output map of step j
        if isinstance(st, ReLU):
            low, up, up_const = (_at(t, geo, out_hw, pt, hh, ww) for t in rel[j])
            a_neg = a.clamp_max(0)
            const = const + (a_neg * up_const).flatten(2).sum(-1)
            a = a * torch.where(a > 0, low, up)
        elif isinstance(st, _Scale):
            ones = torch.ones((1,) + st.out_shape, dtype=a.dtype, device=a.device)
            scale = _at(st.scale * ones, geo, out_hw, torch.zeros_like(pt), hh, ww)
            shift = _at(st.shift * ones, geo, out_hw, torch.zeros_like(pt), hh, ww)
            const = const + (a * shift).flatten(2).sum(-1)
            a = a * scale
        else:
            assert isinstance(st, _Conv)
            if st.b is not None:
                const = const + a.sum((-2, -1)) @ st.b
            a = _patch_transpose(st, a.reshape((2 * r,) + a.shape[2:]), ("patch-T", i, j),
                                 cache)
            a = a.reshape((r, 2) + a.shape[1:])
            ones = torch.ones((1, 1) + st.in_shape[1:], dtype=a.dtype, device=a.device)
            a = a * _at(ones, geos[j], out_hw, torch.zeros_like(pt), hh, ww)
    return a, const


def _layer_bounds(steps: list[Step], x: torch.Tensor, eps: torch.Tensor, p: float,
                  bounds: tuple[float, float], method: str, cache: dict | None,
                  prior: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
                  ) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]],
                             dict[int, Relaxation]]:
    lo, hi = input_box(x, eps, bounds)
    pre: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    rel: dict[int, Relaxation] = {}
    start = 0
    for i, s in enumerate(steps):
        if not isinstance(s, ReLU):
            continue
        lo, hi, _ = ibp_steps(steps[start:i], lo, hi)
        if prior is not None:  # bounds valid on a larger domain are valid here too
            lo, hi = torch.maximum(lo, prior[i][0]), torch.minimum(hi, prior[i][1])
            hi = torch.maximum(hi, lo)
        if method == "crown":
            lo, hi = _tighten(steps, i, start, x, eps, p, bounds, lo, hi, rel, cache)
        pre[i] = (lo, hi)
        rel[i] = relaxation(lo, hi)
        lo, hi = torch.relu(lo), torch.relu(hi)
        start = i + 1
    return pre, rel


def preactivation_bounds(steps: list[Step], x: torch.Tensor, eps: torch.Tensor, p: float,
                         bounds: tuple[float, float], method: str = "crown",
                         cache: dict | None = None
                         ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Bounds ``(lower, upper)`` on the input of every ReLU step ``i`` (keyed by ``i``).

    Layer by layer: interval arithmetic from the previous ReLU's bounds, then (``"crown"``) a
    backward pass for each neuron of each point that the interval leaves unstable, intersected
    with the interval. ``cache`` (any dict, reused across calls on the same ``steps``) keeps the
    dense matrices of the affine blocks between ReLUs.
    """
    return _layer_bounds(steps, x, eps, p, bounds, method, cache)[0]


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
                  p: float, bounds: tuple[float, float], cache: dict | None = None,
                  prior: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
                  keep: dict | None = None) -> torch.Tensor:
    """Lower bounds ``(N, K-1)`` on ``f_y - f_k`` over each point's domain (CROWN).

    ``prior``: ReLU input bounds known to hold on each point's domain (e.g. computed for a
    larger radius), intersected with the intervals before the backward passes (fewer unstable
    neurons, never looser). ``keep``: a dict that receives the ReLU input bounds computed here.
    """
    pre, rel = _layer_bounds(steps, x, eps, p, bounds, "crown", cache, prior)
    if keep is not None:
        keep.update(pre)
    return _output_margins(steps, x, y, eps, p, bounds, rel)


def _output_margins(steps: list[Step], x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                    p: float, bounds: tuple[float, float], rel: dict[int, Relaxation]
                    ) -> torch.Tensor:
    """The margins' backward pass with the given ReLU relaxations (valid on the domain)."""
    c = _spec(y, steps[-1].out_shape[0], x.dtype)
    a_in, const = _backward(steps, 0, len(steps), c, rel)
    return concretize_lower(a_in, x, eps, p, bounds) + const


def ibp_margins(steps: list[Step], x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                p: float, bounds: tuple[float, float], cache: dict | None = None
                ) -> torch.Tensor:
    """Lower bounds ``(N, K-1)`` on ``f_y - f_k`` by IBP on the box hull of the domain.

    The margin matrix is folded into the affine steps after the last ReLU, so those steps are
    bounded exactly for the interval reaching them.
    """
    last = max((i for i, s in enumerate(steps) if isinstance(s, ReLU)), default=-1) + 1
    lo_in, hi_in = input_box(x, eps, bounds)
    lo, hi, _ = ibp_steps(steps[:last], lo_in, hi_in)
    c = _spec(y, steps[-1].out_shape[0], x.dtype)
    a, const = _backward(steps, last, len(steps), c, {})
    n, k = a.shape[:2]
    mid = ((hi + lo) / 2).reshape(n, 1, -1)
    rad = ((hi - lo) / 2).reshape(n, 1, -1)
    a = a.reshape(n, k, -1)
    return (a * mid).sum(-1) - (a.abs() * rad).sum(-1) + const


MARGINS: dict[str, Callable] = {"crown": crown_margins, "ibp": ibp_margins}


def certified_radius(steps: list[Step], x: torch.Tensor, y: torch.Tensor, p: float,
                     bounds: tuple[float, float], method: str = "crown",
                     upper: torch.Tensor | None = None, iters: int = 14,
                     on_step: Callable[[float], None] | None = None) -> torch.Tensor:
    """Per-point largest certified radius found by bisection (a lower bound on ``d*``).

    Args:
        steps: flattened network (float64 recommended).
        x, y: points inside the box and their labels; points the network misclassifies get 0.
        upper: optional per-point upper brackets (e.g. attack distances; ``inf`` = none).
            Without one the bracket is the radius covering the whole box, and a point certified
            on the whole box gets ``+inf`` (no adversarial exists inside the bounds). Unbounded
            inputs (an infinite box) without a finite bracket start from radius 1, doubled while
            it is certified.
        iters: bisection steps (the result is within ``bracket / 2**iters`` below the largest
            radius the method certifies).
        on_step: called with the fraction of the work done by each bound evaluation.
    """
    n = x.shape[0]
    with torch.no_grad():
        correct = forward(steps, x).argmax(1) == y
    if upper is not None:  # a point at distance 0 has nothing to certify
        correct &= upper.to(x.device) != 0
    radius = torch.zeros(n, dtype=x.dtype, device=x.device)
    if correct.any():  # only the correctly classified points are searched
        keep = correct.nonzero().reshape(-1)
        radius[keep] = _bisect(steps, x[keep], y[keep], p, bounds, method,
                               None if upper is None else upper[keep.to(upper.device)],
                               iters, on_step)
    elif on_step is not None:
        on_step(1.0)
    return radius


def _bisect(steps: list[Step], x: torch.Tensor, y: torch.Tensor, p: float,
            bounds: tuple[float, float], method: str, upper: torch.Tensor | None, iters: int,
            on_step: Callable[[float], None] | None) -> torch.Tensor:
    margins = MARGINS[method]
    cache: dict = {}
    # CROWN: the ReLU input bounds computed at each point's current upper end of the bracket
    # hold for every radius probed later (all smaller), so each probe starts from them
    prior: dict | None = None

    def certified(eps: torch.Tensor) -> torch.Tensor:
        nonlocal prior
        if method != "crown":
            ok = margins(steps, x, y, eps, p, bounds, cache=cache).amin(1) > 0
        elif prior is None:
            prior = {}
            ok = margins(steps, x, y, eps, p, bounds, cache=cache, keep=prior).amin(1) > 0
        else:
            # first the relaxations of the bracket's upper end (valid here, as eps is smaller):
            # only the output's backward pass; the points it certifies are certified
            rel = {i: relaxation(*b) for i, b in prior.items()}
            ok = _output_margins(steps, x, y, eps, p, bounds, rel).amin(1) > 0
            todo = (~ok).nonzero().reshape(-1)
            if todo.numel():  # the others get fresh bounds at eps
                keep: dict = {}
                sub = {i: (b[0][todo], b[1][todo]) for i, b in prior.items()}
                ok_todo = margins(steps, x[todo], y[todo], eps[todo], p, bounds, cache=cache,
                                  prior=sub, keep=keep).amin(1) > 0
                ok[todo] = ok_todo
                failed = todo[~ok_todo]  # failed probes become the new upper end
                for i, (lo_i, hi_i) in prior.items():
                    lo_i[failed] = keep[i][0][~ok_todo]
                    hi_i[failed] = keep[i][1][~ok_todo]
        if on_step is not None:
            on_step(1.0 / (iters + 1))
        return ok

    n = x.shape[0]
    with torch.no_grad():
        box = max_radius(x[0].numel(), p, bounds)
        hi = torch.full((n,), box, dtype=x.dtype, device=x.device)
        if upper is not None:
            u = upper.to(dtype=x.dtype, device=x.device)
            hi = torch.where(torch.isfinite(u), torch.minimum(u, hi), hi)
        if not math.isfinite(box):
            hi = _doubling_bracket(lambda e: margins(steps, x, y, e, p, bounds, cache=cache)
                                   .amin(1) > 0, hi)
        hi0 = hi.clone()
        cert_hi = certified(hi)
        lo = torch.zeros_like(hi)
        for _ in range(iters):
            mid = (lo + hi) / 2
            ok = certified(mid)
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        radius = torch.where(cert_hi, hi0, lo)
        whole_box = cert_hi & (hi0 >= box)
        return torch.where(whole_box, torch.full_like(radius, math.inf), radius)


def _doubling_bracket(certified: Callable[[torch.Tensor], torch.Tensor], hi: torch.Tensor,
                      max_doublings: int = 60) -> torch.Tensor:
    """Finite brackets for points whose ``hi`` is infinite: 1, 2, 4, ... up to the first radius
    not certified (or ``2**max_doublings``)."""
    need = ~torch.isfinite(hi)
    hi = torch.where(need, torch.ones_like(hi), hi)
    for _ in range(max_doublings):
        if not need.any():
            break
        ok = certified(hi) & need
        hi = torch.where(ok, 2 * hi, hi)
        need = ok
    return hi

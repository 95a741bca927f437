"""Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020) at a fixed, per-point
epsilon: l_inf and l2. Score-based: forward passes only, no gradients.

Random search on the margin loss ``z_y - max_{k != y} z_k``: each iteration changes the current
perturbation on one random square window and keeps the change if the margin decreased; a
point stops at its first adversarial iterate. The window's side follows the published
schedule: with ``i = floor(t / n_queries * 10000)`` for iteration ``t``, the fraction ``p`` of
the pixels changed is ``p_init`` for ``i <= 10`` and is halved at ``i`` = 10, 50, 200, 500,
1000, 2000, 4000, 6000 and 8000 (``p_init / 512`` at the end); the side is
``round(sqrt(p * h * w))``.

* **l_inf**: starts from vertical stripes (one random sign ``+-eps`` per channel and column);
  a step sets a square window (at least 1 pixel, at most ``min(h, w) - 1``) to one random sign
  ``+-eps`` per channel (resampled, without a query, while it would not change the input).
* **l2**: starts from a 5x5 grid of tiles, each a centred perturbation of random sign per
  channel (two halves of opposite sign, each a sum of concentric squares weighted
  ``1/(r+1)^2``), scaled to norm ``eps``. A step (window side odd, at least 3) takes the mass
  of the current perturbation on two random windows, zeroes the second and puts into the
  first its old content (normalised) plus a new centred perturbation of random sign per
  channel, with as much norm as the two windows held plus the unused budget
  ``eps^2 - ||delta||^2`` (spread over channels); the whole perturbation is then rescaled to
  norm ``eps`` and clipped to the box.

Inputs of shape ``(N, C, H, W)`` are images. Other shapes (the paper covers only images) are
seen as one row of pixels: ``(N, C, L)`` as ``C x 1 x L`` and ``(N, D)`` or higher ranks as
``1 x 1 x D``; the "square" is then an interval of ``p * L`` pixels (the area fraction the
schedule asks for) and the l2 grid has 25 tiles along the row.

Passes per point: one forward for the clean input, then at most ``n_queries`` (the starting
point and one per iteration) while the point is not yet adversarial.
"""

from __future__ import annotations

import functools
import math

import torch

from .._norms import lp_norm
from ..model import Classifier, margin
from ._core import BestAdversarial, attack, expand, generator_for, per_point_eps

__all__ = ["square", "p_schedule"]

#: ``(i, divisor)``: past schedule position ``i`` (of 10000) the fraction is ``p_init / divisor``.
_HALVINGS = ((8000, 512), (6000, 256), (4000, 128), (2000, 64), (1000, 32), (500, 16),
             (200, 8), (50, 4), (10, 2))


def p_schedule(p_init: float, t: int, n_queries: int) -> float:
    """Fraction of the pixels changed at iteration ``t`` of ``n_queries`` (the published
    piecewise-constant halving schedule, rescaled from 10000 queries to ``n_queries``)."""
    i = int(t / n_queries * 10000)
    for threshold, divisor in _HALVINGS:
        if i > threshold:
            return p_init / divisor
    return p_init


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(c, h, w)`` the input of shape ``(N, *shape)`` is seen as."""
    if len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    if len(shape) == 2:
        return int(shape[0]), 1, int(shape[1])
    return 1, 1, int(math.prod(shape))


def _corners(n: int, h: int, w: int, sh: int, sw: int, gen: torch.Generator,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-left corners ``(vh, vw)``, each ``(n,)``, of one random ``sh x sw`` window per
    point."""
    vh = torch.randint(0, h - sh + 1, (n,), generator=gen, device=device)
    vw = torch.randint(0, w - sw + 1, (n,), generator=gen, device=device)
    return vh, vw


def _window(n: int, h: int, w: int, sh: int, sw: int, gen: torch.Generator,
            device: torch.device) -> torch.Tensor:
    """A boolean ``(n, 1, h, w)`` mask of one random ``sh x sw`` window per point."""
    vh, vw = _corners(n, h, w, sh, sw, gen, device)
    rh = torch.arange(h, device=device)[None]
    rw = torch.arange(w, device=device)[None]
    in_h = (rh >= vh[:, None]) & (rh < vh[:, None] + sh)
    in_w = (rw >= vw[:, None]) & (rw < vw[:, None] + sw)
    return (in_h[:, :, None] & in_w[:, None, :])[:, None]


def _signs(shape: tuple[int, ...], gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    s = torch.randint(0, 2, shape, generator=gen, device=like.device)
    return (2 * s - 1).to(like.dtype)


@functools.lru_cache(maxsize=256)
def _concentric(a: int, b: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An ``a x b`` bump of unit l2 norm: concentric rectangles around the centre, ring ``r``
    weighted ``1/(r+1)^2`` (so the centre holds the most). Cached per shape (each l2 step
    asks for one): callers must not modify the result."""
    out = torch.zeros(a, b, dtype=dtype, device=device)
    if a == 0 or b == 0:
        return out
    ca, cb = a // 2, b // 2
    for r in range(max(ca, cb) + 1):
        out[max(ca - r, 0):min(ca + r + 1, a), max(cb - r, 0):min(cb + r + 1, b)] += \
            1.0 / (r + 1) ** 2
    return out / out.norm()


def _centred(sh: int, sw: int, n: int, gen: torch.Generator, like: torch.Tensor
             ) -> torch.Tensor:
    """``(n, 1, sh, sw)`` unit-norm perturbations: two halves of opposite sign, split across
    rows or (at random per point, as in the paper) columns; across columns only for a row."""
    dtype, device = like.dtype, like.device

    def split(rows: bool) -> torch.Tensor:
        if rows:
            top = _concentric(sh // 2, sw, dtype, device)
            d = torch.cat([top, -_concentric(sh - sh // 2, sw, dtype, device)], 0)
        else:
            left = _concentric(sh, sw // 2, dtype, device)
            d = torch.cat([left, -_concentric(sh, sw - sw // 2, dtype, device)], 1)
        return d / d.norm().clamp_min(1e-12)

    by_cols = split(False)
    if sh == 1:
        return by_cols.expand(n, 1, sh, sw)
    pick = torch.randint(0, 2, (n,), generator=gen, device=device).bool()
    return torch.where(pick[:, None, None, None], split(True), by_cols)


def _l2_start(x: torch.Tensor, eps: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The l2 starting perturbation ``(n, c, h, w)``: a centred grid of tiles of random sign
    per channel, scaled to l2 norm ``eps``."""
    n, c, h, w = x.shape
    if h > 1:
        s = max(min(h, w) // 5, 1)
        th, tw, nh, nw = s, s, min(h // s, 5), min(w // s, 5)
    else:
        th, tw = 1, max(w // 25, 1)
        nh, nw = 1, min(w // tw, 25)
    oh, ow = (h - nh * th) // 2, (w - nw * tw) // 2
    delta = torch.zeros_like(x)
    for i in range(nh):
        for j in range(nw):
            tile = _centred(th, tw, n, gen, x) * _signs((n, c, 1, 1), gen, x)
            delta[:, :, oh + i * th:oh + (i + 1) * th, ow + j * tw:ow + (j + 1) * tw] = tile
    return delta / expand(lp_norm(delta, 2.0).clamp_min(1e-12), x) * expand(eps, x)


def _linf_step(img: torch.Tensor, best: torch.Tensor, rows: torch.Tensor, eps: torch.Tensor,
               side: tuple[int, int], box: tuple[float, float], gen: torch.Generator
               ) -> torch.Tensor:
    """The l_inf candidates of the points ``rows``: each point's best iterate with one random
    ``sh x sw`` window set to ``clip(x +- eps)``, one random sign per channel, the signs
    redrawn (for every point, up to 10 draws) while some point's window would stay unchanged.

    Works on the windows only (``k x c x sh x sw`` values, mostly a few pixels) through flat
    indices: whether a sign leaves a channel's window unchanged is known for both signs before
    drawing, so a redraw costs a few small tensor operations and no pass over the images, and
    the new windows are written into a copy of the best iterates. Draws the same random
    numbers, in the same order, as building the whole candidate images per draw would.
    """
    k, (c, h, w) = rows.numel(), img.shape[1:]
    lo, hi = box
    vh, vw = _corners(k, h, w, side[0], side[1], gen, img.device)
    at = (vh * w + vw)[:, None, None, None] + _window_offsets(c, h, w, side, img.device)
    at_img = at + (rows * (c * h * w))[:, None, None, None]  # (k, c, sh, sw) into img, best
    xa_w = img.reshape(-1).take(at_img)
    xb_w = best.reshape(-1).take(at_img)
    e = eps.index_select(0, rows)[:, None, None, None]
    plus, minus = torch.clamp(xa_w + e, lo, hi), torch.clamp(xa_w - e, lo, hi)
    same_plus = (plus == xb_w).reshape(k, c, -1).all(2)  # (k, c): sign +1 changes nothing
    same_minus = (minus == xb_w).reshape(k, c, -1).all(2)
    up = torch.zeros(k, c, dtype=torch.bool, device=img.device)  # the sign is +1
    todo = torch.ones(k, 1, dtype=torch.bool, device=img.device)
    for _ in range(10):  # resample signs that would leave the window unchanged
        # _signs' draw (randint(0, 2) then 2 s - 1): +1 exactly where the draw is 1
        draw = torch.randint(0, 2, (k, c), generator=gen, device=img.device).bool()
        up = torch.where(todo, draw, up)
        todo = torch.where(up, same_plus, same_minus).all(1, keepdim=True)
        if not todo.any():
            break
    cand = best.index_select(0, rows)
    at_cand = at + (torch.arange(k, device=img.device) * (c * h * w))[:, None, None, None]
    cand.reshape(-1)[at_cand.reshape(-1)] = torch.where(up[:, :, None, None], plus,
                                                        minus).reshape(-1)
    return cand


@functools.lru_cache(maxsize=64)
def _window_offsets(c: int, h: int, w: int, side: tuple[int, int], device: torch.device
                    ) -> torch.Tensor:
    """``(1, c, sh, sw)`` flat offsets, in a ``(c, h, w)`` image, of the pixels of an
    ``sh x sw`` window with its top-left corner at 0 (cached: callers must not modify it)."""
    sh, sw = side
    return (torch.arange(c, device=device)[:, None, None] * (h * w)
            + torch.arange(sh, device=device)[None, :, None] * w
            + torch.arange(sw, device=device)[None, None, :])[None]


@attack(norms=(math.inf, 2.0))
def square(model: Classifier, x: torch.Tensor, y: torch.Tensor, norm: float, *,
           eps: torch.Tensor | float, n_queries: int = 5000, p_init: float = 0.8,
           seed: int = 0, tracker: BestAdversarial | None = None) -> torch.Tensor:
    """Square attack inside ``{x' : ||x' - x||_p <= eps, x' in model.bounds}``.

    Args:
        norm: ``inf`` or ``2``.
        eps: radius per point, an ``(N,)`` tensor (or a float for all points), > 0, in input
            units. The bounds may be infinite (the box then never binds).
        n_queries: forward passes per point at most, the starting point included (plus one
            for the clean input).
        p_init: initial fraction of the pixels a step changes (0.8 as in the paper; 0.05 is
            the paper's choice for adversarially trained models under l_inf).
        seed: seeds the random search.
        tracker: if given, every adversarial iterate queried updates it.

    Returns:
        Per point its first adversarial iterate, or ``x`` itself where none was found (and
        where the clean input is already misclassified).
    """
    p = norm  # parsed and checked by the @attack entry, with the inputs
    if int(n_queries) < 1:
        raise ValueError(f"n_queries must be >= 1; got {n_queries}")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must lie in (0, 1]; got {p_init}")
    n = x.shape[0]
    eps_t = per_point_eps(eps, x)  # shape, finite, >= 0
    if n and not bool((eps_t > 0).all()):
        raise ValueError(f"eps must be finite and > 0; got min {float(eps_t.min())}, "
                         f"max {float(eps_t.max())}")
    if n == 0:
        return x.clone()
    c, h, w = _image_shape(tuple(x.shape[1:]))
    img = x.reshape(n, c, h, w).contiguous()  # _linf_step indexes it flat
    lo, hi = model.bounds
    gen = generator_for(seed, x.device)
    own = BestAdversarial(x, y, p)

    def query(cand: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cand = cand.reshape((rows.numel(),) + tuple(x.shape[1:]))
        with torch.no_grad():
            z = model.logits(cand)
        m = margin(z, y[rows])
        # only a misclassified candidate can be adversarial (BestAdversarial asks for a margin
        # below minus a noise tolerance): show `own` those alone, not every query's images
        hit = (m < 0).nonzero().squeeze(1)
        adv = torch.zeros_like(m, dtype=torch.bool)
        if hit.numel():
            adv[hit] = own.update(cand[hit], z[hit], rows[hit])
        if tracker is not None:
            tracker.update(cand, z, rows)
        return m, adv

    all_rows = torch.arange(n, device=x.device)
    m_best, clean_adv = query(img, all_rows)
    e4 = expand(eps_t, img)
    if p == math.inf:
        stripes = _signs((n, c, 1, w), gen, img)
        best = torch.clamp(img + e4 * stripes, lo, hi)
    else:
        best = torch.clamp(img + _l2_start(img, eps_t, gen), lo, hi)
    active = ~clean_adv
    rows = active.nonzero().squeeze(1)
    if rows.numel():
        m, adv = query(best[rows], rows)
        m_best[rows] = m
        active[rows[adv]] = False
    for t in range(int(n_queries) - 1):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        frac = p_schedule(p_init, t, int(n_queries))
        k = rows.numel()
        if p == math.inf:
            if h > 1:
                s = min(max(int(round(math.sqrt(frac * h * w))), 1), min(h, w) - 1 or 1)
                sh, sw = s, s
            else:
                sh, sw = 1, min(max(int(round(frac * w)), 1), max(w - 1, 1))
            cand = _linf_step(img, best, rows, eps_t, (sh, sw), (lo, hi), gen)
        else:
            if h > 1:
                s = max(int(round(math.sqrt(frac * h * w))), 3)
                s = min(s + (1 - s % 2), min(h, w))
                sh, sw = s, s
            else:
                s = max(int(round(frac * w)), 3)
                sh, sw = 1, min(s + (1 - s % 2), w)
            xa, xb = img.index_select(0, rows), best.index_select(0, rows)
            e = e4.index_select(0, rows)
            m1 = _window(k, h, w, sh, sw, gen, x.device)
            m2 = _window(k, h, w, sh, sw, gen, x.device)
            delta = xb - xa
            norm_img = expand(lp_norm(delta, 2.0), xb)
            both = (m1 | m2).to(xb.dtype)
            held = (delta ** 2 * both).sum((2, 3), keepdim=True).sqrt()  # (k, c, 1, 1)
            m1c = m1.expand(k, c, h, w)
            old = delta[m1c].reshape(k, c, sh, sw)
            old_norm = old.pow(2).sum((2, 3), keepdim=True).sqrt()
            new = _centred(sh, sw, k, gen, xb) * _signs((k, c, 1, 1), gen, xb)
            new = new + old / (old_norm + 1e-10)
            room = (torch.clamp(e ** 2 - norm_img ** 2, min=0.0) / c + held ** 2).sqrt()
            new = new / new.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * room
            delta = torch.where(m2, torch.zeros_like(delta), delta)
            delta = delta.masked_scatter(m1c, new)
            scale = e / expand(lp_norm(delta, 2.0).clamp_min(1e-12), delta)
            cand = torch.clamp(xa + delta * scale, lo, hi)
        m, adv = query(cand, rows)
        better = m < m_best.index_select(0, rows)
        kept = rows[better]
        best.index_copy_(0, kept, cand[better])
        m_best.index_copy_(0, kept, m[better])
        active[rows[adv]] = False
    return torch.where(expand(own.found, x), own.best, x).detach()

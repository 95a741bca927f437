"""Exact minimal adversarial distances of affine classifiers ``f(x) = W x + b``.

For the true class ``y`` and another class ``k`` let ``g = w_k - w_y`` and
``m = f_y(x) - f_k(x)``. The smallest perturbation reaching class ``k``'s side solves
``min ||delta||_p  s.t.  g . delta >= m,  lo - x <= delta <= hi - x``, and ``d* = min_k``.

- Without the box the answer is ``m / ||g||_q`` (``q`` dual to ``p``); its minimiser is checked
  against the box, and when it lies inside, that is the exact answer.
- When the box binds: l_inf and l1 are linear programs solved by HiGHS (``scipy.optimize
  .linprog``); l2 is the quadratic program whose KKT conditions give
  ``delta = clip(lam g, lo - x, hi - x)`` with the smallest ``lam >= 0`` meeting the
  constraint, found exactly among the breakpoints ``lam = bound_i / g_i``.

Classes are visited by increasing unconstrained distance and skipped once that lower bound
exceeds the best exact distance found (the box only makes distances larger).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import scipy.sparse as sp

__all__ = ["as_affine", "halfspace_distance", "linear_distances"]


def as_affine(model: object) -> tuple[np.ndarray, np.ndarray]:
    """``(W (K, d), b (K,))`` float64 from an ``nn.Linear``, a scikit-learn linear model
    (``coef_``/``intercept_``; binary models become two classes ``[0, w]``) or ``(W, b)``."""
    import torch

    if isinstance(model, torch.nn.Linear):
        w = model.weight.detach().cpu().double().numpy()
        b = (np.zeros(w.shape[0]) if model.bias is None
             else model.bias.detach().cpu().double().numpy())
    elif hasattr(model, "coef_"):
        w = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
        b = np.atleast_1d(np.asarray(getattr(model, "intercept_", np.zeros(w.shape[0])),
                                     dtype=np.float64))
        if b.size == 1 and w.shape[0] > 1:
            b = np.full(w.shape[0], float(b[0]))
    elif isinstance(model, tuple) and len(model) == 2:
        w = np.asarray(model[0], dtype=np.float64)
        b = np.asarray(model[1], dtype=np.float64)
    else:
        raise TypeError(f"cannot read an affine classifier from a {type(model).__name__}; "
                        "expected nn.Linear, a scikit-learn linear model (coef_, intercept_) "
                        "or a (W, b) pair")
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"W must be (K, d) and b (K,); got {w.shape} and {b.shape}")
    if w.shape[0] == 1:  # binary: decision w.x + b > 0 means class 1
        w = np.vstack([np.zeros_like(w), w])
        b = np.array([0.0, b[0]])
    return w, b


def _closed_form(g: np.ndarray, m: float, p: float) -> tuple[float, np.ndarray]:
    """Distance and minimiser without the box."""
    if p == math.inf:
        t = m / np.abs(g).sum()
        return t, t * np.sign(g)
    if p == 2.0:
        return m / np.dot(g, g) ** 0.5, g * (m / np.dot(g, g))
    i = int(np.argmax(np.abs(g)))
    delta = np.zeros_like(g)
    delta[i] = m / g[i]
    return abs(m / g[i]), delta


def _l2_box(g: np.ndarray, m: float, dlo: np.ndarray, dhi: np.ndarray) -> float:
    """``min ||delta||_2 s.t. g.delta >= m, dlo <= delta <= dhi`` (exact, KKT breakpoints)."""
    nz = g != 0
    g, dlo, dhi = g[nz], dlo[nz], dhi[nz]
    cap = np.where(g > 0, dhi, dlo)  # the bound each coordinate saturates at
    lam_sat = cap / g  # >= 0: lambda at which coordinate i saturates
    order = np.argsort(lam_sat)
    lam_sorted, gs, caps = lam_sat[order], g[order], cap[order]
    # reach(lam) = sum_sat g_i cap_i + lam * sum_free g_i^2, piecewise linear increasing
    sat_part = np.concatenate([[0.0], np.cumsum(gs * caps)])
    free_sq = np.concatenate([[np.sum(gs ** 2)], np.sum(gs ** 2) - np.cumsum(gs ** 2)])
    reach_at = sat_part[:-1] + lam_sorted * free_sq[:-1]  # reach just at each breakpoint
    if sat_part[-1] < m * (1 - 1e-12):
        return math.inf  # even the far corner does not reach the boundary
    j = int(np.searchsorted(reach_at, m))  # first breakpoint where reach >= m
    if j < len(lam_sorted):
        lam = (m - sat_part[j]) / free_sq[j] if free_sq[j] > 0 else lam_sorted[j]
    else:
        lam = lam_sorted[-1]
    delta = np.clip(lam * g, dlo, dhi)
    return float(np.linalg.norm(delta))


def _lp_box(g: np.ndarray, m: float, dlo: np.ndarray, dhi: np.ndarray, p: float) -> float:
    """l_inf or l1 minimal distance to the halfspace inside the box, by HiGHS."""
    d = g.shape[0]
    if p == math.inf:
        # variables (delta, t): min t; delta_i - t <= 0, -delta_i - t <= 0, -g.delta <= -m
        c = np.zeros(d + 1)
        c[-1] = 1.0
        eye = sp.eye(d, format="csr")
        ones = sp.csr_matrix(np.ones((d, 1)))
        a_ub = sp.vstack([sp.hstack([eye, -ones]), sp.hstack([-eye, -ones]),
                          sp.csr_matrix(np.append(-g, 0.0)[None])]).tocsr()
        b_ub = np.concatenate([np.zeros(2 * d), [-m]])
        bnds = list(zip(dlo, dhi, strict=True)) + [(0, None)]
    else:
        # delta = u - v, u, v >= 0: min sum(u + v); -g.u + g.v <= -m
        c = np.ones(2 * d)
        a_ub = np.concatenate([-g, g])[None]
        b_ub = np.array([-m])
        bnds = [(0, max(0.0, h)) for h in dhi] + [(0, max(0.0, -lo)) for lo in dlo]
    res = scipy.optimize.linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bnds, method="highs")
    if res.status == 2:
        return math.inf
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on a linear program: {res.message}")
    return float(res.fun)


def halfspace_distance(g: np.ndarray, m: float, x: np.ndarray, p: float,
                       bounds: tuple[float, float]) -> tuple[float, bool]:
    """Exact ``min ||delta||_p`` with ``g . delta >= m`` and ``x + delta`` in the box.

    Returns the distance (``inf`` if unreachable inside the box) and whether the box bound.
    """
    if m <= 0:
        return 0.0, False
    if not np.any(g):
        return math.inf, False
    dist, delta = _closed_form(g, m, p)
    z = x + delta
    if np.all(z >= bounds[0]) and np.all(z <= bounds[1]):
        return float(dist), False
    dlo, dhi = bounds[0] - x, bounds[1] - x
    if p == 2.0:
        return _l2_box(g, m, dlo, dhi), True
    return _lp_box(g, m, dlo, dhi, p), True


def linear_distances(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, p: float,
                     bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact per-point distances of the affine classifier ``x -> W x + b``.

    Args:
        w, b: ``(K, d)`` and ``(K,)``.
        x: ``(N, d)`` inputs in the box; y: ``(N,)`` labels in ``0..K-1``.
    Returns:
        distances ``(N,)`` (0 for misclassified points), predictions ``(N,)`` and the number
        of (point, class) problems where the box bound and an LP/QP was solved.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"inputs have {x.shape[1]} features; the model expects {w.shape[1]}")
    logits = x @ w.T + b
    pred = logits.argmax(1)
    out = np.zeros(len(x))
    n_box = 0
    q = {math.inf: 1.0, 2.0: 2.0, 1.0: math.inf}[p]
    for i in range(len(x)):
        yi = int(y[i])
        if pred[i] != yi:
            continue
        g = w - w[yi]  # (K, d)
        m = logits[i, yi] - logits[i]
        gn = np.linalg.norm(g, ord=q, axis=1)
        free = np.where(gn > 0, m / np.where(gn > 0, gn, 1.0), math.inf)
        free[yi] = math.inf
        best = math.inf
        for k in np.argsort(free):  # the true class has free = inf and comes last
            if free[k] >= best:
                break
            d, bound = halfspace_distance(g[k], float(m[k]), x[i], p, bounds)
            n_box += int(bound)
            best = min(best, d)
        out[i] = best
    return out, pred, n_box

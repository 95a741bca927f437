"""CROWN's patch path (conv rows kept as image patches) against a dense reference.

The reference below builds every step's matrix from the step's forward map on unit vectors
(``Affine.sparse_matrix``: no transposed convolution, no windows) and runs CROWN's backward
passes with dense numpy rows. The network has non-square kernels, unequal strides and paddings,
two input channels, normalisation, two convolutions without a ReLU between them and an input
size the windows do not tile, so a swapped axis, a wrong offset or a border counted as a neuron
would change the bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robcurves.certificates import Normalize
from robcurves.certificates._layers import Affine, ReLU, sequential_layers
from robcurves.certificates.crown import (
    _patch_geometries,
    certified_radius,
    crown_margins,
    preactivation_bounds,
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _net(seed: int = 3) -> nn.Sequential:
    """Non-square kernels, unequal strides and paddings, an input the windows do not tile, a
    per-channel scale inside the chain and two convolutions without a ReLU between them (also
    the kw dual-bound tests' network, with another seed)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        Normalize([0.4, 0.6], [0.5, 0.25]),
        nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)),  # 2x11x10 -> 3x6x9
        nn.ReLU(),
        nn.BatchNorm2d(3),
        nn.Conv2d(3, 4, (2, 3), stride=(1, 2), padding=(0, 1)),  # -> 4x5x5
        # no ReLU between: its rows reach the padding; dilated and grouped
        nn.Conv2d(4, 4, 2, padding=1, dilation=2, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(100, 6),
        nn.ReLU(),
        nn.Linear(6, 3),
    ).double()
    bn = net[3]
    with torch.no_grad():  # a per-channel scale and shift inside the chain
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return net


def _relax(lo: np.ndarray, hi: np.ndarray):
    active, dead = lo >= 0, hi <= 0
    unstable = ~(active | dead)
    up = np.where(active, 1.0, np.where(unstable, hi / np.where(unstable, hi - lo, 1.0), 0.0))
    up_const = np.where(unstable, -up * lo, 0.0)
    low = np.where(active | (unstable & (hi > -lo)), 1.0, 0.0)
    return low, up, up_const


def _lower(a: np.ndarray, x: np.ndarray, eps: float, p: float) -> float:
    """min a . x' over ||x' - x||_p <= eps, 0 <= x' <= 1 (l_inf: box; l1: greedy knapsack)."""
    dlo, dhi = np.maximum(-x, -eps), np.minimum(1 - x, eps)
    if p == math.inf:
        return float(a @ x + np.where(a > 0, a * dlo, a * dhi).sum())
    room = np.where(a > 0, -dlo, np.where(a < 0, dhi, 0.0))
    total, left = float(a @ x), eps
    for j in np.argsort(-np.abs(a), kind="stable"):
        take = min(left, room[j])
        total -= abs(a[j]) * take
        left -= take
    return total


def _reference(steps, x: np.ndarray, eps: float, p: float, spec: np.ndarray | None = None):
    """Dense CROWN: bounds on every ReLU's input (as the library tightens them: only neurons the
    interval leaves unstable) and, with ``spec``, the margins' lower bounds."""
    mats = [s.sparse_matrix() if isinstance(s, Affine) else None for s in steps]
    mats = [None if m is None else (np.asarray(m[0].todense()), m[1]) for m in mats]

    def back(a: np.ndarray, upto: int, rel: dict) -> tuple[np.ndarray, float]:
        const = 0.0
        for j in reversed(range(upto)):
            if mats[j] is None:
                low, up, up_const = rel[j]
                const += float(np.minimum(a, 0) @ up_const)
                a = a * np.where(a > 0, low, up)
            else:
                const += float(a @ mats[j][1])
                a = a @ mats[j][0]
        return a, const

    lo, hi = np.maximum(x - eps, 0), np.minimum(x + eps, 1)
    rel, pre, start = {}, {}, 0
    for i, s in enumerate(steps):
        if not isinstance(s, ReLU):
            continue
        for j in range(start, i):  # interval arithmetic from the previous ReLU's output
            w, b = mats[j]
            mid, rad = w @ ((hi + lo) / 2) + b, np.abs(w) @ ((hi - lo) / 2)
            lo, hi = mid - rad, mid + rad
        lo, hi = lo.copy(), hi.copy()
        for k in np.flatnonzero((lo < 0) & (hi > 0)):
            for sign in (1.0, -1.0):
                e = np.zeros(lo.size)
                e[k] = sign
                a, c = back(e, i, rel)
                v = _lower(a, x, eps, p) + c
                if sign > 0:
                    lo[k] = max(lo[k], v)
                else:
                    hi[k] = min(hi[k], -v)
        hi = np.maximum(hi, lo)
        pre[i] = (lo, hi)
        rel[i] = _relax(lo, hi)
        lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
        start = i + 1
    margins = None
    if spec is not None:
        margins = []
        for row in spec:
            a, c = back(row, len(steps), rel)
            margins.append(_lower(a, x, eps, p) + c)
    return pre, margins


@pytest.mark.parametrize("p, eps", [(math.inf, 0.04), (1.0, 0.8)])
def test_patch_bounds_equal_dense_reference(p, eps):
    net = _net().eval()
    steps = sequential_layers(net, (2, 11, 10), like=torch.zeros((), dtype=torch.float64))
    relus = [i for i, s in enumerate(steps) if isinstance(s, ReLU)]
    # the two conv ReLUs take the patch path (the test is about it), the dense one does not
    assert [_patch_geometries(steps, i) is not None for i in relus] == [True, True, False]
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 11, 10))
    y = torch.tensor([0, 1, 2])
    xt = torch.as_tensor(x)
    eps_t = torch.full((3,), eps, dtype=torch.float64)
    with torch.no_grad():
        got = preactivation_bounds(steps, xt, eps_t, p, (0.0, 1.0), cache={})
        margins = crown_margins(steps, xt, y, eps_t, p, (0.0, 1.0), cache={})
    n_unstable = 0
    for q in range(3):
        spec = np.zeros((2, 3))
        others = [k for k in range(3) if k != q]
        spec[:, q] = 1.0
        spec[[0, 1], others] = -1.0
        pre, ref_margins = _reference(steps, x[q].reshape(-1), eps, p, spec)
        for i in relus:
            lo, hi = (t[q].reshape(-1).numpy() for t in got[i])
            np.testing.assert_allclose(lo, pre[i][0], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(hi, pre[i][1], rtol=1e-9, atol=1e-9)
            n_unstable += int(((pre[i][0] < 0) & (pre[i][1] > 0)).sum())
        np.testing.assert_allclose(margins[q].numpy(), ref_margins, rtol=1e-9, atol=1e-9)
    assert n_unstable > 20  # the relaxations matter: not a test of stable neurons only


def test_progress_moves_with_each_bisection_step():
    """The bar of a batch moves once per bound evaluation (iters + 1 of them), not at its end."""
    net = _net().eval()
    steps = sequential_layers(net, (2, 11, 10), like=torch.zeros((), dtype=torch.float64))
    x = torch.as_tensor(np.random.default_rng(1).random((4, 2, 11, 10)))
    with torch.no_grad():
        y = net(x).argmax(1)
    ticks: list[float] = []
    radius = certified_radius(steps, x, y, math.inf, (0.0, 1.0), iters=5, on_step=ticks.append)
    assert len(ticks) == 6 and math.isclose(sum(ticks), 1.0)
    assert (radius > 0).all()

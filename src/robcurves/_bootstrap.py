"""The paired bootstrap over test points behind :func:`robcurves.comparison.compare`.

Resamples draw test points with replacement, the same rows for every curve (paired), in blocks
from one seeded generator, so every evaluation (all knots of a comparison, or the eps of a
table) sees exactly the same resamples. Robust errors of a resample are counted on a grid with
one ``bincount``, never by re-sorting distances.
"""

from __future__ import annotations

import itertools

import numpy as np

# Bootstrap resamples are drawn in blocks of this many rows, in order, from one generator:
# every evaluation (all knots, or a table's eps list) sees exactly the same resamples.
_BLOCK = 64
# Upper bound on the number of float64 cells held at once while evaluating resamples.
_MAX_CELLS = 4_000_000


def blocks(n: int, n_boot: int, seed: int):
    """Yield resample index blocks ``(b, n)``: the same sequence for the same (n, n_boot, seed)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(_BLOCK, n_boot - done)
        yield rng.integers(0, n, size=(b, n), dtype=np.int64)
        done += b


def resampled_errors(bins: np.ndarray, idx: np.ndarray, n_bins: int) -> np.ndarray:
    """Robust error on a grid for each resample.

    ``bins[i]`` is the first grid position whose eps is >= distance i (``n_bins`` when the
    point is beyond the grid). Returns ``(b, n_bins)``: the fraction of resampled points with
    ``bins <= k`` for each grid position k.
    """
    b, n = idx.shape
    flat = (np.arange(b)[:, None] * (n_bins + 1) + bins[idx]).ravel()
    counts = np.bincount(flat, minlength=b * (n_bins + 1)).reshape(b, n_bins + 1)
    return np.cumsum(counts[:, :n_bins], axis=1) / n


def errors_at(dmat: np.ndarray, eps: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Robust errors ``(n_boot, k, m)`` of k curves at m eps on the shared resamples."""
    k, n = dmat.shape
    order = np.argsort(eps)
    grid = eps[order]
    out = np.empty((n_boot, k, eps.size))
    bins = [np.searchsorted(grid, d, side="left") for d in dmat]
    start = 0
    for idx in blocks(n, n_boot, seed):
        for c in range(k):
            out[start:start + idx.shape[0], c, order] = resampled_errors(bins[c], idx, grid.size)
        start += idx.shape[0]
    return out


def sup_stats(dmat: np.ndarray, knots: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, k, k)`` bootstrap sup over all knots of ``|D*_ij - D_ij|``.

    D_ij is the difference of the robust errors of curves i and j; the sup over the knots is
    the sup over all eps because every difference is constant between knots.
    """
    k, n = dmat.shape
    bins = [np.searchsorted(knots, d, side="left") for d in dmat]
    full = np.stack([np.searchsorted(np.sort(d), knots, side="right") / n for d in dmat])
    out = np.zeros((n_boot, k, k))
    start = 0
    rows = max(1, _MAX_CELLS // max(1, k * knots.size))
    for idx in blocks(n, n_boot, seed):
        for s in range(0, idx.shape[0], rows):
            sub = idx[s:s + rows]
            errs = np.stack([resampled_errors(bins[c], sub, knots.size) for c in range(k)])
            for i, j in itertools.combinations(range(k), 2):
                dev = (errs[i] - errs[j]) - (full[i] - full[j])
                m = np.abs(dev).max(axis=1)
                out[start + s:start + s + sub.shape[0], i, j] = m
                out[start + s:start + s + sub.shape[0], j, i] = m
        start += idx.shape[0]
    return out


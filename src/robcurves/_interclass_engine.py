"""The exact nearest-neighbour search behind :func:`robcurves.scale.interclass_distances`.

How the answer stays exact yet fast (all distances are on the raw, flattened inputs):

* Lower bounds from float32 matrix products of the centred data, with a rigorous rounding margin
  ``c * ||a|| * ||b||`` (``c = gamma_{D+3}`` of the standard dot-product error analysis) so that
  they never exceed the true value: l2 uses ``||a - b||^2 = |a|^2 + |b|^2 - 2 a.b``; l1 uses
  ``||d||_1 >= max(||d||_2, ||d||_2^2 / R)`` with R the largest coordinate range of the data.
* The ``k`` points with the smallest bound (for l_inf: the smallest l2 distance) are measured
  exactly in float64; a point's search is finished when its k-th smallest bound is not below the
  best exact distance. Other points get a second pass in which only pairs whose bound is still
  below their current best are measured.
* l_inf has no product expansion; its second pass certifies ``||a - b||_inf >= U_a`` (U_a the
  current best of a) with one matrix product of 0/1 indicators: a coordinate where
  ``a_k - U_a >= l`` and ``b_k <= l`` (or ``a_k + U_a <= h`` and ``b_k >= h``) for a few levels
  l, h near the ends of the data range. Only uncertified pairs are measured. Where that leaves
  more than 25% of a block's pairs unproven (natural images: few pixels sit at the ends of the
  range), it switches to float32 l_inf distances on a fixed random subset of the coordinates,
  a lower bound of the full distance, with a rounding margin. l1 does the same with the l1
  distance of sums over groups of 4 consecutive coordinates (``sum_g |sum_g d| <= ||d||_1``).
* Exact measurements run over coordinate chunks in float64 and drop a pair as soon as its partial
  max / sum reaches the current best, so the reported value is the float64 distance of the
  float32 inputs (what a brute-force NumPy computation in float64 gives, up to summation order).
* The second pass goes in query blocks that are each finished on their own (a block reads and
  writes only its rows' current best), so they can be computed anywhere: with ``ray`` they are
  the batches of :func:`robcurves._ray.run_batches_ray`, on workers that each receive this
  engine (the points and the run's constants, no caches) once through Ray's object store.
* Every tensor of a search lives on the device of the points it is given (the CPU or a GPU),
  and only the finished distances come back to the host. The host waits on the device once per
  coordinate chunk of an exact measurement and once per reference block (whether pairs are
  left, whether to switch to dense bounds): per block, never per pair.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ._norms import norm_name

_U32 = 2.0 ** -24
# reference-side features and l_inf indicators are cached up to this size (bytes) each
_INDICATOR_CACHE_BYTES = 1 << 30
# l_inf and l1: above this fraction of unproven pairs in a block, pass 2 switches to dense bounds
_DENSE_SWITCH = 0.25


def _gamma(n: int) -> float:
    nu = n * _U32
    if nu >= 0.5:
        raise ValueError(f"dimension {n} too large for float32 error bounds")
    return nu / (1.0 - nu)


class Engine:
    """Blockwise exact nearest-neighbour search on one (N, D) float32 matrix.

    Every norm gets a feature map phi with a squared-distance identity that lower-bounds the
    target: l2: phi = centred x, ||phi(a) - phi(b)||^2 = ||a - b||_2^2; l1: phi = the "layer"
    features sqrt(clip(x - t_l, 0, t_{l+1} - t_l)) for levels t_0 = min < ... < t_L = max, for
    which ||phi(a) - phi(b)||^2 <= ||a - b||_1 (|u - v| = u + v - 2 min(u, v), the minimum splits
    over layers and min(s, t) <= sqrt(s t)); l_inf uses the l2 map only to rank candidates.
    One float32 product of augmented features gives ``(1 - e)(|pa|^2 + |pb|^2) - 2 pa.pb``,
    which is <= the exact squared feature distance for ``e = 2.02 (gamma_{F+2} + 3u)``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, p: float, *, k: int, block: int,
                 levels: int, progress: bool, ray: tuple | None = None) -> None:
        # every tensor of the search lives where x does (the CPU or a GPU); y follows it
        self.x, self.y, self.p = x, y.to(x.device), p
        dev = self.dev = x.device
        self.ray = ray  # (RayOptions, torch threads): pass 2 on Ray workers
        self._dense = False  # pass 2 switched to dense bounds (speed only)
        self._ind_cache: dict | bool | None = None  # l_inf reference indicators of a pass 2
        self.n, self.d = int(x.shape[0]), int(x.shape[1])
        self.k, self.block, self.levels, self.progress = k, block, levels, progress
        self.blocks = [(s, min(s + block, self.n)) for s in range(0, self.n, block)]
        self.x_sub: torch.Tensor | None = None  # l_inf coordinate subset (see _dense_linf)
        self.x_pool: torch.Tensor | None = None  # l1 group sums (see _dense_l1)
        self._ref_cache: dict[int, torch.Tensor] = {}  # block start -> reference features
        if not (self.n and self.d):
            return
        lo = torch.full((self.d,), math.inf, dtype=torch.float64, device=dev)
        hi = torch.full((self.d,), -math.inf, dtype=torch.float64, device=dev)
        xmean = torch.zeros(self.d, dtype=torch.float64, device=dev)
        for s, e in self.blocks:
            xb = x[s:e].double()
            xmean += xb.sum(0)
            lo = torch.minimum(lo, xb.amin(0))
            hi = torch.maximum(hi, xb.amax(0))
        self.vmin, self.vmax = float(lo.min()), float(hi.max())
        span = self.vmax - self.vmin
        self.t = [self.vmin + span * i / levels for i in range(levels + 1)]
        # stored values, if few (8-bit images): the l_inf certificate uses the extreme ones
        sample = x[torch.linspace(0, self.n - 1, min(self.n, 512)).long().to(dev)].reshape(-1)
        vals = torch.unique(sample)
        self.values = vals.double() if vals.numel() <= 4096 else None
        # feature mean and squared norms (float64), then the product error margin
        self.fdim = self.d * (levels if p == 1.0 else 1)
        mu = torch.zeros(self.fdim, dtype=torch.float64, device=dev)
        for s, e in self.blocks:
            mu += self._raw_features(s, e).sum(0)
        self.mu = mu / self.n
        self.fsq = torch.empty(self.n, dtype=torch.float64, device=dev)
        var = torch.zeros(self.d, dtype=torch.float64, device=dev)
        xmean /= self.n
        for s, e in self.blocks:
            f = self._raw_features(s, e) - self.mu
            self.fsq[s:e] = (f * f).sum(1)
            xc = x[s:e].double() - xmean
            var += (xc * xc).sum(0)
        self.e = 2.02 * (_gamma(self.fdim + 2) + 3 * _U32)
        # exact passes visit coordinate chunks with the most variance first
        chunk = 256
        starts = list(range(0, self.d, chunk))
        weights = [float(var[s:s + chunk].sum()) for s in starts]  # once per run
        order = sorted(range(len(starts)), key=lambda i: -weights[i])
        self.chunks = [(starts[i], min(starts[i] + chunk, self.d)) for i in order]

    # -- helpers ---------------------------------------------------------------------------

    def _raw_features(self, s: int | torch.Tensor, e: int | None = None) -> torch.Tensor:
        xb = (self.x[s:e] if e is not None else self.x[s]).double()
        if self.p != 1.0:
            return xb
        return torch.cat([(xb - self.t[i]).clamp(0.0, self.t[i + 1] - self.t[i]).sqrt()
                          for i in range(self.levels)], dim=1)

    def _side(self, s: int | torch.Tensor, e: int | None, query: bool) -> torch.Tensor:
        """Augmented float32 features: query [-2 f, (1-e)|f|^2, 1], reference [f, 1, (1-e)|f|^2]."""
        f = self._raw_features(s, e) - self.mu
        sq = (self.fsq[s:e] if e is not None else self.fsq[s]) * (1.0 - self.e)
        one = torch.ones_like(sq)
        cols = [-2.0 * f, sq[:, None], one[:, None]] if query else [f, one[:, None], sq[:, None]]
        return torch.cat(cols, dim=1).float()

    def _ref_side(self, rs: int, re: int) -> torch.Tensor:
        """Transposed reference-side features of one block, kept while they fit the cache."""
        hit = self._ref_cache.get(rs)
        if hit is not None:
            return hit
        out = self._side(rs, re, query=False).T.contiguous()
        if (self.n * (self.fdim + 2) * 4) <= _INDICATOR_CACHE_BYTES:
            self._ref_cache[rs] = out
        return out

    def _lb(self, key: torch.Tensor) -> torch.Tensor:
        """Distance lower bound from a key (a lower bound of the squared feature distance)."""
        key = key.double().clamp_min(0.0)
        return (key.sqrt() if self.p == 2.0 else key) * (1.0 - 1e-6)

    def _mask(self, rows: torch.Tensor, rs: int, re: int, same: bool) -> torch.Tensor:
        """True where a pair is *not* eligible (wrong label relation, or the point itself)."""
        eq = self.y[rows][:, None] == self.y[rs:re][None, :]
        if not same:
            return eq
        return ~eq | (rows[:, None] == torch.arange(rs, re, device=self.dev)[None, :])

    def _exact(self, qi: torch.Tensor, rj: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        """Float64 distances of pairs; pairs proven to reach ``bound`` get inf.

        A float32 sweep over coordinate chunks (most variance first) drops a pair once a
        rigorous lower bound of its partial value (the float32 value shrunk by its worst-case
        rounding) reaches the bound; the pairs left are measured in float64.
        """
        out = torch.full((qi.shape[0],), math.inf, dtype=torch.float64, device=self.dev)
        if qi.numel() == 0:
            return out
        p = self.p
        lim = bound * bound if p == 2.0 else bound
        # true partial >= shrink * float32 partial (one rounding per |a-b| or square, sums)
        shrink = 1.0 - 1.01 * _gamma(self.d + 4)
        per = max(1, (1 << 23) // max(self.d, 1))  # bounded memory per chunk of pairs
        for s in range(0, qi.shape[0], per):
            idx = torch.arange(s, min(s + per, qi.shape[0]), device=self.dev)
            a_i, b_j, l_i = qi[idx], rj[idx], lim[idx]
            if p == math.inf:
                # float64 differences of float32 values are exact, so the running max is exact:
                # a pair is dropped as soon as it reaches the bound (ties included), and a pair
                # that survives every chunk has its exact distance in ``acc``.
                acc64 = torch.zeros(idx.shape[0], dtype=torch.float64, device=self.dev)
                for cs, ce in self.chunks:
                    diff = self.x[a_i, cs:ce].double() - self.x[b_j, cs:ce].double()
                    acc64 = torch.maximum(acc64, diff.abs().amax(1))
                    alive = acc64 < l_i
                    if not bool(alive.all()):
                        idx, a_i, b_j, l_i, acc64 = (idx[alive], a_i[alive], b_j[alive],
                                                     l_i[alive], acc64[alive])
                        if idx.numel() == 0:
                            break
                out[idx] = acc64
                continue
            acc = torch.zeros(idx.shape[0], dtype=torch.float32, device=self.dev)
            for cs, ce in self.chunks:
                diff = self.x[a_i, cs:ce] - self.x[b_j, cs:ce]
                if p == 1.0:
                    acc = acc + diff.abs().sum(1)
                else:
                    acc = acc + (diff * diff).sum(1)
                alive = acc.double() * shrink < l_i
                if not bool(alive.all()):
                    idx, a_i, b_j, l_i, acc = (idx[alive], a_i[alive], b_j[alive], l_i[alive],
                                               acc[alive])
                    if idx.numel() == 0:
                        break
            if idx.numel():
                diff = self.x[a_i].double() - self.x[b_j].double()
                if p == 1.0:
                    d = diff.abs().sum(1)
                else:
                    d = (diff * diff).sum(1)
                keep = d < l_i
                out[idx[keep]] = d[keep].sqrt() if p == 2.0 else d[keep]
        return out

    @staticmethod
    def _update(best: torch.Tensor, arg: torch.Tensor, qi: torch.Tensor, rj: torch.Tensor,
                d: torch.Tensor) -> None:
        """Per-row minimum of ``d`` over pairs (qi, rj) merged into best/arg (in place)."""
        fin = torch.isfinite(d)
        if not bool(fin.any()):
            return
        qi, rj, d = qi[fin], rj[fin], d[fin]
        order = torch.argsort(d, stable=True)
        qi, rj, d = qi[order], rj[order], d[order]
        o2 = torch.argsort(qi, stable=True)
        qi, rj, d = qi[o2], rj[o2], d[o2]
        first = torch.ones_like(qi, dtype=torch.bool)
        first[1:] = qi[1:] != qi[:-1]
        qi, rj, d = qi[first], rj[first], d[first]
        better = d < best[qi]
        best[qi[better]] = d[better]
        arg[qi[better]] = rj[better]

    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="blk", disable=not self.progress, leave=False)

    # -- passes ----------------------------------------------------------------------------

    def run(self, same: bool) -> tuple[np.ndarray, np.ndarray]:
        n = self.n
        best = torch.full((n,), math.inf, dtype=torch.float64, device=self.dev)
        arg = torch.full((n,), -1, dtype=torch.int64, device=self.dev)
        if n == 0:
            return best.cpu().numpy(), arg.cpu().numpy()
        if self.d == 0:  # every pair is at distance 0
            for i in range(n):
                m = ~self._mask(torch.tensor([i], device=self.dev), 0, n, same)[0]
                if bool(m.any()):
                    best[i], arg[i] = 0.0, int(torch.nonzero(m)[0])
            return best.cpu().numpy(), arg.cpu().numpy()
        with highest_precision():
            kth = self._first_pass(same, best, arg)
            if self.p == math.inf:
                todo = torch.nonzero(best > 0).reshape(-1)
            else:
                todo = torch.nonzero(kth < best).reshape(-1)
            if todo.numel():
                self._second_pass(todo, same, best, arg)
        return best.cpu().numpy(), arg.cpu().numpy()

    def _first_pass(self, same: bool, best: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
        """Symmetric blocked products; keep the k smallest keys per row; measure them."""
        n, k = self.n, min(self.k, self.n)
        vals = torch.full((n, k), math.inf, dtype=torch.float32, device=self.dev)
        idx = torch.full((n, k), -1, dtype=torch.int64, device=self.dev)
        nb_ = len(self.blocks)
        bar = self._bar(nb_ * (nb_ + 1) // 2, f"{'same' if same else 'inter'}-class "
                        f"{norm_name(self.p)} pass 1")
        for bi, (qs, qe) in enumerate(self.blocks):
            q = self._side(qs, qe, query=True)
            rows = torch.arange(qs, qe, device=self.dev)
            for rs, re in self.blocks[bi:]:
                key = q @ self._ref_side(rs, re)
                key.masked_fill_(self._mask(rows, rs, re, same), math.inf)
                self._merge(vals, idx, qs, qe, key, rs)
                if rs != qs:
                    self._merge(vals, idx, rs, re, key.T, qs)
                bar.update(1)
        bar.close()
        lbs = self._lb(vals)
        # measure candidates in order of their key, tightening the bound as we go
        for m in range(k):
            rows = torch.nonzero(idx[:, m] >= 0).reshape(-1)
            if rows.numel() == 0:
                break
            if self.p != math.inf:
                rows = rows[lbs[rows, m] < best[rows]]
            cand = idx[rows, m]
            d = self._exact(rows, cand, best[rows])
            self._update(best, arg, rows, cand, d)
        return lbs[:, -1]

    @staticmethod
    def _merge(vals: torch.Tensor, idx: torch.Tensor, s: int, e: int, key: torch.Tensor,
               offset: int) -> None:
        k = vals.shape[1]
        kk = min(k, key.shape[1])
        part = torch.topk(key, kk, dim=1, largest=False, sorted=False)
        allv = torch.cat([vals[s:e], part.values], dim=1)
        alli = torch.cat([idx[s:e], part.indices + offset], dim=1)
        top = torch.topk(allv, k, dim=1, largest=False, sorted=True)
        vals[s:e] = top.values
        idx[s:e] = torch.gather(alli, 1, top.indices).masked_fill_(top.values == math.inf, -1)

    def _levels(self, best: torch.Tensor) -> list[tuple[float, float]]:
        """Indicator levels (low, high) for the l_inf certificate, one set per pass."""
        if self.values is not None:  # quantised data: the lowest / highest stored values
            return list(zip(self.values[:self.levels].tolist(),
                            self.values.flip(0)[:self.levels].tolist(), strict=False))
        span = self.vmax - self.vmin
        fin = best[torch.isfinite(best)]
        gap = float(fin.median()) if fin.numel() else span
        step = max(span - gap, 0.0) / self.levels
        return [(self.vmin + g * step, self.vmax - g * step) for g in range(self.levels)]

    def _query_indicators(self, rows: torch.Tensor, best: torch.Tensor,
                          lv: list[tuple[float, float]]) -> torch.Tensor:
        """Query-side 0/1 matrix certifying ||a - b||_inf >= best[a] (see module docs).

        Column order matches :meth:`_ref_indicators`: per level, [a - u >= low], [a + u <= high].
        """
        u = best[rows][:, None]
        xa = self.x[rows].double()
        return torch.cat([t for low, high in lv for t in ((xa - u >= low), (xa + u <= high))],
                         dim=1).float()

    def _ref_indicators(self, rs: int, re: int, lv: list[tuple[float, float]]) -> torch.Tensor:
        xb = self.x[rs:re]
        return torch.cat([t for low, high in lv for t in ((xb <= low), (xb >= high))],
                         dim=1).float()

    def _dense_linf(self, rows: torch.Tensor, rs: int, re: int, best: torch.Tensor
                    ) -> torch.Tensor:
        """Pairs that may beat ``best``, by float32 l_inf distances on a coordinate subset.

        The l_inf distance over a subset of the coordinates is a lower bound of the full one; a
        fixed, seeded random subset of ``max(256, D // 12)`` coordinates (all of them for
        ``D <= 512``) spreads over the whole image, where neighbouring pixels would repeat each
        other (GTSRB: 0.7% of the pairs left against 6% for the 256 most varying pixels). Each
        float32 difference is within a factor ``1 + u`` of the exact one (absolute values and
        maxima are exact), so ``d32 * (1 - 4u) < best`` keeps every pair that can still win.
        """
        if self.x_sub is None:
            m = max(256, self.d // 12)
            if self.d <= 2 * m:
                self.x_sub = self.x
            else:
                gen = torch.Generator().manual_seed(0)  # the same subset on every device
                cols = torch.randperm(self.d, generator=gen)[:m].sort().values.to(self.dev)
                self.x_sub = self.x[:, cols].contiguous()
        d32 = torch.cdist(self.x_sub[rows], self.x_sub[rs:re], p=math.inf)
        return d32.double() * (1.0 - 4 * _U32) < best[rows][:, None]

    def _dense_l1(self, rows: torch.Tensor, rs: int, re: int, best: torch.Tensor
                  ) -> torch.Tensor:
        """Pairs that may beat ``best`` by the l1 distance of sums over groups of 4 coordinates.

        ``sum_g |sum_{k in g} (a_k - b_k)| <= ||a - b||_1`` for any grouping; consecutive
        coordinates (neighbouring pixels) mostly differ with one sign, so on natural images it
        keeps 93-96% of the distance at a quarter of the cost (GTSRB: 0.7% of the pairs left).
        Rounding: the float32 group sums are within ``u |sum|`` each and the float32 l1 sum
        within ``gamma_{m+2}``, so ``c (1 - gamma) - 1.01 u (||a||_1 + ||b||_1)`` stays below
        the exact distance.
        """
        if self.x_pool is None:
            g = 4
            pad = (-self.d) % g
            pooled = torch.empty(self.n, (self.d + pad) // g, dtype=torch.float32,
                                 device=self.dev)
            self.l1n = torch.empty(self.n, dtype=torch.float64, device=self.dev)
            for s_, e_ in self.blocks:
                xb = torch.nn.functional.pad(self.x[s_:e_].double(), (0, pad))
                pooled[s_:e_] = xb.reshape(e_ - s_, -1, g).sum(2).float()
                self.l1n[s_:e_] = xb.abs().sum(1)
            self.x_pool = pooled
        c = torch.cdist(self.x_pool[rows], self.x_pool[rs:re], p=1.0).double()
        gam = 1.01 * _gamma(self.x_pool.shape[1] + 2)
        lb = c * (1.0 - gam) - 1.01 * _U32 * (self.l1n[rows][:, None] + self.l1n[rs:re][None, :])
        return lb < best[rows][:, None]

    def _second_pass(self, todo: torch.Tensor, same: bool, best: torch.Tensor,
                     arg: torch.Tensor) -> None:
        """Rows not yet proven: only pairs that may still beat the current best are measured.

        The rows go in query blocks of ``block`` rows; each block is finished on its own
        (:meth:`second_pass_block` reads and writes only its rows of ``best`` and ``arg``), in
        this process or, with ``ray``, on Ray workers that each hold this engine once.
        """
        lv = self._levels(best[todo]) if self.p == math.inf else None
        label = f"{'same' if same else 'inter'}-class {norm_name(self.p)} pass 2"
        if self.ray is not None:
            self._second_pass_ray(todo, same, best, arg, lv, label)
            return
        self._dense = False
        self._ind_cache = None
        qblocks = [todo[s:s + self.block] for s in range(0, todo.numel(), self.block)]
        bar = self._bar(len(qblocks) * len(self.blocks), label)
        for rows in qblocks:
            self.second_pass_block(rows, same, best, arg, lv)
            bar.update(len(self.blocks))
        bar.close()

    def _second_pass_ray(self, todo: torch.Tensor, same: bool, best: torch.Tensor,
                         arg: torch.Tensor, lv: list | None, label: str) -> None:
        from ._ray import run_batches_ray

        options, threads = self.ray

        def compute(engine: Engine, a: int, b: int) -> tuple:
            rows = todo[a:b]
            mine_best, mine_arg = best.clone(), arg.clone()
            with highest_precision():
                engine.second_pass_block(rows, same, mine_best, mine_arg, lv)
            return rows, mine_best[rows], mine_arg[rows]

        parts = run_batches_ray(todo.numel(), self.block, compute, self, None, options, threads,
                                progress=label if self.progress else None, join=list)
        for rows, b, a in parts:
            best[rows], arg[rows] = b, a

    def __getstate__(self) -> dict:
        """What a Ray worker gets: the data and the run's constants, no caches or options.
        Tensors travel as NumPy arrays, which Ray's object store hands to each worker without
        a copy (a pickled tensor is copied into and out of the pickle)."""
        state = dict(self.__dict__)
        state.update(_ref_cache={}, x_sub=None, x_pool=None, _ind_cache=None, _dense=False,
                     ray=None)
        return {k: _Array(v.cpu().numpy()) if isinstance(v, torch.Tensor) else v
                for k, v in state.items()}

    def __setstate__(self, state: dict) -> None:
        with warnings.catch_warnings():  # the store's arrays are read-only; nothing writes
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.__dict__.update({k: torch.from_numpy(v.array) if isinstance(v, _Array) else v
                                  for k, v in state.items()})

    def second_pass_block(self, rows: torch.Tensor, same: bool, best: torch.Tensor,
                          arg: torch.Tensor, lv: list[tuple[float, float]] | None) -> None:
        """Pass 2 for one query block ``rows`` (global indices): reads and updates ``best`` and
        ``arg`` at ``rows`` only. The result does not depend on the blocks done before (the
        dense switch and the caches only save work: every filter keeps each pair that may beat
        the row's current best), so any process holding this engine gives the same bytes."""
        linf = self.p == math.inf
        if linf and self._ind_cache is None:
            # reference indicators are the same for every query block: keep them if they fit
            fits = self.n * 2 * len(lv) * self.d * 4 <= _INDICATOR_CACHE_BYTES
            self._ind_cache = {} if fits else False
        cache = self._ind_cache if linf and self._ind_cache is not False else None
        if not linf:
            q = self._side(rows, None, query=True)
        for bi, (rs, re) in enumerate(self.blocks):
            if linf and self._dense:
                cand = self._dense_linf(rows, rs, re, best)
            elif linf:
                b_ind = cache.get(bi) if cache is not None else None
                if b_ind is None:
                    b_ind = self._ref_indicators(rs, re, lv)
                    if cache is not None:
                        cache[bi] = b_ind
                # rebuilt per reference block: rows whose best dropped certify more pairs
                a_ind = self._query_indicators(rows, best, lv)
                # a column that is zero on either side certifies nothing: leave it out
                cols = (a_ind.amax(0) > 0) & (b_ind.amax(0) > 0)
                if bool(cols.all()):
                    hits = a_ind @ b_ind.T
                else:
                    hits = a_ind[:, cols] @ b_ind[:, cols].T
                cand = hits < 0.5
                if float(cand.float().mean()) > _DENSE_SWITCH:
                    # little of the data sits near the ends of its range (natural images):
                    # a float32 l_inf product is cheaper than measuring these pairs, for
                    # this block and every later one
                    self._dense = True
                    cand &= self._dense_linf(rows, rs, re, best)
            elif self.p == 1.0 and self._dense:
                cand = self._dense_l1(rows, rs, re, best)
            else:
                cand = self._lb(q @ self._ref_side(rs, re)) < best[rows][:, None]
                if self.p == 1.0 and float(cand.float().mean()) > _DENSE_SWITCH:
                    # values spread over the range (natural images): the feature bound
                    # is loose there, pooled sums are not
                    self._dense = True
                    cand &= self._dense_l1(rows, rs, re, best)
            cand &= ~self._mask(rows, rs, re, same)
            qi, rj = torch.nonzero(cand, as_tuple=True)
            if qi.numel():
                qi, rj = rows[qi], rj + rs
                d = self._exact(qi, rj, best[qi])
                self._update(best, arg, qi, rj, d)


class highest_precision:
    """Context manager: float32 products in full precision (no reduced-precision kernels)."""

    def __enter__(self) -> None:
        self.prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc: object) -> None:
        torch.set_float32_matmul_precision(self.prev)


class _Array:
    """A tensor's values on their way to a Ray worker (marks what becomes a tensor again)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

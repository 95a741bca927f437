"""HopSkipJump (Chen, Jordan & Wainwright, 2020): a decision-based minimal-norm attack for l2 and
l_inf that needs only predicted labels, for models without gradients (scikit-learn forests,
ONNX graphs that cannot be converted, any ``predict`` callable).

Each point starts from an adversarial (random rays or uniform noise in the box, for unbounded
inputs in the box the batch spans widened by its width; or ``x_init``), moves
it onto the decision boundary by a binary search towards ``x``, then repeats: estimate the
boundary's normal at the current boundary point by Monte-Carlo label queries, step along it by
a geometrically shrinking step size until the label still differs, and binary-search back
onto the boundary towards ``x``. All points of a batch advance together; their step sizes,
probe radii, distances and query counts are tensors.

Queries: every input whose label is asked counts one query for its point. ``budget`` is a
hard per-point cap: a point stops before an iteration that could exceed it. Queries go through
``model.predict``, so ``Distances.cost["forward_per_point"]`` reports the mean queries per
point. Distances from this attack are black-box upper bounds (``hsja.black_box is True``).
"""

from __future__ import annotations

import math

import torch

from .._norms import lp_norm
from ..model import Classifier
from ._core import attack, expand, generator_for, search_box

__all__ = ["hsja", "LabelOracle", "boundary_search"]


class LabelOracle:
    """``oracle(cand, rows)``: whether each candidate is adversarial for its row ``rows``,
    counting one query per candidate for that row in ``queries``.

    A row is untargeted (adversarial: label != ``y``) where ``target`` is -1 (or no ``target``
    is given), and targeted (adversarial: label == ``target``) elsewhere. The labels of the
    last call are kept in ``last_labels``.
    """

    def __init__(self, model: Classifier, y: torch.Tensor, target: torch.Tensor | None = None
                 ) -> None:
        self.model = model
        self.y = y
        self.target = target
        self.queries = torch.zeros(y.shape[0], dtype=torch.int64, device=y.device)
        self.last_labels = torch.zeros(0, dtype=torch.int64, device=y.device)

    def __call__(self, cand: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if cand.shape[0] == 0:
            self.last_labels = torch.zeros(0, dtype=torch.int64, device=self.y.device)
            return torch.zeros(0, dtype=torch.bool, device=self.y.device)
        pred = self.model.predict(cand).to(self.y.device)
        self.last_labels = pred
        self.queries.index_add_(0, rows, torch.ones_like(rows, dtype=torch.int64))
        adv = pred != self.y[rows]
        if self.target is not None:
            t = self.target[rows]
            adv = torch.where(t >= 0, pred == t, adv)
        return adv


def _toward(x: torch.Tensor, xa: torch.Tensor, a: torch.Tensor, p: float,
            radius: torch.Tensor) -> torch.Tensor:
    """Points between ``x`` (a=0) and ``xa`` (a=1): the blend for l2, the projection of ``xa``
    onto the l_inf ball of radius ``a * radius`` around ``x`` for l_inf."""
    if p == 2.0:
        return x + expand(a.to(x.dtype), x) * (xa - x)
    r = expand((a * radius).to(x.dtype), x)
    return torch.minimum(torch.maximum(xa, x - r), x + r)


def boundary_search(oracle: LabelOracle, x: torch.Tensor, xa: torch.Tensor, rows: torch.Tensor,
                    p: float, tol: float) -> torch.Tensor:
    """Binary search between ``x`` (not adversarial) and ``xa`` (adversarial) for the closest
    adversarial along the path of :func:`_toward`, to relative precision ``tol``."""
    m = x.shape[0]
    radius = lp_norm(xa - x, math.inf).double()
    lo = torch.zeros(m, dtype=torch.float64, device=x.device)
    hi = torch.ones(m, dtype=torch.float64, device=x.device)
    for _ in range(max(1, math.ceil(math.log2(1.0 / tol)))):
        mid = (lo + hi) / 2
        adv = oracle(_toward(x, xa, mid, p, radius), rows)
        hi = torch.where(adv, mid, hi)
        lo = torch.where(adv, lo, mid)
    return _toward(x, xa, hi, p, radius)


def _estimate_direction(oracle: LabelOracle, xb: torch.Tensor, rows: torch.Tensor,
                        delta: torch.Tensor, n_evals: int, p: float,
                        bounds: tuple[float, float], gen: torch.Generator,
                        max_elements: int = 1 << 23) -> torch.Tensor:
    """Unit step direction at boundary points ``xb``: the Monte-Carlo estimate of the normal
    pointing into the adversarial side (normalised for l2, its sign for l_inf)."""
    shape = xb.shape[1:]
    d = xb[0].numel()
    out = torch.empty_like(xb)
    chunk = max(1, max_elements // (n_evals * d))
    for s in range(0, xb.shape[0], chunk):
        xc, dc, rc = xb[s:s + chunk], delta[s:s + chunk], rows[s:s + chunk]
        c = xc.shape[0]
        if p == 2.0:
            u = torch.randn((c, n_evals, *shape), generator=gen, device=xb.device, dtype=xb.dtype)
        else:
            u = torch.rand((c, n_evals, *shape), generator=gen, device=xb.device,
                           dtype=xb.dtype) * 2 - 1
        u = u / lp_norm(u.reshape(c * n_evals, -1), 2.0).reshape(c, n_evals, *([1] * len(shape)))
        dd = dc.to(xb.dtype).reshape(c, 1, *([1] * len(shape)))
        cand = (xc[:, None] + dd * u).clamp(*bounds)
        u = (cand - xc[:, None]) / dd  # the probes actually made, after clipping to the box
        phi = oracle(cand.reshape(c * n_evals, *shape), rc.repeat_interleave(n_evals))
        phi = phi.reshape(c, n_evals).to(xb.dtype) * 2 - 1
        mean = phi.mean(1, keepdim=True)
        weight = torch.where(mean.abs() == 1, phi, phi - mean)  # baseline unless all agree
        g = (weight.reshape(c, n_evals, *([1] * len(shape))) * u).mean(1)
        if p == 2.0:
            g = g / expand(lp_norm(g, 2.0).clamp_min(1e-20), g)
        else:
            g = torch.sign(g)
        out[s:s + chunk] = g
    return out


def _ray_starts(oracle: LabelOracle, x: torch.Tensor, rows: torch.Tensor, n_rays: int,
                p: float, bounds: tuple[float, float], gen: torch.Generator,
                span: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adversarials along ``n_rays`` random rays from each point: the step doubles until the
    label changes, then a coarse binary search finds the boundary. Returns per ray (flattened
    point-major, ``len(rows) * n_rays``) the boundary point, its distance (inf where the ray
    left the box unbroken) and the label found there. The steps reach the diameter of ``span``
    (the box, or where it is unbounded the search box of the batch)."""
    lo_b, hi_b = bounds
    width = span[1] - span[0]
    xr = x.repeat_interleave(n_rays, 0)
    rr = rows.repeat_interleave(n_rays)
    if p == 2.0:
        u = torch.randn(xr.shape, generator=gen, device=x.device, dtype=x.dtype)
        u = u / expand(lp_norm(u, 2.0), u)
        top = width * math.sqrt(x[0].numel())
    else:
        u = torch.randint(0, 2, xr.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
        top = width
    cand = xr.clone()
    hit = torch.zeros(xr.shape[0], dtype=torch.bool, device=x.device)
    s = top / 64
    while s <= top * 1.001:
        todo = (~hit).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        c = (xr[todo] + s * u[todo]).clamp(lo_b, hi_b)
        ok = oracle(c, rr[todo])
        cand[todo[ok]] = c[ok]
        hit[todo[ok]] = True
        s *= 2
    dist = torch.full((xr.shape[0],), math.inf, dtype=torch.float64, device=x.device)
    label = torch.full((xr.shape[0],), -1, dtype=torch.int64, device=x.device)
    idx = hit.nonzero().squeeze(1)
    if idx.numel():
        xb = boundary_search(oracle, xr[idx], cand[idx], rr[idx], p, 1e-2)
        oracle(xb, rr[idx])  # one more query per ray: the class on the far side
        label[idx] = oracle.last_labels
        dist[idx] = lp_norm((xb - xr[idx]).double(), p)
        cand[idx] = xb
    return cand, dist, label


def _walk(oracle: LabelOracle, x: torch.Tensor, xa: torch.Tensor, dist: torch.Tensor,
          live: torch.Tensor, p: float, bounds: tuple[float, float], gen: torch.Generator,
          max_queries: int, steps: int | None, init_evals: int, max_evals: int, gamma: float,
          tol: float, max_halvings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HopSkipJump iterations from boundary points ``xa`` (rows ``live``) of the oracle's rows;
    returns the closest adversarials seen and their distances."""
    lo_b, hi_b = bounds
    d = x[0].numel()
    bs_iters = max(1, math.ceil(math.log2(1.0 / tol)))
    best, dist = xa.clone(), dist.clone()
    t = 0
    while steps is None or t < steps:
        t += 1
        n_evals = int(min(init_evals * math.sqrt(t), max_evals))
        cost = n_evals + max_halvings + bs_iters
        rows = (live & (dist > 0) & (oracle.queries + cost <= max_queries)).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        xb = xa[rows]
        cur = lp_norm((xb - x[rows]).double(), p)
        delta = gamma * cur / d
        direction = _estimate_direction(oracle, xb, rows, delta, n_evals, p, bounds, gen)
        eps = cur / math.sqrt(t)
        stepped = xb.clone()
        done = torch.zeros(rows.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(max_halvings):
            todo = (~done).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            cand = (xb[todo] + expand(eps[todo].to(x.dtype), xb[todo]) * direction[todo]
                    ).clamp(lo_b, hi_b)
            ok = oracle(cand, rows[todo])
            stepped[todo[ok]] = cand[ok]
            done[todo[ok]] = True
            eps[todo[~ok]] = eps[todo[~ok]] / 2
        moved = done.nonzero().squeeze(1)
        if moved.numel():
            r = rows[moved]
            nb = boundary_search(oracle, x[r], stepped[moved], r, p, tol)
            xa[r] = nb
            nd = lp_norm((nb - x[r]).double(), p)
            better = nd < dist[r]
            best[r[better]] = nb[better]
            dist[r[better]] = nd[better]
    return best, dist


def start_queries(d: int, *, gamma: float = 1.0, init_rays: int = 10, init_tries: int = 50,
                  tol: float | None = None, n_targets: int = 1) -> int:
    """Label queries per point HopSkipJump spends on its start (the clean check, the random
    rays, the uniform draws and the binary search to the boundary) for inputs of ``d``
    values: the smallest ``budget`` it accepts with these options."""
    tol = float(tol) if tol is not None else min(1e-4, 0.1 * gamma / d)
    bs_iters = max(1, math.ceil(math.log2(1.0 / tol)))
    rays = max(int(init_rays), 1 if int(n_targets) > 1 else 0)
    return 2 + rays * 15 + int(init_tries) + bs_iters


def min_budget(name: str, d: int, options: dict | None = None) -> int:
    """The smallest ``budget`` the decision-based attack ``name`` (``hsja`` or ``boundary``)
    accepts on inputs of ``d`` values with ``options`` (its other keyword options), so a
    caller can refuse a budget before any work."""
    opts = dict(options or {})
    keys = ("gamma", "init_rays", "init_tries", "tol", "n_targets")
    start = start_queries(d, **{k: opts[k] for k in keys if k in opts})
    if name == "hsja":
        return start
    if name == "boundary":
        if opts.get("init_queries") is not None or opts.get("x_init") is not None:
            return 1
        # its HopSkipJump start gets min(3000, budget // 3) queries
        return 3 * start
    raise ValueError(f"min_budget knows hsja and boundary; got {name!r}")


@attack(norms=(2.0, math.inf))
def hsja(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *, budget: int = 5000,
         n_targets: int = 1, steps: int | None = None,
         init_evals: int = 100, max_evals: int = 1000, gamma: float = 1.0, init_rays: int = 10,
         init_tries: int = 50, tol: float | None = None, max_halvings: int = 25, seed: int = 0,
         x_init: torch.Tensor | None = None) -> torch.Tensor:
    """Decision-based minimal-norm adversarials (l2 or l_inf); ``x`` where none was found.

    Untargeted HopSkipJump walks along the boundary of the whole adversarial region, and can
    settle on the boundary of a class that is not the closest (a local minimum: even for a
    linear model the distance to the complement of a convex cell has one per facet). With
    ``n_targets > 1`` the closest ``n_targets`` classes met by the initial rays are attacked
    separately (targeted: the adversarial region of one class of a linear model is convex, so
    its walk has no such local minimum) and each point keeps its closest result; the query
    budget is shared among them.

    Args:
        norm: ``2`` or ``"inf"``.
        budget: hard cap on label queries (model forward passes) per point, the initial ones
            included.
        n_targets: 1 for the untargeted attack; k > 1 to attack the k closest classes found.
        steps: largest number of HopSkipJump iterations (default: until the budget is spent).
        init_evals, max_evals: probes for the normal estimate at iteration ``t`` are
            ``min(init_evals * sqrt(t), max_evals)``.
        gamma: probe radius factor: probes lie at ``gamma * dist / D`` around the boundary
            point (D the input dimension), as in the paper.
        init_rays: random rays from each point searched for starting adversarials (at least
            1 when ``n_targets > 1``); points no ray breaks try uniform draws in the box.
        init_tries: random uniform draws in the box tried to find a starting adversarial.
        tol: relative precision of the binary searches (default ``min(1e-4, 0.1 gamma / D)``).
        max_halvings: geometric step-size halvings tried per iteration.
        seed: seeds the random starts and probes.
        x_init: starting adversarials (rows that are not adversarial fall back to random ones;
            used by the untargeted walk).
    """
    max_queries = int(budget)
    targets = int(n_targets)
    if targets < 1:
        raise ValueError(f"n_targets must be >= 1; got {n_targets}")
    n, d = x.shape[0], x[0].numel()
    bounds = model.bounds
    lo_b, hi_b = bounds
    span = search_box(x, bounds)  # where random starts are drawn
    tol = float(tol) if tol is not None else min(1e-4, 0.1 * gamma / d)
    bs_iters = max(1, math.ceil(math.log2(1.0 / tol)))
    init_rays = max(int(init_rays), 1 if targets > 1 else 0)
    start_cost = start_queries(d, gamma=gamma, init_rays=init_rays, init_tries=init_tries,
                               tol=tol, n_targets=targets)
    if max_queries < start_cost:
        raise ValueError(f"budget={max_queries} cannot even cover the start ({start_cost} "
                         f"queries: the clean check, {init_rays} rays, {init_tries} random draws "
                         f"and a {bs_iters}-step binary search); raise it or lower init_rays")
    gen = generator_for(seed, x.device)
    oracle = LabelOracle(model, y)
    every = torch.arange(n, device=x.device)
    walk = {"p": p, "bounds": bounds, "gen": gen, "steps": steps, "init_evals": init_evals,
            "max_evals": max_evals, "gamma": gamma, "tol": tol, "max_halvings": max_halvings}

    mis = oracle(x, every)
    clean_pred = oracle.last_labels
    dist = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)
    dist[mis] = 0.0
    xa = x.clone()
    found = mis.clone()
    if x_init is not None:
        rows = (~found).nonzero().squeeze(1)
        xi = x_init.detach().to(x.device, x.dtype)[rows]
        inside = ((xi >= lo_b) & (xi <= hi_b)).reshape(rows.shape[0], -1).all(1)
        ok = oracle(xi, rows) & inside
        xa[rows[ok]] = xi[ok]
        found[rows[ok]] = True
    ray_pts = (~found).nonzero().squeeze(1)
    ray_x = ray_d = ray_l = None
    if init_rays > 0 and ray_pts.numel():
        ray_x, ray_d, ray_l = _ray_starts(oracle, x[ray_pts], ray_pts, init_rays, p, bounds, gen,
                                          span)
        pick = ray_d.reshape(-1, init_rays).argmin(1)
        flat = torch.arange(ray_pts.shape[0], device=x.device) * init_rays + pick
        ok = torch.isfinite(ray_d[flat])
        xa[ray_pts[ok]] = ray_x[flat[ok]]
        found[ray_pts[ok]] = True
    for _ in range(init_tries):
        rows = (~found).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        noise = torch.rand((rows.shape[0], *x.shape[1:]), generator=gen, device=x.device,
                           dtype=x.dtype) * (span[1] - span[0]) + span[0]
        ok = oracle(noise, rows)
        xa[rows[ok]] = noise[ok]
        found[rows[ok]] = True
    live = found & ~mis
    rows = live.nonzero().squeeze(1)
    if rows.numel():
        xb = boundary_search(oracle, x[rows], xa[rows], rows, p, tol)
        xa[rows] = xb
        dist[rows] = lp_norm((xb - x[rows]).double(), p)

    if targets == 1 or ray_d is None:
        best, dist = _walk(oracle, x, xa, dist, live, max_queries=max_queries, **walk)
        return torch.where(expand(torch.isfinite(dist), x), best, x)
    best = torch.where(expand(torch.isfinite(dist), x), xa, x)
    _targeted(oracle, model, x, y, ray_pts, ray_x, ray_d, ray_l, clean_pred, init_rays, targets,
              best, dist, max_queries, bs_iters, walk)
    return torch.where(expand(torch.isfinite(dist), x), best, x)


def _targeted(oracle: LabelOracle, model: Classifier, x: torch.Tensor, y: torch.Tensor,
              ray_pts: torch.Tensor, ray_x: torch.Tensor, ray_d: torch.Tensor,
              ray_l: torch.Tensor, clean_pred: torch.Tensor, n_rays: int, targets: int,
              best: torch.Tensor,
              dist: torch.Tensor, max_queries: int, bs_iters: int, walk: dict) -> None:
    """Targeted walks towards the ``targets`` closest classes (met by the rays, or predicted
    for other inputs of the batch, which then serve as starting points), one row per
    (point, class) pair, each with an equal share of its point's remaining budget; updates
    ``best``/``dist`` in place where a pair beats the untargeted start."""
    m, dev = ray_pts.shape[0], x.device
    k = int(model.num_classes or max(int(ray_l.max()), int(clean_pred.max())) + 1)
    d_by_ray = ray_d.reshape(m, n_rays)
    l_by_ray = ray_l.reshape(m, n_rays)
    per_class = torch.full((m, k), math.inf, dtype=torch.float64, device=dev)
    per_class.scatter_reduce_(1, l_by_ray.clamp_min(0), d_by_ray, reduce="amin")
    # Other inputs of the batch that the model puts in class c are starting points too.
    flat = x.reshape(x.shape[0], -1).double()
    apart = torch.cdist(flat[ray_pts], flat, p=walk["p"])  # (m, n)
    example = torch.full((m, k), math.inf, dtype=torch.float64, device=dev)
    example.scatter_reduce_(1, clean_pred[None, :].expand(m, -1), apart, reduce="amin")
    example[torch.arange(m, device=dev), y[ray_pts]] = math.inf
    order = torch.minimum(per_class, example).argsort(1)[:, :targets]
    reach = torch.isfinite(per_class.gather(1, order)) | torch.isfinite(example.gather(1, order))
    pi, ci = reach.nonzero(as_tuple=True)
    if pi.numel() == 0:
        return
    cls = order[pi, ci]
    masked = torch.where(l_by_ray[pi] == cls[:, None], d_by_ray[pi], math.inf)
    from_ray = ray_x.reshape(m, n_rays, *x.shape[1:])[pi, masked.argmin(1)]
    ex_masked = torch.where(clean_pred[None, :] == cls[:, None], apart[pi], math.inf)
    use_ex = example[pi, cls] < per_class[pi, cls]
    starts = torch.where(expand(use_ex, from_ray), x[ex_masked.argmin(1)], from_ray)
    pts = ray_pts[pi]
    share = torch.bincount(pts, minlength=x.shape[0])[pts]
    budget = (max_queries - oracle.queries[pts]) // share
    keep = budget > bs_iters
    pts, cls, starts, budget = pts[keep], cls[keep], starts[keep], budget[keep]
    if pts.numel() == 0:
        return
    sub = LabelOracle(model, y[pts], cls)
    sub.queries = -budget  # each pair may spend its own share: its counter starts below zero
    pair_rows = torch.arange(pts.shape[0], device=dev)
    sb = boundary_search(sub, x[pts], starts, pair_rows, walk["p"], walk["tol"])
    pd = lp_norm((sb - x[pts]).double(), walk["p"])
    alive = torch.ones(pts.shape[0], dtype=torch.bool, device=dev)
    pb, pd = _walk(sub, x[pts], sb, pd, alive, max_queries=0, **walk)
    oracle.queries.index_add_(0, pts, sub.queries + budget)
    closest = torch.full_like(dist, math.inf)
    closest.scatter_reduce_(0, pts, pd, reduce="amin")
    wins = ((pd == closest[pts]) & (pd < dist[pts])).nonzero().squeeze(1)
    best[pts[wins]] = pb[wins]
    dist[pts[wins]] = pd[wins]

hsja.black_box = True

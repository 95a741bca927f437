"""Pieces every attack shares: projections onto l_p balls inside the box, box-aware gradient
masking, losses, random starts, per-point best-adversarial tracking and convergence, seeded
random generators, annealing, and the checks of hyperparameters.

Per-point quantities (eps, step size, done flags) are tensors of shape ``(N,)``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import torch

from .._norms import lp_norm, norm_name, parse_norm
from ..model import Classifier, margin, wrap

__all__ = [
    "BestAdversarial", "Convergence", "project", "project_l1_box", "box_mask", "normalize",
    "margin_loss", "ce_loss", "expand", "generator_for", "steepest_step", "line_search",
    "random_start", "cosine", "check_positive", "check_count", "default_patience",
    "box_radius", "search_box", "query_remaining", "attack", "check_attack_inputs", "per_point_eps",
    "check_hyperparameters",
]


def expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample ``(N,)`` tensor to broadcast against ``(N, ...)``."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def generator_for(seed: int | torch.Generator | None, device: torch.device
                  ) -> torch.Generator | None:
    """A new generator on ``device`` seeded with ``seed``; a ``torch.Generator`` is used as it
    is (and advances), so that a caller such as a training loop draws new starts per batch;
    ``None`` is torch's global generator."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def cosine(k: int, steps: int, start: float, end: float) -> float:
    """Cosine annealing from ``start`` (k = 0) to ``end`` (k = steps)."""
    return end + (start - end) * (1 + math.cos(math.pi * k / max(steps, 1))) / 2


def check_positive(name: str, value: float, strict: bool = True) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number ``> 0``
    (``>= 0`` when not ``strict``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if strict else value < 0):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} 0; "
                         f"got {value!r}")


def check_count(name: str, value: int, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


#: hyperparameters that mean one thing in every attack (see :mod:`robcurves.attacks`): the least
#: integer each takes
_COUNTS = {"steps": 1, "restarts": 0, "budget": 1, "refine": 0, "search_steps": 0,
           "candidates": 1, "n_targets": 1, "patience": 0}
_SIMPLE = {"int", "float", "bool", "str", "None"}
_WORDS = {"int": "an integer", "float": "a finite number", "bool": "true or false",
          "str": "a string", "None": "None"}


def check_hyperparameters(attack_name: str, signature: inspect.Signature, options: dict) -> None:
    """Raise ``ValueError`` naming the attack, the option, the value and what it takes, for a
    value of the wrong type (by the annotation: ``int``, ``float``, ``bool``, ``str``, and
    ``None`` where it is allowed; a ``bool`` is not a number, an integer is a float), a
    non-finite float, a count below its least value (``steps`` >= 1, ``restarts`` >= 0...) or
    a ``tol`` that is not > 0. Options with other annotations (tensors, tuples) are left to
    the attack; unknown names are the caller's to refuse."""
    import numbers

    for key, value in options.items():
        q = signature.parameters.get(key)
        if q is None or not isinstance(q.annotation, str):
            continue
        kinds = {a.strip() for a in q.annotation.split("|")}
        if not kinds <= _SIMPLE:
            continue
        if value is None:
            ok = "None" in kinds
        elif isinstance(value, bool):
            ok = "bool" in kinds
        elif isinstance(value, numbers.Integral):
            ok = bool(kinds & {"int", "float"})
        elif isinstance(value, numbers.Real):
            ok = "float" in kinds and math.isfinite(float(value))
        else:
            ok = isinstance(value, str) and "str" in kinds
        low = _COUNTS.get(key) if "int" in kinds else None
        if ok and value is not None and low is not None and value < low:
            ok = False
        if ok and key == "tol" and value is not None and not value > 0:
            ok = False
        if not ok:
            words = [_WORDS[k] for k in ("int", "float", "bool", "str") if k in kinds]
            if "float" in kinds and "int" in kinds:
                words.remove(_WORDS["int"])
            what = " or ".join(words)
            if low is not None:
                what += f" >= {low}"
            elif key == "tol":
                what += " > 0"
            if "None" in kinds:
                what += " (or None)"
            raise ValueError(f"{attack_name}: {key} must be {what}; got {value!r}")


def default_patience(steps: int, patience: int | None) -> int:
    """The convergence patience of the iterative minimal-norm attacks: ``max(10, steps // 5)``
    steps unless given (``0`` disables stopping)."""
    return max(10, steps // 5) if patience is None else int(patience)


def box_radius(x: torch.Tensor, p: float, bounds: tuple[float, float]) -> torch.Tensor:
    """Per point, the l_p distance from ``x`` to the farthest point of the box: no adversarial
    inside the box is farther (``inf`` where the box is unbounded)."""
    lo, hi = bounds
    return lp_norm(torch.maximum(x - lo, hi - x), p)


def search_box(x: torch.Tensor, bounds: tuple[float, float]) -> tuple[float, float]:
    """Where searches that need a finite box (random starts in the box, a largest radius) look:
    the input box itself, or where a bound is infinite the range the batch ``x`` spans widened
    by its width (at least 1) on each side, within the bounds."""
    lo, hi = bounds
    if math.isfinite(lo) and math.isfinite(hi):
        return bounds
    a, b = float(x.min()), float(x.max())
    w = max(b - a, 1.0)
    return max(lo, a - w), min(hi, b + w)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-margin``: ascending it pushes the runner-up class above the true one."""
    return -margin(logits, y)


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


def box_mask(grad: torch.Tensor, x_adv: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Zero the components of an *ascent* direction that would push ``x_adv`` out of the box."""
    lo, hi = bounds
    blocked = ((x_adv <= lo) & (grad < 0)) | ((x_adv >= hi) & (grad > 0))
    return grad.masked_fill(blocked, 0.0)


def normalize(g: torch.Tensor, p: float) -> torch.Tensor:
    """``g / ||g||_p`` per sample (zero rows stay zero)."""
    n = lp_norm(g, p).clamp_min(1e-12)
    return g / expand(n, g)


def steepest_step(g: torch.Tensor, p: float, sparsity: float = 0.99) -> torch.Tensor:
    """Unit-l_p steepest-ascent direction for gradient ``g``: ``sign(g)`` for l_inf,
    ``g / ||g||_2`` for l2, and for l1 the sign of ``g`` on its top ``1 - sparsity`` fraction of
    coordinates (at least one), l1-normalised."""
    if p == math.inf:
        return torch.sign(g)
    if p == 2.0:
        return normalize(g, 2.0)
    flat = g.reshape(g.shape[0], -1)
    a = flat.abs()
    k = max(1, int(round((1.0 - sparsity) * flat.shape[1])))
    thr = a.topk(k, dim=1).values[:, -1:]
    e = torch.sign(flat) * ((a >= thr) & (a > 0))
    return normalize(e, 1.0).reshape(g.shape)


def project_l1_box(delta: torch.Tensor, eps: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   max_iters: int = 64) -> torch.Tensor:
    """Euclidean projection of ``delta`` onto ``{d : ||d||_1 <= eps, lo <= d <= hi}``, exactly.

    ``lo <= 0 <= hi`` elementwise. The solution is ``clip(soft_threshold(delta, lam), lo, hi)``
    with the smallest ``lam >= 0`` meeting the l1 constraint. With ``a = |delta|`` and ``c`` the
    room the box leaves in the direction of ``sign(delta)``, the l1 norm of that point is
    ``f(lam) = sum_i clip(a_i - lam, 0, c_i)``: non-increasing and linear between its kinks
    ``a_i - c_i`` and ``a_i``. Bisection on ``lam`` runs only until no kink lies strictly
    inside a point's bracket (typically 10-20 steps); ``f`` is then linear on the bracket and
    ``lam`` follows exactly by interpolation. A bracket that still holds a kink after
    ``max_iters`` steps (kinks closer than the float resolution) takes its feasible upper end.
    """
    n = delta.shape[0]
    flat, lo_f, hi_f = (t.reshape(n, -1) for t in (delta, lo, hi))
    out = torch.minimum(torch.maximum(flat, lo_f), hi_f)
    eps_t = eps.to(flat.dtype).expand(n) if eps.numel() == 1 else eps.to(flat.dtype)
    rows = (out.abs().sum(1) > eps_t).nonzero().squeeze(1)
    if rows.numel() == 0:
        return out.reshape(delta.shape)
    v = flat[rows]
    a = v.abs()
    cap = torch.where(v >= 0, hi_f[rows], -lo_f[rows]).clamp_min(0.0)
    kinks = torch.cat([a - cap, a], dim=1)
    e = eps_t[rows]

    def f(lam: torch.Tensor) -> torch.Tensor:
        return torch.minimum((a - lam[:, None]).clamp_min(0.0), cap).sum(1)

    lam_lo = torch.zeros_like(e)
    lam_hi = a.amax(1)
    f_lo, f_hi = f(lam_lo), torch.zeros_like(e)
    done = torch.zeros_like(e, dtype=torch.bool)
    for it in range(max_iters):
        if it >= 8 and it % 2 == 0:  # linear on the bracket once no kink is strictly inside
            inside = ((kinks > lam_lo[:, None]) & (kinks < lam_hi[:, None])).any(1)
            done = ~inside
            if bool(done.all()):
                break
        mid = (lam_lo + lam_hi) / 2
        f_mid = f(mid)
        over = f_mid > e
        lam_lo = torch.where(over, mid, lam_lo)
        f_lo = torch.where(over, f_mid, f_lo)
        lam_hi = torch.where(over, lam_hi, mid)
        f_hi = torch.where(over, f_hi, f_mid)
    t = ((f_lo - e) / (f_lo - f_hi).clamp_min(torch.finfo(a.dtype).tiny)).clamp(0.0, 1.0)
    lam = torch.where(done, lam_lo + t * (lam_hi - lam_lo), lam_hi)
    proj = torch.sign(v) * (a - lam[:, None]).clamp_min(0.0)
    out = out.clone()
    out[rows] = torch.minimum(torch.maximum(proj, lo_f[rows]), hi_f[rows])
    return out.reshape(delta.shape)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, p: float,
            bounds: tuple[float, float]) -> torch.Tensor:
    """Map ``x_adv`` into ``{x' : ||x' - x||_p <= eps, x' in box}`` (exact for l_inf and l1;
    for l2 the ball projection followed by clipping, which stays feasible)."""
    lo, hi = bounds
    delta = x_adv - x
    e = expand(eps, x)
    if p == math.inf:
        delta = torch.maximum(torch.minimum(delta, e), -e)
    elif p == 2.0:
        nrm = expand(lp_norm(delta, 2.0), x)
        delta = delta * torch.clamp(e / nrm.clamp_min(1e-12), max=1.0)
    else:
        return x + project_l1_box(delta, eps, lo - x, hi - x)
    return torch.clamp(x + delta, lo, hi)


def random_start(x: torch.Tensor, eps: torch.Tensor, p: float, bounds: tuple[float, float],
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A random point of the l_p ball of radius ``eps`` around ``x``, projected into the box."""
    n, dim = x.shape[0], x[0].numel()
    if p == math.inf:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        delta = u * expand(eps, x)
    else:
        if p == 2.0:
            v = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        else:  # Laplace directions are uniform on the l1 sphere once normalised
            e = torch.empty(x.shape, device=x.device, dtype=x.dtype)
            e = e.exponential_(generator=generator)
            s = torch.randint(0, 2, x.shape, generator=generator, device=x.device) * 2 - 1
            v = e * s
        r = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / dim)
        delta = normalize(v, p) * expand(r * eps, x)
    return project(x + delta, x, eps, p, bounds)


class BestAdversarial:
    """Per point, the closest *verified* adversarial seen so far.

    ``update`` is given candidates together with the logits the model returned for exactly
    those candidates, so tracking costs no extra model passes. A candidate counts as
    adversarial when its margin ``z_y - max_k z_k`` is below ``-margin_tol * max(1, max|z|)``
    (2e-6): points within float noise of the boundary could flip when re-evaluated.
    """

    margin_tol: float = 2e-6

    def __init__(self, x: torch.Tensor, y: torch.Tensor, p: float) -> None:
        self.x, self.y, self.p = x, y, p
        self.best = x.clone()
        self.dist = torch.full((x.shape[0],), math.inf, dtype=torch.float64, device=x.device)

    @property
    def found(self) -> torch.Tensor:
        return torch.isfinite(self.dist)

    def update(self, cand: torch.Tensor, logits: torch.Tensor,
               rows: torch.Tensor | None = None) -> torch.Tensor:
        """Consider ``cand`` for the points ``rows`` (all if None); returns the adversarial mask."""
        rows = torch.arange(self.x.shape[0], device=self.x.device) if rows is None else rows
        # misclassified with a margin above float noise, so that re-evaluating the candidate
        # in another batch (another summation order) cannot flip it back
        noise = self.margin_tol * logits.detach().abs().amax(1).clamp_min(1.0)
        adv = margin(logits.detach(), self.y[rows]) < -noise
        d = self.distance((cand - self.x[rows]).double())
        better = adv & (d < self.dist[rows])
        # selected with torch.where, not a boolean index: no device-to-host sync per step
        keep = better.reshape((-1,) + (1,) * (cand.ndim - 1))
        self.best[rows] = torch.where(keep, cand.detach().to(self.best.dtype), self.best[rows])
        self.dist[rows] = torch.where(better, d, self.dist[rows])
        return adv

    def distance(self, delta: torch.Tensor) -> torch.Tensor:
        """The per-point size of ``delta`` that "closest" refers to (the l_p norm; a subclass
        may rank by another measure, as EAD's elastic-net decision rule does)."""
        return lp_norm(delta, self.p)

    def set_clean_misclassified(self, mis: torch.Tensor) -> None:
        self.dist[mis] = 0.0
        self.best[mis] = self.x[mis]


class Convergence:
    """Per-point stop rule shared by the iterative minimal-norm attacks: a broken point is done
    once its best distance in ``tracker`` has not shrunk by more than ``tol`` (relative) during
    ``patience`` steps (``patience <= 0``: never), or ``near_patience`` steps for the points a
    step calls near (see :meth:`stale`)."""

    def __init__(self, tracker: BestAdversarial, tol: float, patience: int,
                 near_patience: int | None = None) -> None:
        self.tracker, self.tol, self.patience = tracker, tol, int(patience)
        self.near_patience = self.patience if near_patience is None else int(near_patience)
        self.ref = tracker.dist.clone()
        self.ref_step = torch.zeros(tracker.dist.shape[0], dtype=torch.long,
                                    device=tracker.dist.device)

    def stale(self, k: int, rows: torch.Tensor, near: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Record step ``k`` for the points ``rows``; True for those that have converged. The
        points where ``near`` (bool per row) is True wait ``near_patience`` steps instead."""
        d = self.tracker.dist[rows]
        improved = d < self.ref[rows] * (1 - self.tol)
        self.ref[rows] = torch.where(improved, d, self.ref[rows])
        self.ref_step[rows] = torch.where(improved, torch.full_like(rows, k), self.ref_step[rows])
        if self.patience <= 0:
            return torch.zeros_like(improved)
        wait = k - self.ref_step[rows]
        need = torch.full_like(wait, self.patience)
        if near is not None:
            need = torch.where(near, self.near_patience, need)
        return self.tracker.found[rows] & (wait >= need)


@torch.no_grad()
def query_remaining(model: Classifier, tracker: BestAdversarial, active: torch.Tensor,
                    points: torch.Tensor) -> None:
    """Show ``tracker`` the last iterates ``points`` of the points still ``active``: a loop
    that queries before it steps has not evaluated them yet (one forward pass each)."""
    rows = active.nonzero().squeeze(1)
    if rows.numel():
        tracker.update(points[rows], model.logits(points[rows]), rows)


@torch.no_grad()
def line_search(model: Classifier, tracker: BestAdversarial, steps: int = 10,
                start: float = 0.0) -> None:
    """Bisect each point's segment from ``x`` to its best adversarial for the boundary.

    ``steps`` forward passes per broken point (the segment stays inside the box, which is
    convex); every adversarial probe updates ``tracker``. Shrinks an adversarial that overshot
    the boundary (DeepFool's overshoot, DDN's ``1 + gamma`` radius) to within ``2**-steps`` of
    its distance. ``start`` > 0 bisects only the part of the segment beyond that fraction (for
    adversarials known to overshoot by less; the bracket's lower end is then not checked, so
    an overshoot beyond it is cut to that fraction and no further).
    """
    rows = (tracker.found & (tracker.dist > 0)).nonzero().squeeze(1)
    if rows.numel() == 0 or steps <= 0:
        return
    x, direction = tracker.x[rows], tracker.best[rows] - tracker.x[rows]
    lo = torch.full((rows.numel(),), float(start), dtype=x.dtype, device=x.device)
    hi = torch.ones_like(lo)
    for _ in range(int(steps)):
        mid = (lo + hi) / 2
        cand = x + expand(mid, x) * direction
        adv = tracker.update(cand, model.logits(cand), rows)
        hi = torch.where(adv, mid, hi)
        lo = torch.where(adv, lo, mid)


def check_attack_inputs(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch ``(N, ...)`` of finite inputs inside the
    model's bounds and ``y`` holds ``N`` integer labels."""
    if x.ndim < 1 or y.ndim != 1:
        raise ValueError(f"x must be a batch (N, ...) and y labels (N,); got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length; got {x.shape[0]} and {y.shape[0]}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class labels; got dtype {y.dtype}")
    model.check_inputs(x)


def per_point_eps(eps: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A fixed-epsilon attack's radius as an ``(N,)`` tensor in ``x``'s dtype (a float applies
    to every point); raises unless it has that shape and is finite and ``>= 0``."""
    n = x.shape[0]
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps_t.ndim == 0:
        eps_t = eps_t.expand(n)
    if eps_t.shape != (n,):
        raise ValueError(f"eps must be a float or a tensor of shape ({n},); got shape "
                         f"{tuple(eps_t.shape)}")
    if not (torch.isfinite(eps_t).all() and (eps_t >= 0).all()):
        raise ValueError(f"eps must be finite and >= 0; got min {float(eps_t.min())}, "
                         f"max {float(eps_t.max())}")
    return eps_t.clone()


_HEAD = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ann)
         for name, ann in (("model", "Classifier | torch.nn.Module"), ("x", "torch.Tensor"),
                           ("y", "torch.Tensor"), ("norm", "float | str"))]


def attack(norms: tuple[float, ...] | None = None) -> Callable[[Callable], Callable]:
    """Decorator making a public attack from its implementation.

    The implementation is ``impl(model: Classifier, x, y, p: float, *, <hyperparameters>,
    tracker=None)``, called with a wrapped model, checked inputs on the model's device and the
    parsed norm ``p``. The public function is ``name(model, x, y, norm, *, <hyperparameters>)``
    (the contract in :mod:`robcurves.attacks`): it accepts a :class:`~robcurves.model.Classifier`
    or anything :func:`~robcurves.model.wrap` takes (a plain ``torch.nn.Module`` gets the
    default bounds ``(0, 1)``), any spelling of the norm, refuses norms outside ``norms`` (all
    if None), runs :func:`check_attack_inputs`, then calls the implementation. ``tracker``, the
    private per-point best-adversarial plumbing, is not part of it: the pipelines (``auto``,
    ``ensemble``, the epsilon search) call ``name._run`` (the implementation) directly; so are
    the implementation's keywords whose names start with ``_`` (the pipelines' plumbing too).
    """
    def make(impl: Callable) -> Callable:
        sig = inspect.signature(impl)
        tail = [q for q in list(sig.parameters.values())[4:]
                if q.name != "tracker" and not q.name.startswith("_")]
        public_sig = sig.replace(parameters=_HEAD + tail)
        name = impl.__name__

        @functools.wraps(impl)
        def public(model, x, y, norm, **kwargs):  # noqa: ANN001, ANN202 (see __signature__)
            public_sig.bind(model, x, y, norm, **kwargs)  # unknown or private keyword: TypeError
            check_hyperparameters(name, sig, kwargs)
            p = parse_norm(norm)
            if norms is not None and p not in norms:
                raise ValueError(f"{name} supports only the "
                                 f"{' and '.join(norm_name(q) for q in norms)} norm"
                                 f"{'s' if len(norms) > 1 else ''}; got {norm!r}")
            clf = model if isinstance(model, Classifier) else wrap(model)
            x, y = torch.as_tensor(x), torch.as_tensor(y)
            check_attack_inputs(clf, x, y)
            return impl(clf, x.detach().to(clf.device), y.to(clf.device), p, **kwargs)

        del public.__wrapped__
        public.__signature__ = public_sig
        public._run = impl
        return public
    return make

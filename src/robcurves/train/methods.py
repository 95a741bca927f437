"""Training methods: each turns a batch into the loss to minimise.

A method is built once per run by :func:`make_method` from its name, its threat models and its
options, then called per batch with the current schedule (eps scale, kappa). Adversarial examples
always come from :func:`robcurves.attacks.pgd` (the one PGD of the package), generated with the
network in eval mode (BatchNorm uses running statistics) and then trained on in train mode.

Methods: ``standard``, ``pgd-at`` (Madry et al. 2018; l_inf, l2, l1 with sparse steps), ``trades``
(Zhang et al. 2019), ``multi-avg`` / ``multi-max`` (Tramer & Boneh 2019), ``ibp`` (Gowal et al.
2018), ``kw`` (Wong & Kolter 2018, the dual network of :mod:`._kw`), ``mmr-at`` (Croce,
Andriushchenko & Hein 2019, the regulariser of :mod:`._mmr` plus PGD) and ``mmr-universal``
(Croce & Hein 2020).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._norms import norm_name, parse_norm
from ..attacks._pgd import pgd
from ..model import Classifier

__all__ = [
    "ThreatModel", "Schedule", "Method", "METHODS", "make_method", "method_names",
    "combine_losses", "parse_threats", "worst_case_logits", "ibp_logit_bounds", "KW", "MMR",
]


@dataclass(frozen=True)
class ThreatModel:
    """One perturbation set used in training: the l_p ball of radius ``eps`` (raw input units)
    intersected with the input box, attacked by ``steps`` PGD steps of ``step_size * eps / steps``
    (and, for l1, steps that move the top ``1 - sparsity`` fraction of coordinates).

    ``norm`` accepts any :data:`~robcurves._norms.NormLike` spelling and holds the float p
    (``math.inf``, ``2.0``, ``1.0``) like every ``.norm`` in robcurves; ``norm_name`` is its
    name (``"linf"``...), used in labels and in the metadata of model files."""

    norm: float
    eps: float
    steps: int = 10
    step_size: float = 2.5
    sparsity: float = 0.99

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))
        if not (math.isfinite(float(self.eps)) and float(self.eps) >= 0):
            raise ValueError(f"eps must be a finite number >= 0; got {self.eps!r}")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be >= 1; got {self.steps!r}")
        if float(self.step_size) <= 0:
            raise ValueError(f"step_size must be > 0; got {self.step_size!r}")
        if not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity must lie in [0, 1); got {self.sparsity!r}")
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "step_size", float(self.step_size))
        object.__setattr__(self, "sparsity", float(self.sparsity))

    @property
    def p(self) -> float:
        """The same as ``norm``."""
        return self.norm

    @property
    def norm_name(self) -> str:
        """``"linf"``, ``"l2"`` or ``"l1"``."""
        return norm_name(self.norm)

    @property
    def label(self) -> str:
        """Short name such as ``"linf@0.1"``."""
        return f"{self.norm_name}@{self.eps:g}"

    def as_dict(self) -> dict:
        """Plain fields for model metadata, the norm by name (``sparsity`` only for l1)."""
        d = asdict(self)
        d["norm"] = self.norm_name
        if self.norm != 1.0:
            d.pop("sparsity")
        return d


def parse_threats(spec: str | list | tuple | None, steps: int = 10,
                  step_size: float = 2.5) -> list[ThreatModel]:
    """Threat models from ``"linf:0.1,l2:1.5,l1:10"``, a list of such strings, of dicts
    (``{"norm": "l2", "eps": 1.5, "steps": 20}``) or of :class:`ThreatModel`."""
    if spec is None:
        return []
    items = [s for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        if isinstance(item, ThreatModel):
            out.append(item)
        elif isinstance(item, dict):
            out.append(ThreatModel(**{"steps": steps, "step_size": step_size, **item}))
        elif isinstance(item, str) and ":" in item:
            n, e = item.split(":", 1)
            try:
                eps = float(e)
            except ValueError:
                raise ValueError(f"bad threat {item!r}: eps {e!r} is not a number") from None
            out.append(ThreatModel(n.strip(), eps, steps, step_size))
        else:
            raise ValueError(f"bad threat {item!r}; expected 'norm:eps' such as 'linf:0.1'")
    return out


@dataclass(frozen=True)
class Schedule:
    """Where training stands for the current batch.

    Attributes:
        eps_scale: fraction of the training eps used now (eps warm-up), in [0, 1].
        kappa: weight of the clean loss in certified training (1 -> 0.5 typically).
        epoch: fractional epochs done before this batch (``2.5``: half-way through the third).
        epochs: epochs of the whole run (MMR's schedules depend on both).
    """

    eps_scale: float = 1.0
    kappa: float = 0.0
    epoch: float = 0.0
    epochs: int = 1


def combine_losses(losses: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Combine per-attack, per-example losses ``(A, N)`` as Tramer & Boneh do.

    ``"max"``: per example the attack with the largest loss (ties: the first), averaged over the
    batch; the gradient reaches only the chosen entries. ``"avg"``: the mean over all attacks and
    examples. Returns ``(scalar loss, chosen attack per example or None)``.
    """
    if losses.ndim != 2:
        raise ValueError(f"losses must have shape (attacks, examples); got {tuple(losses.shape)}")
    if mode == "max":
        idx = losses.detach().argmax(dim=0)
        return losses.gather(0, idx[None]).squeeze(0).mean(), idx
    if mode == "avg":
        return losses.mean(), None
    raise ValueError(f"mode must be 'max' or 'avg'; got {mode!r}")


def worst_case_logits(lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logits with the true class at its lower bound and every other class at its upper bound:
    their cross-entropy upper-bounds that of every logit vector inside the bounds."""
    return upper.scatter(1, y[:, None], lower.gather(1, y[:, None]))


def ibp_logit_bounds(module: nn.Module, lower: torch.Tensor, upper: torch.Tensor,
                     y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds on ``z_k - z_y`` (upper) for every class k, for inputs in the box.

    Uses :func:`robcurves.certificates.ibp.ibp_bounds` up to the last layer; when that layer is
    ``Linear``, the differences ``(w_k - w_y) h + b_k - b_y`` are bounded exactly over the
    penultimate box (Gowal et al.'s specification trick, tighter than subtracting logit
    intervals). Returns ``(lower, upper)`` of the logits *relative to the true class* with
    ``0`` at the true class, so ``upper.max(1) < 0`` certifies the point.
    """
    from ..certificates.ibp import ibp_bounds

    if isinstance(module, nn.Sequential) and len(module) > 1 and isinstance(module[-1],
                                                                           nn.Linear):
        hl, hu = ibp_bounds(module[:-1], lower, upper)
        hl, hu = hl.flatten(1), hu.flatten(1)
        last = module[-1]
        w, b = last.weight, last.bias
        dw = w[None, :, :] - w[y][:, None, :]  # (N, K, H)
        db = (b[None, :] - b[y][:, None]) if b is not None else 0.0
        c, r = (hu + hl) / 2, (hu - hl) / 2
        mid = torch.einsum("nkh,nh->nk", dw, c) + db
        rad = torch.einsum("nkh,nh->nk", dw.abs(), r)
        return mid - rad, mid + rad
    zl, zu = ibp_bounds(module, lower, upper)
    zy_l = zl.gather(1, y[:, None])
    zy_u = zu.gather(1, y[:, None])
    lo, hi = zl - zy_u, zu - zy_l
    true = F.one_hot(y, lo.shape[1]).bool()
    return lo.masked_fill(true, 0.0), hi.masked_fill(true, 0.0)


class Method:
    """Base class: ``loss(module, clf, x, y, schedule)`` -> ``(loss, logits for accuracy)``.

    Attributes:
        name: the method's name.
        threats: the threat models it trains against (empty for ``standard``).
        options: its options (recorded in the model's metadata).
        certified: whether it trains against certified (bound propagation) losses.
    """

    name = "base"
    certified = False

    def __init__(self, threats: list[ThreatModel], generator: torch.Generator | None = None,
                 **options) -> None:
        self.threats = list(threats)
        self.generator = generator
        self.options = dict(options)

    def loss(self, module: nn.Module, clf: Classifier, x: torch.Tensor, y: torch.Tensor,
             schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def attack(self, module: nn.Module, clf: Classifier, x: torch.Tensor, y: torch.Tensor,
               tm: ThreatModel, eps_scale: float, loss: object = "ce",
               x_init: torch.Tensor | None = None) -> torch.Tensor:
        """PGD adversarials for ``tm`` at ``eps_scale * tm.eps`` (the module in eval mode while
        attacking, restored afterwards); a random start unless ``x_init`` is given."""
        eps = tm.eps * float(eps_scale)
        if eps <= 0:
            return x.detach()
        was_training = module.training
        module.eval()
        try:
            x_adv = pgd(clf, x, y, tm.p, eps=eps, steps=tm.steps, step_size=tm.step_size,
                        loss=loss, random_init=x_init is None, x_init=x_init,
                        seed=self.generator, sparsity=tm.sparsity)
        finally:
            module.train(was_training)
        return x_adv


class Standard(Method):
    """Cross-entropy on clean inputs."""

    name = "standard"

    def __init__(self, threats, generator=None) -> None:
        super().__init__([], generator)

    def loss(self, module, clf, x, y, schedule):
        z = module(x)
        return F.cross_entropy(z, y), z


class PGDAT(Method):
    """Madry et al.: cross-entropy on PGD adversarials (random start), optionally mixed with the
    clean loss: ``(1 - clean_mix) * CE(adv) + clean_mix * CE(clean)``."""

    name = "pgd-at"

    def __init__(self, threats, generator=None, clean_mix: float = 0.0) -> None:
        if not 0.0 <= float(clean_mix) <= 1.0:
            raise ValueError(f"clean_mix must lie in [0, 1]; got {clean_mix!r}")
        if len(threats) != 1:
            raise ValueError(f"pgd-at trains against exactly one threat model; got {len(threats)}"
                             " (use multi-avg or multi-max for several)")
        super().__init__(threats, generator, clean_mix=float(clean_mix))

    def loss(self, module, clf, x, y, schedule):
        x_adv = self.attack(module, clf, x, y, self.threats[0], schedule.eps_scale)
        z_adv = module(x_adv)
        loss = F.cross_entropy(z_adv, y)
        m = self.options["clean_mix"]
        if m > 0:
            loss = (1 - m) * loss + m * F.cross_entropy(module(x), y)
        return loss, z_adv


class TRADES(Method):
    """Zhang et al. 2019: ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with x' maximising the KL
    term by PGD from ``x + 0.001 * N(0, 1)``."""

    name = "trades"

    def __init__(self, threats, generator=None, beta: float = 6.0) -> None:
        if float(beta) < 0:
            raise ValueError(f"beta must be >= 0; got {beta!r}")
        if len(threats) != 1:
            raise ValueError(f"trades trains against exactly one threat model; got {len(threats)}")
        super().__init__(threats, generator, beta=float(beta))

    def loss(self, module, clf, x, y, schedule):
        tm = self.threats[0]
        module.eval()
        with torch.no_grad():
            p_clean = F.softmax(module(x), dim=1)
        module.train()

        def kl(z: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
            if z.shape[0] != p_clean.shape[0]:
                raise RuntimeError("TRADES' KL loss expects the whole batch at every PGD step")
            return (p_clean * (torch.log(p_clean.clamp_min(1e-12)) - F.log_softmax(z, 1))).sum(1)

        noise = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        x0 = (x + 0.001 * noise).clamp(*clf.bounds)
        x_adv = self.attack(module, clf, x, y, tm, schedule.eps_scale, loss=kl, x_init=x0)
        z = module(x)
        z_adv = module(x_adv)
        robust = F.kl_div(F.log_softmax(z_adv, 1), F.softmax(z, 1), reduction="batchmean")
        return F.cross_entropy(z, y) + self.options["beta"] * robust, z


class MultiAT(Method):
    """Tramer & Boneh 2019: adversarial training against several threat models at once.
    ``multi-max`` trains each example on the attack with the largest loss; ``multi-avg`` on the
    adversarials of every attack (see :func:`combine_losses`)."""

    def __init__(self, threats, generator=None, mode: str = "max") -> None:
        if len(threats) < 1:
            raise ValueError("multi-perturbation training needs at least one threat model "
                             "(threats='linf:0.1,l2:1.5,l1:10')")
        super().__init__(threats, generator)
        self.mode = mode
        self.name = f"multi-{mode}"

    def loss(self, module, clf, x, y, schedule):
        advs = [self.attack(module, clf, x, y, tm, schedule.eps_scale) for tm in self.threats]
        logits = [module(a) for a in advs]
        losses = torch.stack([F.cross_entropy(z, y, reduction="none") for z in logits])
        loss, idx = combine_losses(losses, self.mode)
        zs = torch.stack(logits)  # (A, N, K)
        if idx is None:  # report the worst attack's logits for accuracy in both modes
            idx = losses.detach().argmax(dim=0)
        z_rep = zs.gather(0, idx[None, :, None].expand(1, *zs.shape[1:])).squeeze(0)
        return loss, z_rep


class IBP(Method):
    """Gowal et al. 2018: ``kappa * CE(clean) + (1 - kappa) * CE(worst case logits)`` over the
    l_inf box ``[x - eps, x + eps] ∩ [0, 1]`` with interval bound propagation; eps ramps up and
    kappa down (the schedule comes from :func:`robcurves.train.fit`)."""

    name = "ibp"
    certified = True
    bound_fn = staticmethod(ibp_logit_bounds)

    def __init__(self, threats, generator=None, kappa: float = 0.5) -> None:
        if len(threats) != 1 or threats[0].norm != math.inf:
            got = ", ".join(t.label for t in threats) or "none"
            raise ValueError(f"{self.name} trains against one l_inf threat model; got {got}")
        if not 0.0 <= float(kappa) <= 1.0:
            raise ValueError(f"kappa must lie in [0, 1]; got {kappa!r}")
        super().__init__(threats, generator, kappa=float(kappa))

    def loss(self, module, clf, x, y, schedule):
        z = module(x)
        eps = self.threats[0].eps * schedule.eps_scale
        kappa = schedule.kappa
        loss = F.cross_entropy(z, y)
        if eps > 0 and kappa < 1:
            lo_b, hi_b = clf.bounds
            _, rel_hi = type(self).bound_fn(module, (x - eps).clamp(lo_b, hi_b),
                                             (x + eps).clamp(lo_b, hi_b), y)
            # cross-entropy of the worst-case logits relative to the true class (z_y - z_y = 0)
            worst = F.cross_entropy(rel_hi, y)
            loss = kappa * loss + (1 - kappa) * worst
        return loss, z


def _steps_of(module: nn.Module, x: torch.Tensor) -> list:
    """The certifiers' flattened layers of ``module`` for inputs shaped like ``x``."""
    from ..certificates._layers import sequential_layers

    return sequential_layers(module, x.shape[1:], like=x)


class KW(Method):
    """Wong & Kolter 2018: cross-entropy of the worst-case logits ``-m`` where ``m`` lower-bounds
    the margins ``f_y - f_k`` over the l_p ball (∩ the input box) by the dual network
    (:func:`robcurves.train._kw.kw_margins`; l_inf as published, l2 and l1 also work). The radius
    grows linearly from ``eps_start`` (published 0.01) to the training eps over the warm-up
    (:func:`robcurves.train.fit` default: ``min(20, epochs / 2)`` epochs, Wong et al.'s
    ``schedule_length`` 20). Options:

    - ``eps_start``: radius at the start of the ramp (0.01; must not exceed eps).
    - ``intermediate``: ``"dual"`` (pre-activation bounds by the dual network, as published) or
      ``"ibp"`` (interval bounds; much cheaper, looser).

    The network must be a ``nn.Sequential`` the certifiers can walk (``cnn-small``, ``mlp``...),
    evaluated with BatchNorm in eval mode.
    """

    name = "kw"
    certified = True

    def __init__(self, threats, generator=None, eps_start: float = 0.01,
                 intermediate: str = "dual") -> None:
        from ._kw import INTERMEDIATE

        if len(threats) != 1:
            raise ValueError(f"kw trains against exactly one threat model; got {len(threats)}")
        tm = threats[0]
        if not (math.isfinite(float(eps_start)) and 0 <= float(eps_start) <= tm.eps):
            raise ValueError(f"eps_start must lie in [0, eps={tm.eps:g}]; got {eps_start!r}")
        if intermediate not in INTERMEDIATE:
            raise ValueError(f"intermediate must be one of {', '.join(INTERMEDIATE)}; got "
                             f"{intermediate!r}")
        super().__init__(threats, generator, eps_start=float(eps_start),
                         intermediate=intermediate)

    def eps_now(self, schedule: Schedule) -> float:
        """The radius trained at now: ``eps_start + eps_scale * (eps - eps_start)``."""
        e0 = self.options["eps_start"]
        return e0 + float(schedule.eps_scale) * (self.threats[0].eps - e0)

    def margins(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                bounds: tuple[float, float]) -> torch.Tensor:
        """Lower bounds ``(N, K)`` on ``f_y - f_k`` at radius ``eps`` (0 at ``k = y``)."""
        from ._kw import kw_margins

        e = torch.full((x.shape[0],), float(eps), dtype=x.dtype, device=x.device)
        return kw_margins(_steps_of(module, x), x, y, e, self.threats[0].p, bounds,
                          self.options["intermediate"])

    def loss(self, module, clf, x, y, schedule):
        z = module(x)
        m = self.margins(module, x, y, self.eps_now(schedule), clf.bounds)
        return F.cross_entropy(-m, y), z

    @torch.no_grad()
    def certified_accuracy(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                           bounds: tuple[float, float] = (0.0, 1.0), batch: int = 64) -> float:
        """Fraction of points whose margins the dual network certifies at the training eps."""
        ok = 0
        for i in range(0, x.shape[0], batch):
            m = self.margins(module, x[i:i + batch], y[i:i + batch], self.threats[0].eps,
                             bounds)
            m = m.masked_fill(F.one_hot(y[i:i + batch], m.shape[1]).bool(), math.inf)
            ok += int((m.amin(1) > 0).sum())
        return ok / max(1, x.shape[0])


def _positive(name: str, value: object) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(float(value)) and value > 0):
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    return float(value)


def _fraction(name: str, value: object) -> float:
    if not (isinstance(value, (int, float)) and 0 <= float(value) <= 1):
        raise ValueError(f"{name} must lie in [0, 1]; got {value!r}")
    return float(value)


class MMR(Method):
    """Maximum Margin Regularisation: ``CE + ramp * lambda * MMR`` (:mod:`robcurves.train._mmr`).

    ``mmr-at`` (Croce, Andriushchenko & Hein 2019): one norm (the threat model's, l_inf or l2),
    and the first ``ae_frac`` of each batch replaced by PGD adversarials of the threat model
    (published: half; PGD with 40 steps on MNIST/Fashion-MNIST, pass ``steps=40``).
    ``mmr-universal`` (Croce & Hein 2020): the l1 and l_inf terms together (weights
    ``lambda_l1``, ``lambda_linf``; radii ``gamma_l1``, ``gamma_linf``), no adversarial examples;
    its threat model only names the evaluation norm and eps.

    Options and their published defaults (the Fashion-MNIST small-CNN models of the papers'
    repositories):

    - ``lam``: lambda (mmr-at: 2.0 for l_inf, 1.5 for l2).
    - ``gamma_b``, ``gamma_d``: hyperplane radii gamma_B, gamma_D (mmr-at: 0.15 l_inf, 0.45 l2).
    - ``gamma_l1`` (1.0), ``gamma_linf`` (0.15), ``lambda_l1`` (3.0), ``lambda_linf`` (40.0):
      mmr-universal.
    - ``kb_start``, ``kb_end``: k_B as a fraction of all hidden units, moved linearly from the
      first to the last epoch (mmr-at 0.1 -> 0.02; mmr-universal 0.2 -> 0.05).
    - ``k_d``: k_D, the nearest decision hyperplanes counted (default: the number of classes,
      i.e. all; the true class counts as 0, as published).
    - ``ramp_epochs``: the regulariser's weight is ``min((epoch + 1) / ramp_epochs, 1)`` with
      ``epoch`` counted from 0 (published: 10).
    - ``ae_frac``: fraction of each batch replaced by adversarials (mmr-at 0.5; mmr-universal 0).
    - ``chunk``: points per checkpointed chunk of the regulariser (memory only, 16).

    Like ``kw``, the network must be a ``nn.Sequential`` of the layers the certifiers walk
    (ReLU networks: ``cnn-small``, ``mlp``...). The regulariser computes every hidden unit's
    hyperplane normal in each point's linear region (about 6 CPU-seconds per batch of 128 for
    ``cnn-small`` on 28x28 inputs, one thread, by an exact shortcut for its conv layers; other
    networks pay one forward pass per input coordinate).
    """

    def __init__(self, threats, generator=None, universal: bool = False,
                 lam: float | None = None, gamma_b: float | None = None,
                 gamma_d: float | None = None, gamma_l1: float = 1.0, gamma_linf: float = 0.15,
                 lambda_l1: float = 3.0, lambda_linf: float = 40.0,
                 kb_start: float | None = None, kb_end: float | None = None,
                 k_d: int | None = None, ramp_epochs: float = 10.0,
                 ae_frac: float | None = None, chunk: int = 16) -> None:
        self.name = "mmr-universal" if universal else "mmr-at"
        if len(threats) != 1:
            raise ValueError(f"{self.name} trains against exactly one threat model; got "
                             f"{len(threats)}")
        tm = threats[0]
        if universal:
            unused = {k: v for k, v in (("lam", lam), ("gamma_b", gamma_b),
                                        ("gamma_d", gamma_d)) if v is not None}
            if unused:
                raise ValueError(f"mmr-universal takes gamma_l1, gamma_linf, lambda_l1 and "
                                 f"lambda_linf, not {', '.join(sorted(unused))}")
            if ae_frac not in (None, 0, 0.0):
                raise ValueError(f"mmr-universal uses no adversarial examples; got ae_frac="
                                 f"{ae_frac!r}")
            opts = {"gamma_l1": _positive("gamma_l1", gamma_l1),
                    "gamma_linf": _positive("gamma_linf", gamma_linf),
                    "lambda_l1": _positive("lambda_l1", lambda_l1),
                    "lambda_linf": _positive("lambda_linf", lambda_linf), "ae_frac": 0.0}
            kb = (0.2, 0.05)
        else:
            if tm.norm not in (math.inf, 2.0):
                raise ValueError(f"mmr-at trains against l_inf or l2; got {tm.label} (use "
                                 "mmr-universal for l1)")
            linf = tm.norm == math.inf
            opts = {"lam": _positive("lam", 2.0 if lam is None and linf else
                                     1.5 if lam is None else lam),
                    "gamma_b": _positive("gamma_b", (0.15 if linf else 0.45)
                                         if gamma_b is None else gamma_b),
                    "gamma_d": _positive("gamma_d", (0.15 if linf else 0.45)
                                         if gamma_d is None else gamma_d),
                    "ae_frac": _fraction("ae_frac", 0.5 if ae_frac is None else ae_frac)}
            kb = (0.1, 0.02)
        opts["kb_start"] = _fraction("kb_start", kb[0] if kb_start is None else kb_start)
        opts["kb_end"] = _fraction("kb_end", kb[1] if kb_end is None else kb_end)
        if k_d is not None and not (isinstance(k_d, int) and k_d >= 1):
            raise ValueError(f"k_d must be an integer >= 1; got {k_d!r}")
        opts["k_d"] = k_d
        opts["ramp_epochs"] = _positive("ramp_epochs", ramp_epochs)
        if not (isinstance(chunk, int) and chunk >= 1):
            raise ValueError(f"chunk must be an integer >= 1; got {chunk!r}")
        opts["chunk"] = chunk
        super().__init__(threats, generator, **opts)
        self.universal = universal

    def ramp(self, schedule: Schedule) -> float:
        """The regulariser's weight factor at this batch (published: per epoch)."""
        return min((math.floor(schedule.epoch) + 1) / self.options["ramp_epochs"], 1.0)

    def k_b(self, schedule: Schedule, hidden: int) -> int:
        """k_B at this batch: a fraction of the ``hidden`` units moving linearly from
        ``kb_start`` (epoch 1) to ``kb_end`` (last epoch), at least 1."""
        o = self.options
        t = min((math.floor(schedule.epoch) + 1) / max(1, schedule.epochs), 1.0)
        start, end = int(o["kb_start"] * hidden), int(o["kb_end"] * hidden)
        return max(1, int(start + (end - start) * t))

    def regulariser(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    schedule: Schedule) -> torch.Tensor:
        """Per-point MMR (or MMR-Universal) term, lambda included, ramp not ``(N,)``."""
        from ..certificates._layers import ReLU
        from ._mmr import mmr_terms

        steps = _steps_of(module, x)
        hidden = sum(math.prod(s.in_shape) for s in steps if isinstance(s, ReLU))
        k_classes = steps[-1].out_shape[0]
        o = self.options
        k_d = k_classes if o["k_d"] is None else o["k_d"]
        kb = self.k_b(schedule, hidden)
        if self.universal:
            # q = inf is the dual of l1, q = 1 the dual of l_inf
            return mmr_terms(steps, x, y, (math.inf, 1.0), (o["gamma_l1"], o["gamma_linf"]),
                             (o["gamma_l1"], o["gamma_linf"]),
                             (o["lambda_l1"], o["lambda_linf"]), kb, k_d, o["chunk"])
        p = self.threats[0].norm
        q = 1.0 if p == math.inf else 2.0
        return mmr_terms(steps, x, y, (q,), (o["gamma_b"],), (o["gamma_d"],), (o["lam"],), kb,
                         k_d, o["chunk"])

    def loss(self, module, clf, x, y, schedule):
        n_adv = int(self.options["ae_frac"] * x.shape[0])
        if n_adv > 0:
            x_adv = self.attack(module, clf, x[:n_adv], y[:n_adv], self.threats[0],
                                schedule.eps_scale)
            x = torch.cat([x_adv, x[n_adv:]])
        z = module(x)
        loss = F.cross_entropy(z, y)
        r = self.ramp(schedule)
        if r > 0:
            loss = loss + r * self.regulariser(module, x, y, schedule).mean()
        return loss, z


def _make_mmr(universal: bool):
    def make(threats, generator=None, **options):
        return MMR(threats, generator, universal=universal, **options)
    return make


def _make_multi(mode: str):
    def make(threats, generator=None, **options):
        return MultiAT(threats, generator, mode=mode, **options)
    return make


#: name -> constructor ``(threats, generator, **options) -> Method``
METHODS = {
    "standard": Standard,
    "pgd-at": PGDAT,
    "trades": TRADES,
    "multi-avg": _make_multi("avg"),
    "multi-max": _make_multi("max"),
    "ibp": IBP,
    "kw": KW,
    "mmr-at": _make_mmr(False),
    "mmr-universal": _make_mmr(True),
}


def method_names() -> list[str]:
    """Names :func:`make_method` accepts."""
    return sorted(METHODS)


def make_method(name: str, threats: list[ThreatModel], generator: torch.Generator | None = None,
                **options) -> Method:
    """Build the method ``name`` against ``threats`` with ``options`` (``beta`` for trades,
    ``clean_mix`` for pgd-at, ``kappa`` for ibp...); errors name unknown methods and options."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(method_names())}")
    try:
        return METHODS[name](threats, generator, **options)
    except TypeError as err:
        raise ValueError(f"bad options {sorted(options)} for method {name!r}: {err}") from None

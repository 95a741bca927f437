"""The accuracy/robustness trade-off of Tsipras et al. ("Robustness may be at odds with
accuracy", ICLR 2019) on their distribution (:mod:`robcurves.data.synthetic`).

For each dimension d the study trains logistic regression and a small ReLU MLP, standardly
(training eps 0) and adversarially in l_inf (PGD adversarial training, training eps up to
2 eta), on unbounded inputs. Each model gets robustness curves on held-out points: exact ones
for logistic regression (``certify(method="exact-linear")``) and attack ones for the MLP
(:func:`robcurves.distances`), overlaid on the exact population curves of the paper's
averaging, robust and Bayes classifiers (and, for logistic regression, of the trained model
itself). It reports clean accuracy against training eps, the crossings :func:`robcurves.compare`
finds between the standard and the most robust model with their significance, and checks

**Theorem 2.1** (Tsipras et al.): any classifier with standard accuracy at least ``1 - delta``
has robust accuracy at most ``p / (1 - p) * delta`` against an l_inf adversary with
``eps >= 2 eta``.

on every trained model at ``eps = 2 eta``: exactly on the population for logistic regression,
and on the held-out sample for the MLP (the attack's robust accuracy is an upper bound on the
true one, so the check is conservative; it passes when the sample excess
``robust acc - p / (1 - p) * error`` is below 3 standard errors).

:func:`run` returns plain results and writes models, curves and a page; everything finished is
reused when it is run again on the same folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.synthetic import TsiprasParams, tsipras
from ._tradeoff_vision import VisionConfig

__all__ = ["TradeoffConfig", "ModelResult", "train_model", "theorem_check", "run"]


@dataclass(frozen=True)
class TradeoffConfig:
    """What the study runs.

    Attributes:
        dims: the d of each distribution (inputs have d + 1 features).
        p: P[x_1 = y]; eta is the paper's 3 / sqrt(d) for every d.
        eps_fractions: training eps as multiples of eta (0 = standard training).
        n_train, n_test: points drawn for training (seed 0) and evaluation (seed 1).
        n_attack: held-out points attacked per MLP and norm (the first ``n_attack``).
        epochs, batch_size, lr: Adam training; ``pgd_steps`` PGD steps per batch; the
            training eps grows from 0 over the first ``warmup`` fraction of the steps.
        hidden: width of the MLP's hidden layer.
        norms: norms of the curves (l_inf always; the theorem's norm).
        attack: minimal-norm attack for the MLP curves.
        seed: seeds initialisation, shuffling and PGD.
        vision: the "what robust models see" part on images (:mod:`._tradeoff_vision`);
            ``None`` leaves it out.
    """

    dims: tuple[int, ...] = (100, 400, 1000)
    p: float = 0.95
    eps_fractions: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    n_train: int = 10000
    n_test: int = 5000
    n_attack: int = 1000
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    pgd_steps: int = 7
    warmup: float = 0.8
    hidden: int = 64
    norms: tuple[str, ...] = ("linf", "l2")
    attack: str = "fmn"
    seed: int = 0
    vision: VisionConfig | None = field(default_factory=VisionConfig)

    @classmethod
    def quick(cls) -> TradeoffConfig:
        return cls(dims=(100, 400), n_train=3000, n_test=2000, n_attack=300, epochs=12,
                   norms=("linf",), pgd_steps=5, vision=VisionConfig.quick())

    def __post_init__(self) -> None:
        if not self.dims or any(int(d) < 1 for d in self.dims):
            raise ValueError(f"dims must be integers >= 1; got {self.dims!r}")
        TsiprasParams(d=int(self.dims[0]), p=self.p)
        if any(f < 0 for f in self.eps_fractions) or 0.0 not in self.eps_fractions:
            raise ValueError(f"eps_fractions must be >= 0 and include 0 (standard training); "
                             f"got {self.eps_fractions!r}")
        for k in ("n_train", "n_test", "n_attack", "epochs", "batch_size", "pgd_steps", "hidden"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1; got {getattr(self, k)!r}")
        if "linf" not in self.norms:
            raise ValueError(f"norms must include linf (the theorem's norm); got {self.norms!r}")


@dataclass
class ModelResult:
    """One trained model's numbers (accuracies are fractions)."""

    d: int
    arch: str
    eps_fraction: float
    train_eps: float
    clean_acc: float                      # held-out sample
    robust_acc_2eta: float                # held-out, l_inf eps = 2 eta (attack: upper bound)
    bound_2eta: float                     # p / (1 - p) * held-out clean error
    slack: float                          # bound - robust acc (negative: over the bound)
    excess_se: float                      # standard error of robust acc - bound
    theorem_ok: bool
    pop_clean_acc: float | None = None    # linear models: exact population values
    pop_robust_acc_2eta: float | None = None
    pop_bound_2eta: float | None = None
    pop_theorem_ok: bool | None = None
    seconds: float = 0.0
    curves: dict = field(default_factory=dict)   # norm name -> curve file


def _module(arch: str, dim: int, hidden: int) -> nn.Module:
    if arch == "logreg":
        return nn.Sequential(nn.Linear(dim, 2))
    if arch == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    raise ValueError(f"arch must be 'logreg' or 'mlp'; got {arch!r}")


def train_model(x: np.ndarray, y: np.ndarray, arch: str, eps: float, *, epochs: int = 10,
                batch_size: int = 128, lr: float = 3e-3, pgd_steps: int = 5, hidden: int = 64,
                warmup: float = 0.8, seed: int = 0) -> nn.Module:
    """Train ``arch`` (``logreg`` or ``mlp``) on unbounded inputs: cross-entropy with Adam
    (cosine learning rate), on PGD l_inf adversarial examples of radius ``eps`` (standard
    training for eps 0). The radius grows linearly from 0 to ``eps`` over the first ``warmup``
    fraction of the steps: without it the MLP collapses to chance at eps >= 1.5 eta (and with
    0.5 it still did at d = 400, eps = 2 eta).

    ``robcurves.train.fit`` assumes inputs in [0, 1]; this loop is the unbounded counterpart
    for the study's vector data, with :func:`robcurves.attacks.pgd` as the training attack.
    """
    from ..attacks import pgd
    from ..model import wrap

    if eps < 0 or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    if not 0 <= warmup <= 1:
        raise ValueError(f"warmup must be a fraction in [0, 1]; got {warmup!r}")
    torch.manual_seed(seed)
    module = _module(arch, x.shape[1], hidden)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    clf = wrap(module, bounds=None)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    gen = torch.Generator().manual_seed(seed)
    n = len(yt)
    steps_total = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps_total)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            xb, yb = xt[idx], yt[idx]
            ramp = min(1.0, (step + 1) / (warmup * steps_total)) if warmup > 0 else 1.0
            step += 1
            if eps > 0:
                module.eval()
                xb = pgd(clf, xb, yb, norm="inf", eps=eps * ramp, steps=pgd_steps,
                         step_size=2.5, random_init=True, seed=gen)
            module.train()
            loss = nn.functional.cross_entropy(module(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return module.eval()


def linear_weights(module: nn.Module) -> tuple[np.ndarray, float]:
    """``(w, b)`` with class "+1" (index 1) where ``w . x + b > 0`` for a 2-class linear
    module."""
    lin = module[0] if isinstance(module, nn.Sequential) else module
    wt = lin.weight.detach().double().numpy()
    bt = lin.bias.detach().double().numpy()
    return wt[1] - wt[0], float(bt[1] - bt[0])


def theorem_check(robust_correct: np.ndarray, clean_wrong: np.ndarray, p: float
                  ) -> tuple[float, float, float, bool]:
    """Theorem 2.1 on a sample: ``(bound, slack, standard error, ok)`` with
    ``bound = p / (1 - p) * mean(clean_wrong)``, ``slack = bound - mean(robust_correct)`` and
    ``ok`` when ``-slack <= 3`` standard errors of the per-point excess (the population
    statement cannot be checked exactly on a sample)."""
    from ..population import tsipras_theorem_bound

    r = np.asarray(robust_correct, dtype=np.float64)
    w = np.asarray(clean_wrong, dtype=np.float64)
    if r.shape != w.shape or r.size < 2:
        raise ValueError(f"need two per-point arrays of the same length >= 2; got {r.shape}, "
                         f"{w.shape}")
    bound = tsipras_theorem_bound(float(w.mean()), p)
    excess = r - p / (1 - p) * w
    se = float(excess.std(ddof=1) / math.sqrt(r.size))
    slack = bound - float(r.mean())
    return bound, slack, se, bool(-slack <= 3 * se + 1e-12)


def _curve(clf, arch: str, x: np.ndarray, y: np.ndarray, norm: str, name: str, cfg,
           store: Path):
    from .. import certify, distances
    from ..curve import RobustnessCurve

    if arch == "logreg":
        d = certify(clf, x, y, norm, method="exact-linear")
    else:
        d = distances(clf, x, y, norm, attack=cfg.attack, seed=cfg.seed, store=store)
    return RobustnessCurve.from_distances(d, name=name, metadata={"method": d.method})


def _evaluate(module: nn.Module, arch: str, d: int, frac: float, eta: float, test, cfg,
              out: Path, tag: str) -> ModelResult:
    from ..curve import RobustnessCurve
    from ..model import wrap
    from ..population import tsipras_linear_curve, tsipras_theorem_bound

    clf = wrap(module, bounds=None)
    n_eval = cfg.n_test if arch == "logreg" else min(cfg.n_attack, cfg.n_test)
    x, y = test.x[:n_eval], test.y[:n_eval]
    with torch.no_grad():
        pred = module(torch.as_tensor(test.x)).argmax(1).numpy()
    clean_acc = float((pred == test.y).mean())
    curves = {}
    for nm in cfg.norms:
        f = out / "curves" / f"{tag}-{nm}.json"
        if not f.exists():
            c = _curve(clf, arch, x, y, nm, tag, cfg, out / "work" / f"{tag}-{nm}")
            c.save(f)
        curves[nm] = str(f.relative_to(out))
    lc = RobustnessCurve.load(out / curves["linf"])
    robust_correct = lc.distances > 2 * eta          # robust accuracy at eps = 2 eta
    clean_wrong = (pred[:n_eval] != y)
    bound, slack, se, ok = theorem_check(robust_correct, clean_wrong, cfg.p)
    res = ModelResult(d=d, arch=arch, eps_fraction=frac, train_eps=frac * eta,
                      clean_acc=clean_acc, robust_acc_2eta=float(robust_correct.mean()),
                      bound_2eta=bound, slack=slack, excess_se=se, theorem_ok=ok, curves=curves)
    if arch == "logreg":
        w, b = linear_weights(module)
        pop = tsipras_linear_curve(w, b, "linf", p=cfg.p, eta=eta, name=tag)
        res.pop_clean_acc = float(pop.robust_accuracy(0.0))
        res.pop_robust_acc_2eta = float(pop.robust_accuracy(2 * eta))
        res.pop_bound_2eta = tsipras_theorem_bound(1 - res.pop_clean_acc, cfg.p)
        res.pop_theorem_ok = bool(res.pop_robust_acc_2eta <= res.pop_bound_2eta + 1e-12)
    return res


def run(out: str | Path, config: TradeoffConfig | None = None, *, threads: int | None = None,
        progress: bool = True) -> dict:
    """Run the study into ``out`` (models, curves, figures, ``tradeoff.html``/``.md``,
    ``results.json``) and return the results as a plain dict. Finished models and curves in
    ``out`` are reused; a folder made with another configuration is refused."""
    cfg = config or TradeoffConfig()
    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "curves").mkdir(exist_ok=True)
    cfg_file = out / "config.json"
    cfg_json = json.loads(json.dumps(asdict(cfg)))
    if cfg_file.exists() and json.loads(cfg_file.read_text()) != cfg_json:
        raise ValueError(f"{out} holds a study run with another configuration "
                         f"({cfg_file}); use another --out or remove it")
    cfg_file.write_text(json.dumps(cfg_json, indent=1))
    if threads is not None:
        torch.set_num_threads(int(threads))
    t_start = time.perf_counter()
    results: list[ModelResult] = []
    for d in cfg.dims:
        prm = TsiprasParams(d=int(d), p=cfg.p)
        train = tsipras(d=prm.d, p=prm.p, n=cfg.n_train, seed=cfg.seed)
        test = tsipras(d=prm.d, p=prm.p, n=cfg.n_test, seed=cfg.seed + 1)
        for arch in ("logreg", "mlp"):
            for frac in cfg.eps_fractions:
                tag = f"d{prm.d}-{arch}-eps{frac:g}eta"
                res_file = out / "models" / f"{tag}.json"
                if res_file.exists():
                    results.append(ModelResult(**json.loads(res_file.read_text())))
                    continue
                t0 = time.perf_counter()
                mfile = out / "models" / f"{tag}.pt"
                module = _module(arch, prm.dim, cfg.hidden)
                if mfile.exists():
                    module.load_state_dict(torch.load(mfile))
                    module.eval()
                else:
                    module = train_model(train.x, train.y, arch, frac * prm.eta,
                                         epochs=cfg.epochs, batch_size=cfg.batch_size,
                                         lr=cfg.lr, pgd_steps=cfg.pgd_steps, hidden=cfg.hidden,
                                         warmup=cfg.warmup, seed=cfg.seed)
                    torch.save(module.state_dict(), mfile)
                res = _evaluate(module, arch, prm.d, frac, prm.eta, test, cfg, out, tag)
                res.seconds = time.perf_counter() - t0
                res_file.write_text(json.dumps(asdict(res), indent=1))
                results.append(res)
                if progress:
                    print(f"{tag}: clean {res.clean_acc:.4f}  robust@2eta "
                          f"{res.robust_acc_2eta:.4f}  bound {res.bound_2eta:.4f}  "
                          f"({res.seconds:.0f}s)", flush=True)
    summary = _summarise(results, cfg, out)
    if cfg.vision is not None:
        from ._tradeoff_vision import run_vision

        summary["vision"] = run_vision(out, cfg.vision)
    summary["seconds"] = time.perf_counter() - t_start
    from ._tradeoff_page import write_page

    write_page(out, cfg, results, summary)
    (out / "results.json").write_text(json.dumps(
        {"config": cfg_json, "models": [asdict(r) for r in results], **summary}, indent=1))
    return {"config": cfg_json, "models": [asdict(r) for r in results], **summary}


def _summarise(results: list[ModelResult], cfg: TradeoffConfig, out: Path) -> dict:
    """Crossings between the standard and the most robust model per (d, arch, norm), and the
    population curves of the paper's classifiers at the eps the page reports."""
    from ..comparison import compare
    from ..curve import RobustnessCurve
    from ..population import tsipras_classifiers, tsipras_linear_curve

    top = max(cfg.eps_fractions)
    crossings = []
    for d in cfg.dims:
        for arch in ("logreg", "mlp"):
            pair = {r.eps_fraction: r for r in results if r.d == d and r.arch == arch}
            for nm in cfg.norms:
                a = RobustnessCurve.load(out / pair[0.0].curves[nm])
                b = RobustnessCurve.load(out / pair[top].curves[nm])
                cmp = compare([a, b], seed=cfg.seed)
                pc = cmp.pair(a.name, b.name)
                crossings.append({
                    "d": d, "arch": arch, "norm": nm, "p_value": pc.p_value,
                    "crossings": [{"eps": c.eps, "eps_over_eta": c.eps / (3 / math.sqrt(d)),
                                   "better_before": c.better_before,
                                   "better_after": c.better_after,
                                   "significant": c.significant,
                                   "region": list(c.region) if c.region else None}
                                  for c in pc.crossings]})
    population = []
    for d in cfg.dims:
        eta = 3 / math.sqrt(d)
        for name, w in tsipras_classifiers(d, cfg.p).items():
            c = tsipras_linear_curve(w, 0.0, "linf", p=cfg.p, eta=eta, name=name)
            population.append({"d": d, "classifier": name,
                               "clean_acc": float(c.robust_accuracy(0.0)),
                               "robust_acc_2eta": float(c.robust_accuracy(2 * eta))})
    return {"crossings": crossings, "population": population,
            "theorem_all_ok": all(r.theorem_ok and r.pop_theorem_ok is not False
                                  for r in results)}

"""Tightness and cost of robcurves' minimal-norm attacks against Foolbox 3, on the same points.

Models: small CNNs (standard, l_inf-PGD-trained, l2-PGD-trained) on Fashion-MNIST (the zoo in
``benchmarks/models`` when present, else trained here) and on MNIST (trained here on the first
5,000 images of the MNIST test set in ../shared/datasets, evaluated on the rest), and a
standard MLP on Fashion-MNIST; everything trained by :func:`robcurves.train.fit`, seeded.

Methods per norm, all run in this process on the same points:

* ``auto`` (robcurves' default, default budget), ``auto-long`` (restarts=7: every class
  targeted; a long-budget reference), ``auto-200`` (``budget=200`` passes per point, about
  Foolbox FMN's cost), and robcurves' single attacks ``fmn``, ``fab``, ``ddn`` and ``cw``
  (l2), ``ead`` (l1), and ``apgd-search`` (l_inf, l2; with the slow peers);
* Foolbox 3.3.4: FMN at its defaults (100 steps), DDN (100 steps), CW-l2, EAD (l1),
  Brendel-Bethge (l_inf, l2, l1) and the classic pipeline of the robustness-curve literature
  (per-point epsilon bisection with PGD for l_inf; CW-l2 with 10 binary-search steps of 1000
  iterations for l2). The slow ones run on the first ``--n-slow`` points of the
  ``--slow-models`` only.

Per model and norm: for each method the ratio of its distance to the best distance any method
found (median, 95th percentile), optimality (exact on the step functions: with d* the per-point
best and M = max d*, failures counted as M, 1 - sum(min(d, M) - d*) / sum(M [d* > 0] - d*)),
model passes per point (forward + backward, counted on the module for Foolbox too), wall time
and its ratio to ``auto`` (for ``auto``, ``auto-200`` and Foolbox FMN the fastest of
``--time-repeats`` alternating runs), and unbroken points. ``auto`` runs traced
(``auto_traced``): per pair, the passes at which its median and 95th percentile first come
within 0.1% / 0.5% of their final values (see :func:`reach`), and which run won each point.
``--large-n`` adds ``auto``, ``auto-long``, ``fmn`` and Foolbox FMN on more points of two
models. Results go between the ``attacks`` markers of ``benchmarks/RESULTS.md``.

Foolbox and numba (for Brendel-Bethge) are benchmark-only peers, installed into private folders
put on ``PYTHONPATH`` for the run:

    pip install --target /tmp/fb-pkgs foolbox==3.3.4
    pip install --no-deps --target /tmp/numba-pkgs numba llvmlite
    export PYTHONPATH=/tmp/fb-pkgs:/tmp/numba-pkgs
    nice -n 10 python benchmarks/attacks.py [--n 100] [--n-slow 5] [--models all]
        [--slow-models fmnist-cnn-st,fmnist-cnn-at-linf,fmnist-cnn-at-l2,mnist-cnn-st]
        [--large-n 1000 --large-models fmnist-cnn-at-linf,mnist-cnn-at-l2] [--time-repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from _results import machine, write_section  # noqa: E402

from robcurves._norms import norm_name  # noqa: E402
from robcurves.attacks import apgd_search, auto, cw, ddn, ead, fab, fmn  # noqa: E402
from robcurves.attacks._ensemble import auto_traced  # noqa: E402
from robcurves.data import load  # noqa: E402
from robcurves.evaluate import verify_adversarials  # noqa: E402
from robcurves.model import wrap  # noqa: E402

DATA = HERE.parent.parent / "shared" / "datasets"
NORMS = (math.inf, 2.0, 1.0)


# -- models ---------------------------------------------------------------------------------------

MODELS = {
    # name: (data, arch, fit kwargs, zoo file)
    "fmnist-cnn-st": ("fashion-mnist", "cnn-small", {"method": "standard", "epochs": 5}, "st.rcm"),
    "fmnist-cnn-at-linf": ("fashion-mnist", "cnn-small",
                           {"method": "pgd-at", "norm": "linf", "eps": 0.1, "steps": 5,
                            "epochs": 3}, "at-linf.rcm"),
    "fmnist-cnn-at-l2": ("fashion-mnist", "cnn-small",
                         {"method": "pgd-at", "norm": "l2", "eps": 1.0, "steps": 5, "epochs": 3},
                         "at-l2.rcm"),
    "fmnist-mlp-st": ("fashion-mnist", "mlp", {"method": "standard", "epochs": 5}, None),
    "mnist-cnn-st": ("mnist", "cnn-small", {"method": "standard", "epochs": 8}, None),
    "mnist-cnn-at-linf": ("mnist", "cnn-small",
                          {"method": "pgd-at", "norm": "linf", "eps": 0.2, "steps": 5,
                           "epochs": 8}, None),
    "mnist-cnn-at-l2": ("mnist", "cnn-small",
                        {"method": "pgd-at", "norm": "l2", "eps": 1.5, "steps": 5, "epochs": 8},
                        None),
}
#: ``auto-200``: ``auto`` held to about Foolbox FMN's default cost (100 steps, ~201 passes)
AUTO_FAST_BUDGET = 200
#: the methods of the ``--large-n`` runs
LARGE_METHODS = ("auto", "auto-long", "fmn", "fb-fmn")
#: the methods whose wall time is the fastest of ``--time-repeats`` alternating runs (the
#: wall-time target's pair, and auto-200, compared with Foolbox FMN at equal cost)
TIMED = ("auto", "auto-200", "fb-fmn")
SLOW_MODELS = ("fmnist-cnn-st", "fmnist-cnn-at-linf", "fmnist-cnn-at-l2", "mnist-cnn-st")
MNIST_TRAIN = 5000
FMNIST_TRAIN = 20000


def _splits(data: str):
    if data == "mnist":
        full = load(DATA / "mnist")
        return full.subset(slice(0, MNIST_TRAIN)), full.subset(slice(MNIST_TRAIN, None))
    train = load(DATA / "fashion-mnist", split="train").subset(slice(0, FMNIST_TRAIN))
    return train, load(DATA / "fashion-mnist", split="test")


def get_model(name: str, cache: Path) -> tuple[nn.Module, object, str]:
    """The module, its test split and where it came from."""
    from robcurves.train import fit, load_model, save_model

    data, arch, kw, zoo = MODELS[name]
    train, test = _splits(data)
    if zoo is not None and (HERE / "models" / zoo).exists():
        return load_model(HERE / "models" / zoo), test, f"zoo benchmarks/models/{zoo}"
    path = cache / f"{name}.rcm"
    if path.exists():
        return load_model(path), test, f"trained here (cached {path})"
    t0 = time.perf_counter()
    net = fit(train, arch=arch, seed=0, progress=False, eval_data=None, **kw)
    cache.mkdir(parents=True, exist_ok=True)
    save_model(net, path)
    return net, test, f"trained here in {time.perf_counter() - t0:.0f} s"


# -- pass counting for every method, Foolbox included --------------------------------------------

class Counting(nn.Module):
    """Counts samples passed forward and backward through ``module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.forward_n = 0
        self.backward_n = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        self.forward_n += int(x.shape[0])
        if out.requires_grad:
            n = int(x.shape[0])

            def hook(g: torch.Tensor) -> None:
                self.backward_n += n

            out.register_hook(hook)
        return out


# -- peers -----------------------------------------------------------------------------------------

def foolbox_methods(net: Counting, p: float) -> dict:
    import foolbox as fb

    fm = fb.PyTorchModel(net, bounds=(0, 1))
    A = fb.attacks

    def run(attack):
        return lambda x, y: attack(fm, x, y, epsilons=None)[0]

    fmn_cls = {math.inf: A.LInfFMNAttack, 2.0: A.L2FMNAttack, 1.0: A.L1FMNAttack}[p]
    bb_cls = {math.inf: A.LinfinityBrendelBethgeAttack, 2.0: A.L2BrendelBethgeAttack,
              1.0: A.L1BrendelBethgeAttack}[p]
    fast = {"fb-fmn": run(fmn_cls())}
    slow = {}
    if p == 2.0:
        fast["fb-ddn"] = run(A.DDNAttack(steps=100))
        # CW-l2 with 10 binary-search steps of 1000 iterations is both the CW peer and the
        # classic pipeline's l2 attack
        slow["classic"] = run(A.L2CarliniWagnerAttack(binary_search_steps=10, steps=1000))
    if p == 1.0:
        slow["fb-ead"] = run(A.EADAttack(binary_search_steps=9, steps=1000))
    if p == math.inf:
        slow["classic"] = lambda x, y: classic_linf(fm, x, y)
    slow["fb-bb"] = lambda x, y: brendel_bethge(fm, bb_cls, x, y, p)
    return fast, slow


def brendel_bethge(fm, cls, x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """Brendel-Bethge started from Foolbox's own FMN adversarials (BB needs adversarial
    starting points; its default blended-noise search often fails on these models)."""
    import foolbox as fb

    fmn_cls = {math.inf: fb.attacks.LInfFMNAttack, 2.0: fb.attacks.L2FMNAttack,
               1.0: fb.attacks.L1FMNAttack}[p]
    start = fmn_cls()(fm, x, y, epsilons=None)[0]
    with torch.no_grad():
        ok = fm(start).argmax(1) != y
    out = start.clone()
    if ok.any():
        bb = cls(steps=200)
        out[ok] = bb.run(fm, x[ok], y[ok], starting_points=start[ok])
    return out


def classic_linf(fm, x: torch.Tensor, y: torch.Tensor, steps: int = 40,
                 search: int = 10) -> torch.Tensor:
    """The classic pipeline for l_inf: Foolbox PGD (40 steps, random start) with a per-point
    epsilon search: double from 1/255 until broken, then ``search`` bisection steps."""
    import foolbox as fb

    pgd = fb.attacks.LinfPGD(steps=steps, rel_stepsize=2.5 / steps, random_start=True)
    out = x.clone()
    for i in range(x.shape[0]):
        xi, yi = x[i:i + 1], y[i:i + 1]
        lo, hi, best = 0.0, None, None
        eps = 1 / 255
        while eps <= 1.0:
            adv, _, ok = pgd(fm, xi, yi, epsilons=eps)
            if bool(ok[0]):
                hi, best = eps, adv
                break
            lo, eps = eps, eps * 2
        if hi is None:
            continue
        for _ in range(search):
            mid = (lo + hi) / 2
            adv, _, ok = pgd(fm, xi, yi, epsilons=mid)
            if bool(ok[0]):
                hi, best = mid, adv
            else:
                lo = mid
        out[i:i + 1] = best
    return out


# -- metrics ---------------------------------------------------------------------------------------

def optimality(d: np.ndarray, best: np.ndarray) -> float:
    """1 - sum(min(d, M) - d*) / sum(M [d* > 0] - d*) over points some method broke; failures
    (inf) count as M = max d*. Exact on the step functions of the two curves."""
    fin = np.isfinite(best)
    b = best[fin]
    m = b.max()
    dd = np.minimum(np.where(np.isfinite(d[fin]), d[fin], m), m)
    denom = (m * (b > 0) - b).sum()
    return float(1 - (dd - b).sum() / denom) if denom > 0 else 1.0


def passes_per_point(trace, n: int) -> np.ndarray:
    """Passes ``auto`` spent on each of its ``n`` points, from its trace: the attacked points'
    counts, and 1 (the clean forward pass) for each point the model misclassifies."""
    spent = trace.spent.numpy() if trace is not None else np.zeros(0)
    return np.concatenate([spent, np.ones(n - spent.size)])


def reach(trace, best: np.ndarray) -> dict:
    """From ``auto``'s improvement trace (per point, the passes spent on it at each improvement
    of its best distance), the tightness it would have had if every point had been stopped
    after ``B`` passes: the smallest ``B`` at which the median ratio to the best known is
    within 0.1% of the final one (``med_at``), the 95th percentile within 0.5% (``p95_at``),
    and over points the median of the passes at which each point came within 0.5% of its own
    final distance (``point_at``). Ratios and finals are those of the trace itself, on the
    points ``auto`` attacked that some method broke."""
    idx = trace.points.cpu().numpy()
    b = best[idx]
    ok = np.isfinite(b) & (b > 0)
    events = [ev for ev, k in zip(trace.improvements, ok, strict=True) if k]
    b = b[ok]
    if not events:
        return dict(med_at=math.nan, p95_at=math.nan, point_at=math.nan)
    passes = [np.array([s for s, _ in ev]) for ev in events]
    dists = [np.array([d for _, d in ev]) for ev in events]
    final = np.array([d[-1] if d.size else np.inf for d in dists])
    grid = np.arange(1, int(max((s[-1] for s in passes if s.size), default=1)) + 2)
    at = np.full((len(events), grid.size), np.inf)
    for i, (s, d) in enumerate(zip(passes, dists, strict=True)):
        if s.size:
            j = np.searchsorted(s, grid, side="right") - 1
            at[i] = np.where(j >= 0, d[np.maximum(j, 0)], np.inf)
    ratio = at / b[:, None]
    r_fin = final / b
    med_f, p95_f = np.median(r_fin), np.percentile(r_fin, 95)
    with np.errstate(invalid="ignore"):  # inf - inf while points are still unbroken
        med = np.median(ratio, 0)
        p95 = np.percentile(ratio, 95, axis=0)
    med_ok = (med <= med_f * 1.001) & np.isfinite(med_f)
    p95_ok = (p95 <= p95_f * 1.005) & np.isfinite(p95_f)
    # never (nan): a point auto left unbroken makes its final ratios infinite
    med_at = grid[np.argmax(med_ok)] if med_ok.any() else math.nan
    p95_at = grid[np.argmax(p95_ok)] if p95_ok.any() else math.nan
    point = [s[np.argmax(d <= f * 1.005)] for s, d, f in zip(passes, dists, final, strict=True)
             if s.size]
    return dict(med_at=float(med_at), p95_at=float(p95_at), point_at=float(np.median(point)))


def _runs_that_won(trace) -> str:
    """Per run, the points on which it was the last to improve the best by more than 0.1%."""
    src = trace.source.cpu().numpy()
    counts = np.bincount(src[src >= 0], minlength=len(trace.runs))
    return ", ".join(f"{r} {c}" for r, c in zip(trace.runs, counts, strict=True) if c)


def evaluate_model(name: str, net: nn.Module, test, n: int, n_slow: int, norms, rows: list,
                   skip_slow: bool, traces: list | None = None, only: tuple | None = None,
                   time_repeats: int = 1) -> None:
    """Run every method on the first ``n`` test points (slow peers on the first ``n_slow``)
    for each norm and append one row per method to ``rows``; the :data:`TIMED` methods run
    ``time_repeats`` times, alternating, and keep their fastest time."""
    x = torch.from_numpy(test.x[:n])
    y = torch.from_numpy(test.y[:n])
    counted = Counting(net.eval())
    clf = wrap(counted)
    for p in norms:
        traced: dict = {}

        def run_auto(xx, yy, p=p, traced=traced):
            adv, traced["trace"] = auto_traced(clf, xx, yy, p)
            return adv

        ours = {
            "auto": run_auto,
            "auto-long": lambda xx, yy, p=p: auto(clf, xx, yy, p, restarts=7),
            "auto-200": lambda xx, yy, p=p: auto(clf, xx, yy, p, budget=AUTO_FAST_BUDGET),
            "fmn": lambda xx, yy, p=p: fmn(clf, xx, yy, p),
            "fab": lambda xx, yy, p=p: fab(clf, xx, yy, p),
        }
        if p == 2.0:
            ours["ddn"] = lambda xx, yy: ddn(clf, xx, yy, 2.0)
            ours["cw"] = lambda xx, yy: cw(clf, xx, yy, 2.0)
        if p == 1.0:
            ours["ead"] = lambda xx, yy: ead(clf, xx, yy, 1.0)
        fast, slow = foolbox_methods(counted, p)
        if only is not None:
            ours = {k: v for k, v in ours.items() if k in only}
            fast = {k: v for k, v in fast.items() if k in only}
            skip_slow = True
        if p != 1.0:
            slow = {"apgd-search": lambda xx, yy, p=p: apgd_search(clf, xx, yy, p), **slow}
        results = {}
        for label, fn in list(ours.items()) + list(fast.items()):
            results[label] = _run(fn, clf, counted, x, y, p) + ("all",)
        # the wall-time target compares auto with Foolbox FMN (and auto-200 is compared with
        # it at equal cost): time them again, alternating, and keep each one's fastest run
        # (another job slowing one run then shows in none of the minima)
        timed = [k for k in TIMED if k in results]
        for _ in range(time_repeats - 1):
            for label in timed:
                fn = ours.get(label) or fast[label]
                secs = _run(fn, clf, counted, x, y, p)[3]
                d, passes, _, best_secs, scope = results[label]
                results[label] = (d, passes, None, min(best_secs, secs), scope)
        if not skip_slow:
            xs, ys = x[:n_slow], y[:n_slow]
            for label, fn in slow.items():
                results[label] = _run(fn, clf, counted, xs, ys, p) + ("slow",)
        best = np.min(np.stack([r[0] if r[4] == "all" else
                                np.concatenate([r[0], np.full(n - len(r[0]), np.inf)])
                                for r in results.values()]), 0)
        if traces is not None and traced.get("trace") is not None:
            tr = traced["trace"]
            traces.append(dict(model=name, norm=norm_name(p), passes=results["auto"][1],
                               fb_passes=results["fb-fmn"][1], won=_runs_that_won(tr),
                               **reach(tr, best)))
        t_auto = {"all": results["auto"][3],
                  "slow": _subset_time(results["auto"], n_slow, n)}
        # the pass target is the median over the points: auto's per point from its
        # trace (a point the model misclassifies costs its clean forward pass); Foolbox FMN
        # spends the same on every point, so its mean is its median
        auto_median = float(np.median(passes_per_point(traced.get("trace"), n)))
        for label, (d, passes, _, secs, scope) in results.items():
            m = len(d)
            bb = best[:m]
            ok = np.isfinite(bb) & (bb > 0) & np.isfinite(d)
            ratio = d[ok] / bb[ok]
            unb = int((np.isinf(d) & np.isfinite(bb)).sum())
            rows.append(dict(model=name, norm=norm_name(p), method=label, points=m,
                             median=float(np.median(ratio)) if ratio.size else math.nan,
                             p95=float(np.percentile(ratio, 95)) if ratio.size else math.nan,
                             optimality=optimality(d, bb), passes=passes, seconds=secs,
                             time_vs_auto=secs / t_auto[scope], unbroken=unb,
                             median_passes=auto_median if label == "auto" else passes))
            print(f"{name:20s} {norm_name(p):4s} {label:10s} n={m:3d} med {rows[-1]['median']:.4f}"
                  f" p95 {rows[-1]['p95']:.4f} opt {rows[-1]['optimality']:.4f} unbroken {unb:3d}"
                  f" passes {passes:8.1f} sec {secs:7.1f}", flush=True)


def _subset_time(auto_result, n_slow: int, n: int) -> float:
    """``auto``'s wall time scaled to the slow subset (it is linear in the points)."""
    return auto_result[3] * n_slow / n


def _run(fn, clf, counted: Counting, x: torch.Tensor, y: torch.Tensor, p: float):
    f0, b0 = counted.forward_n, counted.backward_n
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adv = fn(x, y)
    secs = time.perf_counter() - t0
    passes = (counted.forward_n - f0 + counted.backward_n - b0) / x.shape[0]
    d, _, _ = verify_adversarials(clf, x, y, torch.as_tensor(adv), p)
    return d, passes, None, secs


# -- report ----------------------------------------------------------------------------------------

def table(rows: list) -> str:
    out = ["| model | norm | method | points | median ratio | p95 ratio | optimality | "
           "passes/point | seconds | time / auto | unbroken |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['norm']} | {r['method']} | {r['points']} | "
                   f"{r['median']:.4f} | {r['p95']:.4f} | {r['optimality']:.4f} | "
                   f"{r['passes']:.0f} | {r['seconds']:.1f} | {r['time_vs_auto']:.2f} | "
                   f"{r['unbroken']} |")
    return "\n".join(out)


def trace_table(traces: list) -> str:
    out = ["| model | norm | auto passes/point | median within 0.1% of final at | p95 within 0.5% "
           "of final at | per point: within 0.5% of its final at (median) | Foolbox FMN "
           "passes/point | runs that last improved a point by > 0.1% (points) |",
           "|---|---|---|---|---|---|---|---|"]
    for t in traces:
        out.append(f"| {t['model']} | {t['norm']} | {t['passes']:.0f} | {t['med_at']:.0f} | "
                   f"{t['p95_at']:.0f} | {t['point_at']:.0f} | {t['fb_passes']:.0f} | "
                   f"{t['won']} |")
    return "\n".join(out)


def summary(rows: list) -> str:
    """The targets of issue 3, checked on ``rows``."""
    autos = [r for r in rows if r["method"] == "auto"]
    if not autos:
        return ""
    key = {(r["model"], r["norm"], r["method"]): r for r in rows}
    cheap = [r for r in autos if (r["model"], r["norm"], "fb-fmn") in key
             and r["median_passes"] <= key[(r["model"], r["norm"], "fb-fmn")]["passes"]]
    fast = [r for r in autos if (r["model"], r["norm"], "fb-fmn") in key
            and r["seconds"] <= key[(r["model"], r["norm"], "fb-fmn")]["seconds"]]
    opt_ok = [r for r in autos if r["optimality"] >= 0.99]
    med_bad = [r for r in autos if not r["median"] <= 1.01]
    p95_bad = [r for r in autos if not r["p95"] <= 1.05]
    lines = ["Targets of issue 19 for the default `auto` (checked by the script):",
             f"- median ratio <= 1.01: {len(autos) - len(med_bad)} of {len(autos)} model/norm "
             f"pairs (largest {max(r['median'] for r in autos):.4f})"
             + "".join(f"; missed {r['model']} {r['norm']} {r['median']:.4f}" for r in med_bad),
             f"- 95th percentile <= 1.05: {len(autos) - len(p95_bad)} of {len(autos)}"
             + "".join(f"; missed {r['model']} {r['norm']} {r['p95']:.3f} (auto-long "
                       f"{key[(r['model'], r['norm'], 'auto-long')]['p95']:.3f})"
                       for r in p95_bad),
             f"- optimality >= 0.99: {len(opt_ok)} of {len(autos)}"
             + "".join(f"; missed {r['model']} {r['norm']} {r['optimality']:.4f}"
                       for r in autos if r not in opt_ok),
             f"- median passes per point (over all the points; the table gives the mean) at "
             f"most Foolbox FMN's: {len(cheap)} of {len(autos)} (auto "
             f"{min(r['median_passes'] for r in autos):.0f}-"
             f"{max(r['median_passes'] for r in autos):.0f})"
             + "".join(f"; missed {r['model']} {r['norm']} {r['median_passes']:.0f}"
                       for r in autos if r not in cheap),
             f"- wall time at most Foolbox FMN's in the same run (each the fastest of its "
             f"alternating runs): {len(fast)} of {len(autos)}"
             + "".join(f"; missed {r['model']} {r['norm']} (Foolbox FMN / auto "
                       f"{key[(r['model'], r['norm'], 'fb-fmn')]['time_vs_auto']:.2f})"
                       for r in autos if r not in fast)]
    for norm in ("linf", "l2", "l1"):
        pairs = [(key[(r["model"], norm, "auto-200")], r) for r in rows
                 if r["method"] == "fb-fmn" and r["norm"] == norm
                 and (r["model"], norm, "auto-200") in key]
        if pairs:
            tr = [f["seconds"] / a["seconds"] for a, f in pairs]
            tighter = sum(a["optimality"] >= f["optimality"] for a, f in pairs)
            lines.append(f"- auto-200 against Foolbox FMN, {norm}: time of Foolbox FMN / "
                         f"auto-200 {min(tr):.2f}-{max(tr):.2f}; optimality at least Foolbox "
                         f"FMN's on {tighter} of {len(pairs)} models (auto-200 "
                         f"{min(a['optimality'] for a, _ in pairs):.4f}-"
                         f"{max(a['optimality'] for a, _ in pairs):.4f}, Foolbox FMN "
                         f"{min(f['optimality'] for _, f in pairs):.4f}-"
                         f"{max(f['optimality'] for _, f in pairs):.4f})")
    for peer, what in (("classic", "time of the classic pipeline / auto"),
                       ("fb-fmn", "time of Foolbox FMN / auto")):
        for norm in ("linf", "l2", "l1"):
            sel = [r for r in rows if r["method"] == peer and r["norm"] == norm]
            if sel:
                lo = min(r["time_vs_auto"] for r in sel)
                hi = max(r["time_vs_auto"] for r in sel)
                lines.append(f"- {what}, {norm}: {lo:.2f}-{hi:.2f}")
    return "\n".join(lines)


NOTES = """\
Ratios are to the per-point best of every method (ours and peers, including `auto-long` =
`auto` with `restarts=7`: every class targeted). `time / auto` compares with `auto`'s time on
the same points (for the slow peers, `auto`'s time scaled to their points); seconds are noisy on
a shared machine, ratios less so. `auto` and `fb-fmn` (the pair of the wall-time
target) and `auto-200` each ran `--time-repeats` times (default 3), alternating, and their
seconds are the fastest run (one run slowed by another job then counts for none of them);
every other method ran once. `fb-bb` (Brendel-Bethge, 200 steps) starts from Foolbox FMN's
adversarials, so its unbroken points are FMN's; its first call per norm includes numba's
compilation. `classic` is PGD (40 steps, random start) with per-point epsilon doubling and 10
bisection steps for l_inf, and Foolbox CW-l2 with 10 binary-search steps x 1000 iterations
for l2 (also the CW peer).

**Foolbox 3.3.4 L2 FMN is not a minimal-norm attack as shipped**: `L2FMNAttack.project`
computes `factor = ep.minimum(1, norms / norms)`, always 1, so the perturbation is never
projected onto the l2 ball of radius epsilon and the epsilon schedule has no effect: the
iterates only take gradient steps and the best adversarial seen is returned. That is why
`fb-fmn` in l2 is far looser than Foolbox's own DDN. Reported as is, not worked around."""


TRACE_NOTE = """\
every point's best distance is recorded with the passes spent on that point so far at each
improvement. Stopping every point after B passes would leave it at its last improvement
before B; the table gives the smallest B at which the median ratio to the best known is within
0.1% of `auto`'s final median and the 95th percentile within 0.5% of its final one (ratios of
the traced distances, before the independent verification of the table above), the median
over points of the passes at which each point came within 0.5% of its own final distance, and
which run of the pipeline (target-k: FMN aimed at the k-th nearest linearised class; sweep-k:
the short runs at the remaining classes; polish: l1's sparse run; line-search: the final
bisection) was the last to shrink each point's best by more than 0.1%. Passes are the
robust measure of cost here; wall times on this shared machine are noisy."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="points per model")
    ap.add_argument("--n-slow", type=int, default=5,
                    help="points for CW, EAD, Brendel-Bethge and the classic pipeline")
    ap.add_argument("--slow-models", default=",".join(SLOW_MODELS),
                    help="models on which the slow peers run ('all' for every model)")
    ap.add_argument("--models", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--norms", default="inf,2,1")
    ap.add_argument("--skip-slow", action="store_true")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/robcurves-bench-attacks"),
                    help="where models trained here are kept")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--section", default="attacks",
                    help="the marked section of RESULTS.md to write (a partial run can write "
                         "its own instead of replacing the full one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--large-n", type=int, default=0,
                    help="also run auto, auto-long, fmn and Foolbox FMN on this many points of "
                         "the --large-models (0: skip)")
    ap.add_argument("--large-models", default="fmnist-cnn-at-linf,mnist-cnn-at-l2")
    ap.add_argument("--time-repeats", type=int, default=3,
                    help="times auto, auto-200 and Foolbox FMN each run (alternating) for "
                         "their wall times, the fastest kept (1: once, like every other method)")
    a = ap.parse_args(argv)
    if a.time_repeats < 1:
        ap.error(f"--time-repeats must be at least 1; got {a.time_repeats}")
    torch.set_num_threads(a.threads)
    names = list(MODELS) if a.models == "all" else a.models.split(",")
    norms = [{"inf": math.inf, "2": 2.0, "1": 1.0}[s] for s in a.norms.split(",")]
    rows: list = []
    traces: list = []
    sources = []
    t0 = time.perf_counter()
    for name in names:
        net, test, src = get_model(name, a.cache)
        sources.append(f"- `{name}`: {src}")
        print(f"== {name}: {src}", flush=True)
        slow_ok = a.slow_models == "all" or name in a.slow_models.split(",")
        evaluate_model(name, net, test, a.n, a.n_slow, norms, rows, a.skip_slow or not slow_ok,
                       traces, time_repeats=a.time_repeats)
    large_rows: list = []
    large_traces: list = []
    if a.large_n > 0:
        for name in a.large_models.split(","):
            net, test, _ = get_model(name, a.cache)
            evaluate_model(name, net, test, a.large_n, 0, norms, large_rows, True, large_traces,
                           only=LARGE_METHODS, time_repeats=a.time_repeats)
    large = ["", f"### {a.large_n} points on {a.large_models}",
             "", f"Methods {', '.join(LARGE_METHODS)} only (the reference is their best).", "",
             table(large_rows), "", trace_table(large_traces), "", summary(large_rows)
             ] if large_rows else []
    total = time.perf_counter() - t0
    cmd = "python benchmarks/attacks.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([
        "## Attacks: tightness and cost against Foolbox 3.3.4"
        + ("" if a.section == "attacks" else f" ({a.section})"),
        "",
        f"Machine: {machine()} (shared with other jobs). Date: "
        f"{_dt.date.today().isoformat()}. Command: `{cmd}` (total {total / 60:.1f} min).",
        "",
        f"Points: the first {a.n} test points of each model (Fashion-MNIST test set; MNIST test "
        f"images {MNIST_TRAIN} onwards, the first {MNIST_TRAIN} trained the MNIST models); "
        + ("the slow peers were not run (`--skip-slow`): the reference is the best of the "
           "methods in the table." if a.skip_slow else
           f"the slow peers on the first {a.n_slow} of them, on {a.slow_models} only."),
        "",
        *sources,
        "",
        table(rows),
        "",
        NOTES,
        "",
        "Where `auto` spends its passes (from one traced run of the default `auto`, the rows "
        "`auto` above): " + TRACE_NOTE,
        "",
        trace_table(traces),
        "",
        summary(rows),
        *large,
    ])
    print(text)
    if not a.no_write:
        write_section(a.section, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Attacks against exact minimal distances: small ReLU MLPs on scikit-learn digits, where the
MILP certifier proves the optimum, so that the misses every attack shares are visible too.

Models: MLPs (64 inputs, two hidden layers of ``--width`` ReLUs, 10 classes) trained by
:func:`robcurves.train.fit` on the first 1,297 digits (scaled to [0, 1]), seed 0, 20 epochs:
standard and l_inf-PGD-trained (eps 0.1). Points: the first ``--n`` of the remaining digits.

Per model and norm (l_inf and l1, the MILP's norms): every method on the same points
(``auto``, ``auto-long`` = ``restarts=7``, robcurves' ``fmn`` and ``fab``, ``ead`` in l1, and
Foolbox 3.3.4's FMN at its defaults when ``foolbox`` imports), then the MILP
(:func:`robcurves.certify` with ``method="milp"``, ``--time-limit`` seconds per point) with the
smallest distance any method found as its search radius. Ratios are to the MILP's optimum, on
the points it solved to optimality (those it did not solve, and misclassified points, are left
out and counted). A ratio below 1 would be a bug in the attack or the MILP: the script reports
the smallest ratio seen.

    python benchmarks/exact_attacks.py [--n 100] [--width 64] [--time-limit 20] [--threads 1]

(Foolbox, a benchmark-only peer: ``pip install --target /tmp/fb-pkgs foolbox==3.3.4`` and
``PYTHONPATH=/tmp/fb-pkgs``.) Results go between the ``exact-attacks`` markers of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _results import machine, write_section  # noqa: E402
from attacks import Counting, _run  # noqa: E402

from robcurves import certify  # noqa: E402
from robcurves.attacks import auto, ead, fab, fmn  # noqa: E402
from robcurves.data import load  # noqa: E402
from robcurves.model import wrap  # noqa: E402
from robcurves.train import fit  # noqa: E402

NORMS = {"linf": math.inf, "l1": 1.0}


def methods(clf, counted: Counting, p: float) -> dict:
    out = {"auto": lambda x, y: auto(clf, x, y, p),
           "auto-long": lambda x, y: auto(clf, x, y, p, restarts=7),
           "fmn": lambda x, y: fmn(clf, x, y, p),
           "fab": lambda x, y: fab(clf, x, y, p)}
    if p == 1.0:
        out["ead"] = lambda x, y: ead(clf, x, y, p)
    try:
        import foolbox as fb
    except ImportError:
        return out
    fm = fb.PyTorchModel(counted, bounds=(0, 1))
    cls = {math.inf: fb.attacks.LInfFMNAttack, 1.0: fb.attacks.L1FMNAttack}[p]
    out["fb-fmn"] = lambda x, y: cls()(fm, x, y, epsilons=None)[0]
    return out


def run(n: int, width: int, time_limit: float) -> tuple[list[dict], float]:
    ds = load("digits")
    train, test = ds.subset(slice(0, 1297)), ds.subset(slice(1297, 1297 + n))
    x, y = torch.as_tensor(test.x).float(), torch.as_tensor(test.y).long()
    rows, low = [], math.inf
    for method in ("standard", "pgd-at"):
        net = fit(train, arch="mlp", method=method, norm="inf", eps=0.1, epochs=20,
                  batch_size=64, arch_kwargs={"width": width, "depth": 2}, progress=False,
                  seed=0, device="cpu").eval()
        counted = Counting(net)
        clf = wrap(counted)
        for nname, p in NORMS.items():
            found = {}
            for name, fn in methods(clf, counted, p).items():
                d, passes, _, secs = _run(fn, clf, counted, x, y, p)
                found[name] = (d, passes, secs)
            upper = np.min(np.stack([d for d, _, _ in found.values()]), 0)
            t0 = time.perf_counter()
            mi = certify(net, x, y, nname, "milp", upper=upper, time_limit=time_limit)
            t_milp = (time.perf_counter() - t0) / n
            status = np.array(mi.settings["status"])
            ok = (status == "optimal") & (mi.distances > 0)
            exact = mi.distances[ok]
            for name, (d, passes, secs) in found.items():
                r = d[ok] / exact
                low = min(low, float(r.min()))
                rows.append(dict(model=f"mlp-{width}x2 {method}", norm=nname, method=name,
                                 solved=int(ok.sum()), left=int((status != "optimal").sum()),
                                 median=float(np.median(r)),
                                 p95=_p95(r), max=float(r.max()), over=int((r > 1.01).sum()),
                                 unbroken=int(np.isinf(r).sum()), passes=passes, secs=secs,
                                 milp=t_milp))
                print(_line(rows[-1]), flush=True)
    return rows, low


def _p95(r: np.ndarray) -> float:
    """95th percentile, linearly interpolated; ``inf`` (an unbroken point) counts as larger
    than any ratio (``np.percentile`` would give ``nan`` between two of them)."""
    v = float(np.percentile(np.where(np.isfinite(r), r, 1e300), 95))
    return math.inf if v > 1e299 else v


def _line(r: dict) -> str:
    return (f"| {r['model']} | {r['norm']} | {r['method']} | {r['solved']} ({r['left']}) | "
            f"{r['median']:.4f} | {r['p95']:.4f} | {r['max']:.4f} | {r['over']} | "
            f"{r['unbroken']} | {r['passes']:.0f} | {r['secs']:.1f} | {r['milp']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.n < 1 or a.width < 1 or a.time_limit <= 0 or a.threads < 1:
        ap.error(f"--n, --width and --threads must be >= 1 and --time-limit > 0; got n={a.n}, "
                 f"width={a.width}, threads={a.threads}, time-limit={a.time_limit}")
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    rows, low = run(a.n, a.width, a.time_limit)
    cmd = "python benchmarks/exact_attacks.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        "## Attacks against exact distances (MILP) on small digits MLPs",
        "",
        f"Machine: {machine()}. Date: {_dt.date.today()}. Command: `{cmd}` (total "
        f"{(time.perf_counter() - t0) / 60:.1f} min).",
        "",
        f"Points: digits 1297..{1296 + a.n}; ratio = attack distance / the MILP's optimum on "
        "the points it solved to optimality (in brackets: points left out, misclassified or "
        f"not solved in {a.time_limit:g} s); over = points more than 1% above the optimum "
        "(unbroken ones included); "
        f"smallest ratio seen: {low:.6f} (below 1 would be a bug).",
        "",
        "| model | norm | method | solved (left out) | median ratio | p95 ratio | max ratio | "
        "over 1% | unbroken | passes/point | seconds | MILP s/point |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_line(r) for r in rows)])
    print(body)
    write_section("exact-attacks", body)


if __name__ == "__main__":
    main()

"""Certified side benchmark: band width, time per point per method, MILP exactness.

Trains the small CNN and an MLP (standard, PGD-AT, IBP) on scikit-learn's 8x8 digits (the last
500 points held out), then on the 500 held-out points, in l_inf:

- attack distances (``robcurves.distances``, default pipeline): the upper side;
- CROWN and IBP certified radii (bisection bracketed by the attack distance): the lower side;
- MILP (exact, HiGHS, 10 s per point) on the first ``--milp-points`` held-out points;
- the band between CROWN and the attack: largest vertical gap, area, fraction pinned within 1%.

Writes a table between ``<!-- certify:start -->`` and ``<!-- certify:end -->`` in
``benchmarks/RESULTS.md``.

    nice python benchmarks/certify.py [--n 500] [--milp-points 20] [--epochs 30]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
import torch

import robcurves
from robcurves import data as rdata
from robcurves.bands import band
from robcurves.certificates import certify
from robcurves.train import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402


def _median_ratio(lower: np.ndarray, upper: np.ndarray) -> float:
    ok = (upper > 0) & np.isfinite(upper)
    return float(np.median(lower[ok] / upper[ok])) if ok.any() else float("nan")


def run(n: int, milp_points: int, epochs: int, time_limit: float, cnn_points: int,
        on_row=None) -> list[dict]:
    ds = rdata.load("digits")
    train, test = ds.subset(slice(0, ds.n - n)), ds.subset(slice(ds.n - n, ds.n))
    x, y = test.x, test.y
    rows = []
    for arch, kw in (("cnn-small", {}), ("mlp", {"width": 64, "depth": 2})):
        for method in ("standard", "pgd-at", "ibp"):
            t0 = time.perf_counter()
            module = fit(train, arch=arch, method=method, norm="inf", eps=0.1, epochs=epochs,
                         batch_size=64, arch_kwargs=kw, progress=False, seed=0, device="cpu")
            t_fit = time.perf_counter() - t0
            model = robcurves.wrap(module)
            k = min(n, cnn_points) if arch.startswith("cnn") else n  # CROWN cost on 2 cores
            xs, ys = x[:k], y[:k]
            t0 = time.perf_counter()
            att = robcurves.distances(model, xs, ys, "inf")
            t_att = (time.perf_counter() - t0) / k
            cr = certify(model, xs, ys, "inf", "crown", upper=att, iters=10)
            ib = certify(model, xs, ys, "inf", "ibp", upper=att, iters=10)
            m = min(milp_points, n)
            mi = certify(model, x[:m], y[:m], "inf", "milp", upper=att.distances[:m],
                         time_limit=time_limit)
            status = mi.settings["status"]
            correct = [s != "misclassified" for s in status]
            exact = sum(s == "optimal" for s in status)
            b = band(cr, att)
            rows.append(dict(
                model=f"{arch} {method}", n=k, clean=float((att.predictions == ys).mean()),
                fit_s=t_fit, crown_ratio=_median_ratio(cr.distances, att.distances),
                ibp_ratio=_median_ratio(ib.distances, att.distances),
                max_gap=b.max_gap, area=b.area, pinned=b.pinned,
                t_attack=t_att, t_crown=cr.cost["seconds_per_point"],
                t_ibp=ib.cost["seconds_per_point"], t_milp=mi.cost["seconds_per_point"],
                milp_exact=exact, milp_correct=sum(correct), milp_n=m,
                milp_below_attack=int(sum(s == "optimal" and d < a * 0.99 for s, d, a in
                                          zip(status, mi.distances, att.distances[:m],
                                              strict=True))),
            ))
            print(rows[-1], flush=True)
            if on_row is not None:  # keep partial results if a long run is interrupted
                on_row(rows)
    return rows


def table(rows: list[dict], args: argparse.Namespace, seconds: float) -> str:
    cmd = "nice python benchmarks/certify.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
    lines = [
        "## Certified side (issue 4): band width, time per point, MILP exactness",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {machine()}, "
        "shared with other jobs (timings are inflated "
        f"and only comparable within this table); total {seconds / 60:.1f} min",
        f"- command: `{cmd}`",
        f"- data: scikit-learn digits 8x8 (train on the first {1797 - args.n}, evaluate on the "
        f"last {args.n}; the CNNs on the first {args.cnn_points} of those, because CROWN on "
        "the CNN costs about a second per point here); norm l_inf; models trained by "
        "`robcurves.train.fit` with eps 0.1, "
        f"{args.epochs} epochs (the MNIST training set is not available here)",
        "- ratio = median over correctly classified points of certified radius / attack "
        "distance; band = CROWN curve vs attack curve on all points; pinned = fraction of "
        "points with attack <= 1.01 x CROWN",
        f"- MILP: first {args.milp_points} points, {args.time_limit:g} s per point; "
        "'exact' = solved to optimality (misclassified points excluded); last column: "
        "exact MILP distances more than 1% below the attack's (attack suboptimal)",
        "",
        "| model | points | clean acc | CROWN/attack | IBP/attack | max gap | area "
        "| pinned (CROWN) "
        "| s/pt attack | s/pt CROWN | s/pt IBP | s/pt MILP | MILP exact | MILP < 0.99 attack |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['n']} | {r['clean']:.3f} | {r['crown_ratio']:.3f} "
            f"| {r['ibp_ratio']:.3f} "
            f"| {r['max_gap']:.3f} | {r['area']:.4f} | {r['pinned']:.3f} | {r['t_attack']:.3f} "
            f"| {r['t_crown']:.3f} | {r['t_ibp']:.4f} | {r['t_milp']:.2f} "
            f"| {r['milp_exact']}/{r['milp_correct']} | {r['milp_below_attack']} |")
    return "\n".join(lines)


def write(block: str) -> None:
    write_section("certify", block)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--milp-points", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--cnn-points", type=int, default=100)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # many small ops: one thread is fastest on a shared machine
    t0 = time.perf_counter()
    rows = run(args.n, args.milp_points, args.epochs, args.time_limit, args.cnn_points,
               on_row=lambda r: write(table(r, args, time.perf_counter() - t0)))
    write(table(rows, args, time.perf_counter() - t0))


if __name__ == "__main__":
    sys.exit(main())

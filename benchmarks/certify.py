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

``--speed LABEL`` instead times CROWN on the zoo's small CNN (``cnn-small``, 28x28) on
Fashion-MNIST with one thread: the model is trained briefly by ``robcurves.train.fit`` on the
first ``--train-points`` training images, the first ``--points`` test images are attacked
(default pipeline) and certified in l_inf with the attack distances as bracket. The row is
kept under LABEL (e.g. the code's commit) in ``benchmarks/certify_speed.json``, and all rows
go to the ``certify-speed`` section of RESULTS.md, so runs of two versions of the code
(``PYTHONPATH=<other checkout>/src``) end up side by side.

    python benchmarks/certify.py --speed after [--points 8] [--data PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
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


SPEED_ROWS = Path(__file__).resolve().with_name("certify_speed.json")


def speed(label: str, data: str, points: int, train_points: int, iters: int) -> dict:
    """Seconds per point of CROWN on a briefly trained cnn-small (Fashion-MNIST, l_inf)."""
    train = rdata.load(data, split="train").subset(slice(0, train_points))
    test = rdata.load(data, split="test")
    module = fit(train, arch="cnn-small", method="standard", epochs=1, batch_size=64,
                 progress=False, seed=0, device="cpu")
    model = robcurves.wrap(module)
    x, y = test.x[:points], test.y[:points]
    att = robcurves.distances(model, x, y, "inf")
    t0, c0 = time.perf_counter(), time.process_time()
    cr = certify(model, x, y, "inf", "crown", upper=att, iters=iters, batch_size=points)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    ok = (att.distances > 0) & np.isfinite(att.distances)
    return {"label": label, "seconds_per_point": seconds / points,
            "cpu_seconds_per_point": cpu / points, "points": points,
            "correct": int(ok.sum()), "iters": iters, "train_points": train_points,
            "crown_over_attack": float(np.median(cr.distances[ok] / att.distances[ok])),
            "radii": [float(v) for v in cr.distances],
            "load_average": os.getloadavg()[0], "machine": machine(),
            "date": datetime.date.today().isoformat(),
            "command": _command()}


def _command() -> str:
    """The command line of this run, with the PYTHONPATH that chose the code measured."""
    path = os.environ.get("PYTHONPATH")
    prefix = f"PYTHONPATH={shlex.quote(path)} " if path else ""
    return prefix + shlex.join(["python", "benchmarks/certify.py", *sys.argv[1:]])


def speed_table(rows: dict) -> str:
    lines = [
        "## CROWN speed on the zoo's cnn-small, Fashion-MNIST 28x28 (issue 13)",
        "",
        "l_inf, bracket = attack distance, one bisection per point over all points at once; "
        "seconds per point on one thread (`torch.set_num_threads(1)`), all points counted "
        "(misclassified ones too). The machine is shared: wall-clock seconds depend on the "
        "load (the 1-minute load average at the end of each run is given; 2 cores), CPU "
        "seconds (`time.process_time`, this process only) are what one free core would "
        "take, up to cache contention: they too move with the load (shared caches and memory "
        "bandwidth), by up to a third between runs of the same code here, so compare rows "
        "measured close together. Below the table: rows on the same points compared radius by "
        "radius.",
        "",
        "| code | CPU s per correct point | CPU s/pt CROWN | wall s/pt | points (correct) | iters "
        "| CROWN/attack (median) | load | date | machine | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.values():
        lines.append(
            f"| {r['label']} "
            f"| {r['cpu_seconds_per_point'] * r['points'] / max(r['correct'], 1):.2f} "
            f"| {r['cpu_seconds_per_point']:.2f} | {r['seconds_per_point']:.2f} "
            f"| {r['points']} ({r['correct']}) "
            f"| {r['iters']} | {r['crown_over_attack']:.4f} | {r['load_average']:.1f} "
            f"| {r['date']} | {r['machine']} | `{r['command']}` |")
    # rows measured on the same points: are the certified radii the same?
    rows_l = list(rows.values())
    for i, r in enumerate(rows_l):
        for s in rows_l[i + 1:]:
            if (r["points"], r["train_points"], r["iters"]) != (s["points"], s["train_points"],
                                                                s["iters"]):
                continue
            a, b = np.array(r["radii"]), np.array(s["radii"])
            same = int((a == b).sum())
            lines.append(f"\n`{s['label']}` against `{r['label']}`: {same} of {a.size} radii "
                         f"identical, largest difference {np.abs(a - b).max():.3g}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speed", default=None, metavar="LABEL",
                    help="time CROWN on cnn-small / Fashion-MNIST and keep the row as LABEL")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"
                                          / "datasets" / "fashion-mnist"))
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--train-points", type=int, default=3000)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--milp-points", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--cnn-points", type=int, default=100)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # many small ops: one thread is fastest on a shared machine
    if args.speed is not None:
        row = speed(args.speed, args.data, args.points, args.train_points, args.iters)
        print(row, flush=True)
        rows = json.loads(SPEED_ROWS.read_text()) if SPEED_ROWS.exists() else {}
        rows[args.speed] = row
        SPEED_ROWS.write_text(json.dumps(rows, indent=1) + "\n")
        write_section("certify-speed", speed_table(rows))
        return
    t0 = time.perf_counter()
    rows = run(args.n, args.milp_points, args.epochs, args.time_limit, args.cnn_points,
               on_row=lambda r: write(table(r, args, time.perf_counter() - t0)))
    write(table(rows, args, time.perf_counter() - t0))


if __name__ == "__main__":
    sys.exit(main())

"""What ``auto`` spends per point it attacks, next to Foolbox FMN on the same points.

The ``attacks`` benchmark divides each method's passes by all the points it was given. ``auto``
spends one forward pass on a point the model already misclassifies and attacks only the others;
Foolbox FMN runs its 100 steps on every point. So on models that misclassify 5-20% of the test
points (the benchmark's), part of ``auto``'s saving in that table is the misclassified points,
and a user of a more accurate model sees ``auto``'s cost per attacked point. This script
measures that: per model and norm, ``auto``'s passes per point over all points (the ``attacks``
figure) and, from its trace (:func:`robcurves.attacks._ensemble.auto_traced`), the passes per
correctly classified point (mean, median, 90th percentile, max), next to Foolbox FMN's passes per
point when it is run on the correctly classified points alone (with ``--foolbox``; Foolbox 3.3.4
importable, e.g. ``PYTHONPATH=/tmp/fb-pkgs``).

Models and points are those of ``benchmarks/attacks.py`` (the same cache).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import machine, write_section  # noqa: E402
from attacks import MODELS, Counting, foolbox_methods, get_model, passes_per_point  # noqa: E402

from robcurves._norms import norm_name, parse_norm  # noqa: E402
from robcurves.attacks._ensemble import auto_traced  # noqa: E402
from robcurves.model import wrap  # noqa: E402


def measure(name: str, n: int, norms: list[float], cache: Path, foolbox: bool) -> list[dict]:
    net, test, _ = get_model(name, cache)
    x = torch.from_numpy(test.x[:n])
    y = torch.from_numpy(test.y[:n])
    counted = Counting(net.eval())
    clf = wrap(counted)
    rows = []
    for p in norms:
        before = counted.forward_n + counted.backward_n
        _, trace = auto_traced(clf, x, y, p)
        total = (counted.forward_n + counted.backward_n - before) / n
        spent = trace.spent.numpy() if trace is not None else np.zeros(0)
        every = passes_per_point(trace, n)
        row = dict(model=name, norm=norm_name(p), points=n, attacked=int(spent.size),
                   all_mean=total, all_median=float(np.median(every)),
                   mean=float(spent.mean()), median=float(np.median(spent)),
                   p90=float(np.percentile(spent, 90)), max=float(spent.max()), fb=math.nan)
        if foolbox and trace is not None:
            idx = trace.points
            fb = foolbox_methods(counted, p)[0]["fb-fmn"]
            before = counted.forward_n + counted.backward_n
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fb(x[idx], y[idx])
            row["fb"] = (counted.forward_n + counted.backward_n - before) / idx.numel()
        rows.append(row)
        print(f"{name:20s} {row['norm']:4s} all {total:6.1f}  attacked {row['attacked']:4d}: "
              f"mean {row['mean']:6.1f} median {row['median']:6.1f} p90 {row['p90']:6.1f} "
              f"max {row['max']:6.1f}  Foolbox FMN {row['fb']:6.1f}", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    out = ["| model | norm | points | attacked (correctly classified) | auto over all points: "
           "mean | median | auto per attacked point: mean | median | 90th pct | max | "
           "Foolbox FMN per attacked point |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fb = "--" if math.isnan(r["fb"]) else f"{r['fb']:.0f}"
        out.append(f"| {r['model']} | {r['norm']} | {r['points']} | {r['attacked']} | "
                   f"{r['all_mean']:.0f} | {r['all_median']:.0f} | {r['mean']:.0f} | "
                   f"{r['median']:.0f} | {r['p90']:.0f} | {r['max']:.0f} | {fb} |")
    return "\n".join(out)


def summary(rows: list[dict]) -> str:
    lines = []
    for key, what in (("all_mean", "mean passes per point over all points (the `attacks` "
                                   "table)"),
                      ("all_median", "median passes per point over all points"),
                      ("mean", "mean passes per attacked point"),
                      ("median", "median passes per attacked point")):
        for nm in ("linf", "l2", "l1"):
            sel = [r for r in rows if r["norm"] == nm]
            if not sel:
                continue
            ref = [r["fb"] if not math.isnan(r["fb"]) else 201.0 for r in sel]
            ok = sum(r[key] <= f for r, f in zip(sel, ref, strict=True))
            lines.append(f"- {nm}, {what}: {min(r[key] for r in sel):.0f}-"
                         f"{max(r[key] for r in sel):.0f}; at most Foolbox FMN's on {ok} of "
                         f"{len(sel)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="points per model (default 200)")
    ap.add_argument("--models", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--norms", default="inf,2,1")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/robcurves-bench-attacks"),
                    help="where benchmarks/attacks.py keeps the models it trained")
    ap.add_argument("--foolbox", action="store_true",
                    help="also run Foolbox FMN on the correctly classified points")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = list(MODELS) if a.models == "all" else a.models.split(",")
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; expected some of {', '.join(MODELS)}")
    norms = [parse_norm(t) for t in a.norms.split(",")]
    t0 = time.perf_counter()
    rows = [r for name in names for r in measure(name, a.n, norms, a.cache, a.foolbox)]
    minutes = (time.perf_counter() - t0) / 60
    cmd = "python benchmarks/auto_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "## `auto`'s passes per attacked point (`benchmarks/auto_cost.py`)",
        "",
        f"Machine: {machine()}. Date: {_dt.date.today()}. Command: `{cmd}` "
        f"(total {minutes:.1f} min).",
        "",
        "The points of the `attacks` benchmark (the first 200 test points of each model). "
        "`auto` spends 1 forward pass on a point the model misclassifies and attacks the "
        "others (`attacked`); Foolbox FMN runs its 100 steps on every point it is given, here "
        "the attacked points alone. Passes per attacked point come from `auto`'s trace "
        "(the same run as the mean over all points, which is the `attacks` table's passes per "
        "point: `auto` is deterministic). Where Foolbox FMN was not run, 201 (its 100 steps of "
        "a forward and a backward pass, and one more forward) stands for it in the lines below "
        "the table.",
        "",
        table(rows),
        "",
        summary(rows),
    ])
    print(text)
    if not a.no_write:
        write_section("auto-cost", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How much smaller is the affine distance than the union distance on a nonlinear model?

An MLP (64-64-64-10, ReLU) trained 60 epochs on 1400 scikit-learn digits (8x8, scaled to
[0, 1]); on the first 100 held-out digits: per-norm ``pgd-search`` distances, their union and
:func:`robcurves.affine_distances` along the scale of the median per-norm distances, for the
three norms and for each pair with l_inf. Prints the ratio affine / union per point (median,
mean, min, max), the share of points where the affine distance is strictly smaller (by more
than 0.1% and by more than 5%) and the time, and writes the table to benchmarks/RESULTS.md
(section ``affine-vs-union``). Run:
``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/affine_vs_union.py`` (about 2 min).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from robcurves import affine_distances, distances, union

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    xs, ys = load_digits(return_X_y=True)
    xs, ys = (xs / 16.0).astype(np.float32), ys.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(xs))
    tr, te = perm[:1400], perm[1400:]
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    xt, yt = torch.tensor(xs[tr]), torch.tensor(ys[tr])
    for _ in range(60):
        for i in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[i]), yt[i]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(torch.tensor(xs[te])).argmax(1).numpy() == ys[te]).mean()
    x, y = torch.tensor(xs[te][:100]), torch.tensor(ys[te][:100])
    print(f"test accuracy {acc:.3f}; {len(y)} points")
    t0 = time.time()
    per = {p: distances(net, x, y, p, attack="pgd-search") for p in ("linf", "l2", "l1")}
    print(f"per-norm pgd-search: {time.time() - t0:.1f} s")
    med = {p: float(np.median(d.distances[np.isfinite(d.distances) & (d.distances > 0)]))
           for p, d in per.items()}
    rows = ["| threat | points | median affine/union | mean | min | max | >0.1% smaller | "
            ">5% smaller | rejected | affine s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for keys in (("linf", "l2", "l1"), ("linf", "l1"), ("linf", "l2")):
        sc = {k: med[k] for k in keys}
        u = union({p: per[p] for p in sc}, scale=sc)
        t0 = time.time()
        a = affine_distances(net, x, y, scale=sc, lambdas=4, seed=0)
        secs = time.time() - t0
        ok = np.isfinite(u.distances) & (u.distances > 0) & np.isfinite(a.distances)
        r = a.distances[ok] / u.distances[ok]
        print(f"{a.norm}: n={ok.sum()} affine/union median {np.median(r):.4f} mean "
              f"{r.mean():.4f} min {r.min():.4f} max {r.max():.4f}; smaller by >0.1% on "
              f"{np.mean(r < 0.999):.1%}, by >5% on {np.mean(r < 0.95):.1%} of points; "
              f"{secs:.1f} s, {a.cost['rejected']} rejected")
        rows.append(f"| `{a.norm}` | {ok.sum()} | {np.median(r):.4f} | {r.mean():.4f} | "
                    f"{r.min():.4f} | {r.max():.4f} | {np.mean(r < 0.999):.1%} | "
                    f"{np.mean(r < 0.95):.1%} | {a.cost['rejected']} | {secs:.0f} |")
    write_section("affine-vs-union", "## Affine vs union distance on a nonlinear model "
                  "(issue 15)\n\n"
                  f"MLP 64-64-64-10 on scikit-learn digits (held-out accuracy {acc:.3f}), the "
                  "first 100 held-out points; per-norm `pgd-search` distances, their union and "
                  "`robcurves.affine_distances(lambdas=4)` along the median per-norm distances. "
                  "Both are attack (upper-bound) distances, so a ratio below 1 is the affine "
                  "threat's extra power plus search noise; the >5% column is the safer "
                  f"figure.\n\nMachine: {machine()}. Command: `OMP_NUM_THREADS=1 "
                  "PYTHONPATH=src python benchmarks/affine_vs_union.py`\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()

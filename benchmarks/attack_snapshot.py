"""Snapshot of every attack's distances on two small digits models, to show that a refactor of
:mod:`robcurves.attacks` leaves the numbers unchanged.

    python benchmarks/attack_snapshot.py save  OUT.npz [--n 50]
    python benchmarks/attack_snapshot.py check OUT.npz [--n 50]

Models: an MLP (64-32-10) and a small CNN (conv 8x3x3, 10 outputs) trained for a fixed number of
Adam steps on the first 1,000 scikit-learn digits (scaled to [0, 1]) with seed 0; the trained
weights are cached next to OUT. The points are digits 1,500..1,500+n. Every attack runs through
:func:`robcurves.distances` with its defaults (``hsja`` with 600 queries per point) in every norm
it supports. ``check`` recomputes and reports, per (model, attack, norm), whether the distances
are bitwise identical, else the largest difference.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import inspect  # noqa: E402

from robcurves import distances  # noqa: E402
from robcurves._norms import norm_name  # noqa: E402
from robcurves.attacks import ATTACKS  # noqa: E402
from robcurves.model import wrap  # noqa: E402

RUNS = [("auto", {}), ("fmn", {}), ("fab", {}), ("ddn", {}), ("cw", {}), ("ead", {}),
        ("deepfool", {}), ("pgd-search", {}), ("apgd-search", {}),
        ("hsja", {"queries": 600})]
SUPPORTED = {"ddn": (2.0,), "cw": (2.0,), "ead": (1.0,), "apgd-search": (math.inf, 2.0),
             "hsja": (math.inf, 2.0)}


def _data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def _models(cache: Path, x: np.ndarray, y: np.ndarray) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    mods = {"mlp": nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
            "cnn": nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(8 * 6 * 6, 10))}
    for name, m in mods.items():
        f = cache / f"snapshot_{name}.pt"
        if f.exists():
            m.load_state_dict(torch.load(f))
        else:
            opt = torch.optim.Adam(m.parameters(), lr=1e-2)
            xt, yt = torch.from_numpy(x[:1000]), torch.from_numpy(y[:1000])
            for _ in range(300):
                opt.zero_grad()
                nn.functional.cross_entropy(m(xt), yt).backward()
                opt.step()
            torch.save(m.state_dict(), f)
        m.eval()
    return mods


def compute(out: Path, n: int) -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    x, y = _data()
    mods = _models(out.parent, x, y)
    xs, ys = x[1500:1500 + n], y[1500:1500 + n]
    res = {}
    for mname, m in mods.items():
        clf = wrap(m, bounds=(0.0, 1.0))
        for attack, kw in RUNS:
            if "queries" in kw:  # hsja's query cap: ``budget`` (``max_queries`` before 2026-11)
                params = inspect.signature(ATTACKS[attack][0]).parameters
                kw = {"budget" if "budget" in params else "max_queries": kw["queries"]}
            for p in SUPPORTED.get(attack, (math.inf, 2.0, 1.0)):
                d = distances(clf, xs, ys, p, attack=attack, **kw)
                res[f"{mname}/{attack}/{norm_name(p)}"] = d.distances
                print(f"{mname:4s} {attack:12s} {norm_name(p):5s} median "
                      f"{np.median(d.distances):.5f}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("save", "check"))
    ap.add_argument("file", type=Path)
    ap.add_argument("--n", type=int, default=50)
    a = ap.parse_args()
    res = compute(a.file, a.n)
    if a.mode == "save":
        np.savez(a.file, **res)
        return
    ref = np.load(a.file)
    bad = 0
    for k, v in res.items():
        r = ref[k]
        same = np.array_equal(r, v)
        diff = 0.0 if same else float(np.nanmax(np.abs(np.where(np.isinf(r) & np.isinf(v), 0,
                                                                 r - v))))
        bad += not same
        print(f"{k:28s} {'identical' if same else f'DIFFERENT (max |diff| {diff:.3g})'}")
    print(f"{len(res) - bad} of {len(res)} identical")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

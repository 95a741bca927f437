"""Train the model zoo on Fashion-MNIST and tabulate it in benchmarks/RESULTS.md.

For every zoo model: clean accuracy on the whole test set, robust accuracy at each training
threat model measured with the attack engine (``robcurves.distances``, the default `auto` attack:
robust at eps = distance > eps) on a fixed subset of test points, and training time.

    nice -n 10 python benchmarks/zoo.py [--out benchmarks/models] [--n 500] [--train-points N]

Models already in ``--out`` are reused (rerun to resume an interrupted zoo).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from robcurves.evaluate import distances  # noqa: E402
from robcurves.train import load_model  # noqa: E402
from robcurves.train.zoo import ZOO, _load_split, train_zoo  # noqa: E402

sys.path.insert(0, str(HERE))
from _results import machine, write_section  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fmnist")
    ap.add_argument("--out", default=str(HERE / "models"))
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--n", type=int, default=500, help="test points attacked per model")
    ap.add_argument("--train-points", type=int, default=None)
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 is fastest on a busy shared machine)")
    ap.add_argument("--models", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else list(ZOO)
    t0 = time.perf_counter()
    files = train_zoo(args.data, args.out, names=names, train_points=args.train_points,
                      epochs_scale=args.epochs_scale, progress=False)
    train_wall = time.perf_counter() - t0
    test = _load_split(args.data, "test")
    x, y = test.x[:args.n], test.y[:args.n]
    rows = []
    for name in names:
        module = load_model(files[name])
        m = module.robcurves_meta
        cells = []
        for t in m["threats"]:
            t_eval = time.perf_counter()
            d = distances(module, x, y, norm=t["norm"], seed=0)
            rob = float(np.mean(d.distances > t["eps"]))
            label = f"{t['norm']}@{t['eps']:g}"
            cells.append(f"{t['norm']} {t['eps']:g}: {rob:.3f} "
                         f"(PGD {m['pgd_accuracy'][label]:.3f}; "
                         f"{time.perf_counter() - t_eval:.0f}s)")
        cert = m.get("ibp_certified_accuracy")
        cert_s = ", ".join(f"{v:.3f}" for v in cert.values()) if cert else "-"
        rows.append(f"| {name} | {m['method']} | {m['data_n']} | {m['epochs']} | "
                    f"{m['clean_accuracy']:.3f} | {'<br>'.join(cells)} | {cert_s} | "
                    f"{m['train_seconds'] / 60:.1f} |")
        print(rows[-1], flush=True)
    cmd = "python benchmarks/zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "## Model zoo (Fashion-MNIST, small CNN)",
        "",
        f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. "
        f"Command: `{cmd.strip()}` (training wall time of this run, models trained now: "
        f"{train_wall / 60:.1f} min).",
        "",
        f"Clean accuracy on the {test.n} test points. Robust accuracy at each training threat "
        f"model on the first {len(y)} test points, measured with the attack engine "
        "(`robcurves.distances`, default `auto` minimal-norm attack pipeline; robust = "
        "distance > eps); in "
        "brackets the PGD accuracy fit() recorded at the end of training (20 steps, 1 restart, "
        "first 500 test points) and the evaluation time. Certified: IBP-certified l_inf accuracy "
        "(bound propagation). Time: training minutes (the machine was shared with other jobs).",
        "",
        "| model | method | train points | epochs | clean acc | robust acc (attack engine) | "
        "IBP certified | train min |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    write_section("zoo", text, Path(args.results))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

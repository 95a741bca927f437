"""The GPU path end to end: attack throughput of a CIFAR-10-sized WRN and the small CNN.

One prepared script for a machine with a GPU (CI never has one). For each model and norm it
runs :func:`robcurves.distances` with the default ``auto`` attack on ``--points`` points and
reports points per second, model passes per point (forward + backward, from the run's own
cost accounting), peak GPU memory (``torch.cuda.max_memory_allocated``) and the batch size
(by default chosen from free GPU memory, :func:`robcurves.batch_size_for`). From the WRN's
l_inf and l2 throughput it extrapolates the paper's Fig. 2 workload: 5 models x 10,000 points x
(l_inf, l2), assuming each of the 5 models costs what the WRN measured (target: under 10
minutes on one H100-class GPU).

Then, on the same device: ``robcurves.certify`` (CROWN, l_inf and l2, ``--certify-points``
points, ``--certify-iters`` bisection steps below ``fmn`` attack distances, which are not timed) of
the random-init ``cnn-small`` (the WRN has
residual blocks, which the certifiers do not take), and ``robcurves.interclass_distances``
(l_inf and l2) of ``--scale-points`` points (the ``--data`` set with its labels, else random
images with random labels, seed 0), each with points per second and peak GPU memory.

Models, both **random-init** (seed 0; no training, so the numbers measure the attack engine,
not a robust model's difficulty): ``wrn-28-10`` when the architecture registry has it, else
``wrn-16-k`` with k=10 (the output says which), and ``cnn-small``, the zoo's small CNN, both on
3x32x32 inputs with 10 classes. Points: ``--data`` (a data set robcurves loads, e.g. a CIFAR-10
folder, first N points) or by default uniform random images (seed 0); labels are each model's
own predictions, so that every point is correctly classified and really attacked (a random-init
model is wrong on most true labels, which would make those points free).

    python benchmarks/gpu.py                       # on the GPU machine: --device auto
    # smoke on a CPU (the WRN costs about 3 GFLOP a pass: a few points only)
    python benchmarks/gpu.py --device cpu --points 20 --budget 100 --models cnn-small \
        --certify-points 4 --certify-iters 4 --scale-points 300 --no-write
    python benchmarks/gpu.py --device cpu --points 2 --budget 100 --models wrn --no-write

Writes its table into the ``gpu`` section of benchmarks/RESULTS.md (``--results`` another
file, ``--no-write`` none).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
from _results import RESULTS, machine, write_section  # noqa: E402

#: The paper's Fig. 2 workload: models x points x norms.
FIG2 = {"models": 5, "points": 10_000, "norms": ("linf", "l2")}
TARGET_S = 600.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--norms", default="linf,l2,l1")
    ap.add_argument("--models", default="wrn,cnn-small", help="wrn and/or cnn-small")
    ap.add_argument("--budget", type=int, default=None, help="auto's passes per point "
                    "(default: auto's own, about 300-500); a CPU smoke needs a small one")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="points per batch (default: from free GPU memory; 256 on CPU)")
    ap.add_argument("--data", default=None, help="a data set of 3x32x32 images robcurves "
                    "loads (default: uniform random images, seed 0)")
    ap.add_argument("--deterministic", action="store_true",
                    help="reproducible GPU kernels (robcurves.set_deterministic)")
    ap.add_argument("--certify-points", type=int, default=200,
                    help="points certified (CROWN, cnn-small); 0: none")
    ap.add_argument("--certify-iters", type=int, default=10, help="bisection steps")
    ap.add_argument("--scale-points", type=int, default=10_000,
                    help="points of the inter-class distances; 0: none")
    ap.add_argument("--results", default=str(RESULTS), help="file for the table")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    import robcurves
    from robcurves.train.archs import ARCHS, build

    dev = robcurves.resolve_device(args.device)
    cuda = dev.type == "cuda"
    if args.deterministic:
        robcurves.set_deterministic(True)
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    shape, classes = (3, 32, 32), 10
    if "wrn-28-10" in ARCHS:
        wrn_name, wrn = "wrn-28-10", lambda: build("wrn-28-10", shape, classes)
    else:
        wrn_name, wrn = "wrn-16-10", lambda: build("wrn-16-k", shape, classes, k=10)
    makers = {"wrn": (wrn_name, wrn), "cnn-small": ("cnn-small",
                                                    lambda: build("cnn-small", shape, classes))}
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in chosen:
        if m not in makers:
            raise SystemExit(f"--models: unknown {m!r}; expected wrn, cnn-small")

    if args.data:
        ds = robcurves.data.load(args.data)
        if tuple(ds.input_shape) != shape:
            raise SystemExit(f"--data {args.data}: inputs of shape {tuple(ds.input_shape)}; "
                             f"expected {shape}")
        x = np.ascontiguousarray(ds.x[: args.points], dtype=np.float32)
        source = f"the first {len(x)} points of {args.data}"
    else:
        x = np.random.default_rng(0).random((args.points, *shape), dtype=np.float32)
        source = f"{args.points} uniform random 3x32x32 images (seed 0)"
    print(f"device {dev}; WRN: {wrn_name} (random init); data: {source}", flush=True)

    budget = {} if args.budget is None else {"budget": args.budget}
    rows = []
    fig2: dict[str, dict[str, float]] = {}  # model -> norm -> seconds for 10,000 points
    for key in chosen:
        name, make = makers[key]
        torch.manual_seed(0)
        net = make().eval().to(dev)
        params = sum(p.numel() for p in net.parameters())
        clf = robcurves.wrap(net, bounds=(0.0, 1.0), batch_size=512)
        y = clf.predict(x).numpy()  # every point correctly classified: all are attacked
        # warm-up (CUDA context, cuDNN choices), not timed
        robcurves.distances(clf, x[:4], y[:4], "l2", attack="auto", batch_size=4)
        for norm in norms:
            if cuda:
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            f0, b0 = clf.n_forward, clf.n_backward
            t0 = time.perf_counter()
            d = robcurves.distances(clf, x, y, norm, attack="auto", batch_size=args.batch_size,
                                    **budget)
            if cuda:
                torch.cuda.synchronize(dev)
            wall = time.perf_counter() - t0
            passes = (clf.n_forward - f0 + clf.n_backward - b0) / len(x)
            peak = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else math.nan
            pps = len(x) / wall
            row = {"model": name, "params": params, "norm": norm, "points": len(x),
                   "batch": d.settings["batch_size"], "seconds": wall, "pps": pps,
                   "passes": passes,
                   "attack_passes": d.cost["forward_per_point"] + d.cost["backward_per_point"],
                   "peak_gib": peak, "broken": float(np.isfinite(d.distances).mean()),
                   "median": float(np.median(d.distances))}
            rows.append(row)
            print(f"{name:10s} {norm:5s} {pps:9.3g} pt/s  {passes:7.1f} passes/pt  "
                  f"batch {row['batch']}  peak {peak:.2f} GiB  broken {row['broken']:.3f}  "
                  f"{wall:.1f} s", flush=True)
            if norm in FIG2["norms"]:
                fig2.setdefault(name, {})[norm] = FIG2["points"] / pps

    lines = [f"{_dt.date.today()}, {machine()}; device **{dev}**"
             + (f" ({torch.cuda.get_device_name(dev)})" if cuda else "")
             + (", deterministic kernels" if args.deterministic else "") + ".", "",
             f"Models: {', '.join(makers[k][0] for k in chosen)}, **random init** (seed 0, not "
             f"trained); 3x32x32 inputs, 10 classes. Points: {source}; labels are each model's "
             "own predictions, so every point is attacked. Attack `auto` ("
             + ("defaults" if args.budget is None else f"budget {args.budget} passes per point")
             + "), batch size "
             f"{'from free GPU memory' if args.batch_size is None and cuda else 'fixed'}.", "",
             "| model | params | norm | points | batch | seconds | points/s | passes/point "
             "(attack) | peak GPU memory | broken | median distance |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "-" if math.isnan(r["peak_gib"]) else f"{r['peak_gib']:.2f} GiB"
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['norm']} | {r['points']} "
                     f"| {r['batch']} | {r['seconds']:.1f} | {r['pps']:.3g} | {r['passes']:.1f} "
                     f"({r['attack_passes']:.1f}) | {peak} | {r['broken']:.3f} | "
                     f"{r['median']:.4g} |")
    lines.append("")
    lines.append("passes/point: forward + backward passes per point of the whole run (attack, "
                 "re-checks, predictions); in brackets the attack's own.")
    for name, per_norm in fig2.items():
        if set(per_norm) != set(FIG2["norms"]):
            lines.append(f"- Fig. 2 workload: not extrapolated for {name} (needs "
                         f"{' and '.join(FIG2['norms'])}; measured {', '.join(per_norm)}).")
            continue
        total = FIG2["models"] * sum(per_norm.values())
        ok = "within" if total <= TARGET_S else "over"
        lines.append(f"- Fig. 2 workload ({FIG2['models']} models x {FIG2['points']:,} points "
                     f"x {' and '.join(FIG2['norms'])}) if each model costs what {name} "
                     f"measured here: **{total / 60:.1f} min** ({ok} the 10-minute target; "
                     f"extrapolated linearly from {len(x)} points).")
    lines += _certify_and_scale(args, dev, x, shape, classes, robcurves, build, np, torch)
    body = "## GPU path (`benchmarks/gpu.py`)\n\n" + "\n".join(lines)
    print("\n" + body)
    if not args.no_write:
        path = write_section("gpu", body, Path(args.results))
        print(f"\nwrote {path}")
    return 0


def _timed(dev, torch, run) -> tuple[object, float, float]:
    """``run()``'s result, wall seconds and peak GPU memory in GiB (nan off CUDA)."""
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    out = run()
    if cuda:
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - t0
    return out, wall, (torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else math.nan)


def _certify_and_scale(args, dev, x, shape, classes, robcurves, build, np, torch) -> list[str]:
    """Rows for certify (CROWN on cnn-small) and interclass_distances on ``dev``."""
    rows = []
    if args.certify_points > 0:
        torch.manual_seed(0)
        clf = robcurves.wrap(build("cnn-small", shape, classes).eval().to(dev),
                             bounds=(0.0, 1.0))
        xc = x[: args.certify_points]
        yc = clf.predict(xc).numpy()
        from robcurves.certificates import _default_batch_size, network_steps

        batch = _default_batch_size(network_steps(clf, shape, dev), "crown", shape)
        for norm in ("linf", "l2"):
            # the bisection's bracket: attack distances (as `robcurves curve --certify`), untimed
            up = robcurves.distances(clf, xc, yc, norm, attack="fmn", steps=50).distances
            r, wall, peak = _timed(dev, torch, lambda norm=norm, up=up: robcurves.certify(
                clf, xc, yc, norm, "crown", upper=up, iters=args.certify_iters))
            rows.append((f"certify crown {norm}, cnn-small", len(xc), batch, wall, peak,
                         f"median radius {np.median(r.distances):.4g}"))
            print(f"certify crown {norm}: {len(xc) / wall:.3g} pt/s, {wall:.1f} s", flush=True)
    if args.scale_points > 0:
        if args.data:
            ds = robcurves.data.load(args.data)
            xs, ys = ds.x[: args.scale_points], ds.y[: args.scale_points]
            what = f"the first {len(xs)} points of {args.data}"
        else:
            rng = np.random.default_rng(0)
            xs = rng.random((args.scale_points, *shape), dtype=np.float32)
            ys = rng.integers(0, classes, args.scale_points)
            what = f"{args.scale_points} random images, random labels"
        for norm in ("linf", "l2"):
            r, wall, peak = _timed(dev, torch, lambda norm=norm: robcurves.interclass_distances(
                xs, ys, norm, device=dev))
            rows.append((f"interclass {norm}, {what}", len(xs), 1024, wall, peak,
                         f"median {np.median(r.distances):.4g}"))
            print(f"interclass {norm}: {len(xs) / wall:.3g} pt/s, {wall:.1f} s", flush=True)
    if not rows:
        return []
    out = ["", f"Certificates and inter-class distances on {dev}:", "",
           "| work | points | batch | seconds | points/s | peak GPU memory | result |",
           "|---|---|---|---|---|---|---|"]
    for what, n, batch, wall, peak, res in rows:
        mem = "-" if math.isnan(peak) else f"{peak:.2f} GiB"
        out.append(f"| {what} | {n} | {batch} | {wall:.1f} | {n / wall:.3g} | {mem} | {res} |")
    out.append("")
    out.append("certify's batch: its default (from free GPU memory on CUDA, else 32); "
               "interclass: blocks of 1024 rows.")
    return out


if __name__ == "__main__":
    raise SystemExit(main())

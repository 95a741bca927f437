"""``robcurves curve``: per-point distances and robustness curves for one model on one data set."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from .._norms import norm_name
from ._common import load_model_spec, parse_eps_list, parse_norms


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "curve", help="compute robustness curves of a model",
        description="Compute per-point minimal adversarial distances and robustness curves. "
                    "Each finished batch is saved in OUT/work/, so an interrupted run resumes "
                    "where it stopped when the same command is run again.")
    p.add_argument("--model", required=True,
                   help="robcurves model file, TorchScript file, torch.export .pt2, or "
                        "package.module:factory")
    p.add_argument("--data", required=True, help="data set name (e.g. digits) or path")
    p.add_argument("--norms", default="linf,l2",
                   help="comma-separated norms: linf, l2, l1 (default: linf,l2)")
    p.add_argument("--n", type=int, default=1000, help="number of points (the first N; "
                   "default 1000)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--attack", default="auto", help="attack name (default: auto)")
    p.add_argument("--budget", type=int, default=None,
                   help="model passes per point for the attack (if the attack takes a budget)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bounds", default=None,
                   help="input bounds low,high; 'none' for unbounded inputs (default: the data "
                        "set's, 0,1 for data on disk, unbounded for tsipras:...)")
    p.add_argument("--mean", default=None, help="preprocessing mean, comma-separated per channel")
    p.add_argument("--std", default=None, help="preprocessing std, comma-separated per channel")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--channels-last", action="store_true",
                   help="the model takes NHWC images (Keras): inputs are transposed inside")
    p.add_argument("--name", default=None, help="model name in plots (default: file stem)")
    p.add_argument("--eps", default=None,
                   help="eps values for the printed table and plot markers, e.g. 0.1,0.2 or "
                        "4/255,8/255 (default: quartiles of the distances)")
    p.add_argument("--split", default=None, help="split for data folders (train/test)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--certify", default=None, choices=["crown", "ibp", "milp", "exact-linear"],
                   help="also certify lower bounds with this method (saved as "
                        "certified-NORM.json) and plot the band between both curves")
    return p


def _floats(text: str | None) -> list[float] | None:
    return None if text is None else [float(v) for v in text.split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    from .. import data as rdata
    from ..curve import RobustnessCurve
    from ..evaluate import distances, fingerprint_model
    from ..model import wrap

    norms = parse_norms(args.norms)
    if args.bounds is not None and args.bounds.strip().lower() == "none":
        bounds: tuple = (-math.inf, math.inf)
    elif args.bounds is not None:
        bounds = tuple(_floats(args.bounds) or ())
        if len(bounds) != 2:
            raise ValueError(f"--bounds must be two numbers low,high or 'none'; got "
                             f"{args.bounds!r}")
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1; got {args.n}")
    module = load_model_spec(args.model)
    pre = None
    if args.mean is not None or args.std is not None:
        pre = {"mean": _floats(args.mean) or [0.0], "std": _floats(args.std) or [1.0]}
    options = {"channels_last": True} if args.channels_last else {}
    kwargs = {"split": args.split} if args.split else {}
    ds = rdata.load(args.data, **kwargs)
    if args.bounds is None:
        bounds = tuple(ds.bounds)
    clf = wrap(module, bounds=bounds, preprocessing=pre, device=args.device,
               batch_size=args.batch_size, **options)
    n = min(args.n, ds.n)
    x, y = ds.x[:n], ds.y[:n]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or (Path(args.model).stem if Path(args.model).exists() else args.model)
    model_meta = dict(getattr(module, "robcurves_meta", {}) or {})
    model_meta.update({"spec": args.model, "fingerprint": fingerprint_model(clf),
                       "preprocessing": pre, "bounds": list(bounds)})
    data_meta = {"name": ds.name, "source": ds.source, "n": n, "first_index": 0,
                 **{k: v for k, v in ds.info.items() if isinstance(v, (int, float, str))}}
    attack_kwargs = {"budget": args.budget} if args.budget is not None else {}

    curves = []
    bands: dict = {}
    timing = {}
    for p in norms:
        t0 = time.perf_counter()
        d = distances(clf, x, y, p, attack=args.attack, batch_size=args.batch_size,
                      seed=args.seed, store=out / "work" / norm_name(p),
                      progress=not args.no_progress, **attack_kwargs)
        timing[norm_name(p)] = time.perf_counter() - t0
        cost = {k: v for k, v in d.cost.items() if k != "seconds"}  # files must not vary by run
        curve = RobustnessCurve.from_distances(
            d, name=name, metadata={"model": model_meta, "data": data_meta, "method": d.method,
                                    "settings": d.settings, "cost": cost,
                                    "n_unbroken": d.n_unbroken})
        curve.save(out / f"curve-{norm_name(p)}.json")
        curves.append(curve)
        if args.certify:
            bands[curve.norm_name] = _certify_band(clf, x, y, p, d, curve, args, out)

    eps_list = parse_eps_list(args.eps) if args.eps else None
    _plot(curves, out / "curves.png", eps_list, bands)
    _print_table(curves, eps_list, timing)
    (out / "run.json").write_text(json.dumps({"command": vars(args) | {"_run": None},
                                              "seconds": timing}, indent=1, default=str))
    print(f"wrote {', '.join(f'curve-{c.norm_name}.json' for c in curves)} and curves.png "
          f"to {out}")
    return 0


def _certify_band(clf, x, y, p, d, curve, args, out: Path):
    """Certified lower bounds for one norm, saved next to the attack curve; their band."""
    from ..bands import band
    from ..certificates import METHODS, certify
    from ..curve import RobustnessCurve
    from ..evaluate import fingerprint_data
    from ..store import BatchStore, run_batches

    if p not in METHODS[args.certify]:
        print(f"note: --certify {args.certify} does not support {norm_name(p)}; skipped")
        return None
    # Certificates are the slow part: computed per batch and stored, so a rerun resumes.
    bs = args.batch_size
    store = BatchStore(out / "work" / f"certify-{args.certify}-{norm_name(p)}",
                       {"method": args.certify, "norm": norm_name(p), "n": len(y),
                        "batch_size": bs, "data": fingerprint_data(x, y, d.distances),
                        "model": curve.metadata["model"]["fingerprint"]})
    lo = run_batches(
        len(y), bs,
        lambda a, b: certify(clf, x[a:b], y[a:b], p, args.certify, upper=d.distances[a:b],
                             indices=d.indices[a:b]),
        store, progress=f"certify {args.certify} {norm_name(p)}" if not args.no_progress else None)
    cost = {k: v for k, v in lo.cost.items() if not k.startswith("seconds")}
    lcurve = RobustnessCurve.from_distances(
        lo, name=f"{curve.name} ({args.certify})",
        metadata={**curve.metadata, "method": lo.method, "settings": lo.settings, "cost": cost})
    lcurve.save(out / f"certified-{norm_name(p)}.json")
    b = band(lcurve, curve)
    print(f"band [{norm_name(p)}] {args.certify} vs attack: largest gap {b.max_gap:.4f}, "
          f"area {b.area:.4g}, pinned within 1%: {b.pinned:.3f}")
    return b


def _plot(curves, path: Path, eps_list: list[float] | None, bands: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False)
    for ax, c in zip(axes[0], curves, strict=True):
        b = (bands or {}).get(c.norm_name)
        if b is None:
            c.plot(ax=ax, eps_markers=eps_list or ())
        else:  # shade the region between the certified and the attack curve
            b.plot(ax=ax, label=c.name)
            for e in eps_list or ():
                ax.axvline(e, color="0.5", linestyle="--", linewidth=0.8)
            ax.legend(fontsize=7)
        ax.set_title(f"{c.name}: {c.norm_name} (n={c.n})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _print_table(curves, eps_list: list[float] | None, timing: dict) -> None:
    for c in curves:
        finite = c.distances[np.isfinite(c.distances) & (c.distances > 0)]
        eps = eps_list or (list(np.quantile(finite, [0.25, 0.5, 0.75])) if finite.size else [])
        print(f"\n{c.name} [{c.norm_name}] n={c.n}  clean accuracy={1 - c.clean_error:.4f}  "
              f"median distance={c.median_distance:.4g}  unbroken={c.n_unbroken}  "
              f"time={timing[c.norm_name]:.1f}s")
        print(f"  {'eps':>10}  {'robust error':>12}  {'robust accuracy':>15}")
        for e in eps:
            r = c.robust_error(e)
            print(f"  {e:>10.4g}  {r:>12.4f}  {1 - r:>15.4f}")
    if any(math.isinf(c.median_distance) for c in curves):
        print("\nnote: a median of inf means at least half the points were not broken")

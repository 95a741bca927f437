"""``robcurves curve``: per-point distances and robustness curves for one model on one data set."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from .._norms import norm_name
from ._common import (
    MODEL_FORMATS,
    add_backend_args,
    add_input_args,
    check_backend,
    load_model_spec,
    model_name,
    parse_eps_list,
    parse_input_args,
    parse_kv,
    parse_norms,
    positive,
    ray_kwargs,
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "curve", help="compute robustness curves of a model",
        description="Compute per-point minimal adversarial distances and robustness curves. "
                    "Each finished batch is saved in OUT/work/, so an interrupted run resumes "
                    "where it stopped when the same command is run again (with the same "
                    "--threads: the last digits depend on it). Adding a norm to an existing "
                    "OUT of the same model and data adds its curve; curves.png, run.json and "
                    "the printed table cover every curve in OUT.")
    p.add_argument("--model", required=True, help=MODEL_FORMATS)
    p.add_argument("--data", required=True, help="data set name (e.g. digits) or path")
    p.add_argument("--norms", default="linf,l2",
                   help="comma-separated norms: linf, l2, l1 (default: linf,l2)")
    p.add_argument("--n", type=int, default=1000, help="number of points (the first N; "
                   "default 1000)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--attack", default="auto", help="attack name (default: auto)")
    p.add_argument("--budget", type=int, default=None,
                   help="model passes per point for the attack (attacks that take it: "
                        f"{', '.join(_takers('budget'))})")
    p.add_argument("--attack-opt", action="append", type=parse_kv, default=[],
                   metavar="KEY=VALUE", help="another option of the attack, e.g. restarts=2 or "
                   "sweep=false (repeatable)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    add_input_args(p)
    p.add_argument("--channels-last", action="store_true",
                   help="the model takes NHWC images (Keras): inputs are transposed inside")
    p.add_argument("--name", default=None, help="model name in plots (default: file stem)")
    p.add_argument("--eps", default=None,
                   help="eps values for the printed table and plot markers, e.g. 0.1,0.2 or "
                        "4/255,8/255 (default: quartiles of the distances)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_backend_args(p, "the same batches on Ray workers, byte-identical results, same "
                        "OUT/work/ store; --model must be readable by every worker")
    p.add_argument("--certify", default=None,
                   choices=["auto", "crown", "ibp", "milp", "exact-linear"],
                   help="also certify lower bounds with this method (auto: exact for "
                        "affine models, else crown; saved as "
                        "certified-NORM.json) and plot the band between both curves")
    return p


def _takers(option: str) -> list[str]:
    """Attacks whose function takes ``option``."""
    import inspect

    from ..attacks import ATTACKS

    return sorted(a for a, (f, _) in ATTACKS.items() if option in inspect.signature(f).parameters)


def _check_args(args: argparse.Namespace) -> dict:
    """Every argument that can be checked without the model or data, before any work."""
    from ..attacks import get_attack
    from ..evaluate import check_attack_options

    norms = parse_norms(args.norms)
    inputs = parse_input_args(args)
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1; got {args.n}")
    positive(args.batch_size, "--batch-size")
    positive(args.budget, "--budget")
    attack_kwargs = dict(args.attack_opt)
    for key, flag in (("seed", "--seed"), ("budget", "--budget")):
        if key in attack_kwargs:
            raise ValueError(f"--attack-opt {key}={attack_kwargs[key]!r}: the {key} is set with "
                             f"{flag}, not --attack-opt")
    if args.budget is not None:
        if args.attack not in _takers("budget"):
            raise ValueError(f"--budget is not taken by --attack {args.attack}; attacks that "
                             f"take --budget: {', '.join(_takers('budget'))}")
        attack_kwargs["budget"] = args.budget
    for p in norms:
        get_attack(args.attack, p)  # unknown attack or a norm it does not support
    check_attack_options(args.attack, attack_kwargs)
    ray_options = check_backend(args)
    eps_list = parse_eps_list(args.eps) if args.eps else None
    if args.eps is not None and not eps_list:
        raise ValueError(f"--eps {args.eps!r} holds no eps; expected e.g. 0.1,0.2 or 4/255")
    return {"norms": norms, **inputs,
            "attack_kwargs": attack_kwargs, "eps_list": eps_list, "ray": ray_options}


def _check_preprocessing(mean: list[float] | None, std: list[float] | None,
                         input_shape: tuple[int, ...]) -> dict | None:
    """``--mean``/``--std`` as preprocessing, each one value or one per channel."""
    if mean is None and std is None:
        return None
    channels = input_shape[0]
    what = "channel" if len(input_shape) > 1 else "feature"
    for option, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise ValueError(f"{option} has {len(values)} values; the data has {channels} "
                             f"{what}{'s' if channels != 1 else ''} (inputs of shape "
                             f"{tuple(input_shape)}): give 1 value or {channels}")
    return {"mean": mean or [0.0], "std": std or [1.0]}


def _check_folder(out: Path, fingerprint: str, spec: str, data_meta: dict,
                  norms: list[float], threads: int | None) -> None:
    """Refuse an OUT holding curves of another model or other points (its summary would mix
    them), or a resume at another thread count (the last digits depend on it)."""
    from ..curve import RobustnessCurve

    for p in norms:
        manifest = out / "work" / norm_name(p) / "manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text()).get("threads")
            if threads is not None and old is not None and old != threads:
                raise ValueError(f"{out} holds a {norm_name(p)} run computed with --threads "
                                 f"{old}; resume it with --threads {old} (float sums round "
                                 "differently with another thread count), or use another --out")
    for f in sorted(out.glob("curve-*.json")):
        meta = RobustnessCurve.load(f).metadata
        old_fp = (meta.get("model") or {}).get("fingerprint")
        old_spec = (meta.get("model") or {}).get("spec")
        old_data = meta.get("data") or {}
        if old_fp != fingerprint or (not fingerprint and old_spec != spec):  # "": not torch
            raise ValueError(f"{out} already holds {f.name} of another model (fingerprint "
                             f"{old_fp}, this model {fingerprint}); use another --out")
        for key in ("name", "n", "first_index"):
            if old_data.get(key) != data_meta.get(key):
                raise ValueError(f"{out} already holds {f.name} on other points (data {key} "
                                 f"{old_data.get(key)!r}, this run {data_meta.get(key)!r}); "
                                 "use another --out")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..curve import RobustnessCurve
    from ..evaluate import distances, fingerprint_model, probe_model
    from ..model import wrap

    checked = _check_args(args)
    norms, bounds, eps_list = checked["norms"], checked["bounds"], checked["eps_list"]
    module = load_model_spec(args.model)
    ds, data_meta, warning = _evaluation_data(args, module)
    pre = _check_preprocessing(checked["mean"], checked["std"], tuple(ds.input_shape))
    options = {"channels_last": True} if args.channels_last else {}
    if bounds is None:
        bounds = tuple(ds.bounds)
    wrap_options = dict(bounds=bounds, preprocessing=pre, device=args.device,
                        batch_size=args.batch_size, **options)
    ray_options = checked["ray"]
    if ray_options is None:
        clf = wrap(module, **wrap_options)
        model_arg = clf
    else:  # each Ray worker loads --model itself
        from .._ray import ModelSpec

        model_arg = ModelSpec(args.model, wrap_options)
        clf = model_arg.load(module)
    n = data_meta["n"]
    x, y = ds.x[:n], ds.y[:n]
    probe_model(clf, x, name=args.model)  # a model that does not fit the data fails here
    out = Path(args.out)
    name = args.name or model_name(args.model)
    model_meta = dict(getattr(module, "robcurves_meta", {}) or {})
    model_meta.update({"spec": args.model, "fingerprint": fingerprint_model(clf),
                       "preprocessing": pre, "bounds": list(bounds)})
    threads = torch.get_num_threads() if torch.device(clf.device).type == "cpu" else None
    _check_folder(out, model_meta["fingerprint"], args.model, data_meta, norms, threads)
    out.mkdir(parents=True, exist_ok=True)
    attack_kwargs = checked["attack_kwargs"]

    curves = []
    bands: dict = {}
    timing = {}
    for p in norms:
        t0 = time.perf_counter()
        d = distances(model_arg, x, y, p, attack=args.attack, batch_size=args.batch_size,
                      seed=args.seed, store=out / "work" / norm_name(p),
                      progress=not args.no_progress, **ray_kwargs(ray_options),
                      **attack_kwargs)
        timing[norm_name(p)] = time.perf_counter() - t0
        cost = {k: v for k, v in d.cost.items() if k != "seconds"}  # files must not vary by run
        meta = {"model": model_meta, "data": data_meta, "method": d.method,
                "settings": d.settings, "cost": cost, "n_unbroken": d.n_unbroken}
        if warning:
            meta["warning"] = warning
        curve = RobustnessCurve.from_distances(d, name=name, metadata=meta)
        curve.save(out / f"curve-{norm_name(p)}.json")
        curves.append(curve)
        if args.certify:
            bands[curve.norm_name] = _certify_band(clf, x, y, p, d, curve, args, out,
                                                   ray_options)

    new = [f"curve-{c.norm_name}.json" for c in curves]
    curves, bands, timing, commands = _folder_summary(out, curves, bands, timing, args)
    _plot(curves, out / "curves.png", eps_list, bands, warning)
    _print_table(curves, eps_list, timing)
    run_info = {"command": vars(args) | {"_run": None}, "commands": commands,
                "curves": [f"curve-{c.norm_name}.json" for c in curves], "seconds": timing,
                "data": data_meta}
    if warning:
        run_info["warning"] = warning
        print(f"\nWARNING: {warning}")
    (out / "run.json").write_text(json.dumps(run_info, indent=1, default=str))
    older = len(curves) - len(new)
    print(f"wrote {', '.join(new)} and curves.png to {out}"
          + (f" (curves.png, run.json and the table also cover its {older} earlier curve"
             f"{'s' if older != 1 else ''})" if older else ""))
    return 0


def _folder_summary(out: Path, curves: list, bands: dict, timing: dict,
                    args: argparse.Namespace) -> tuple[list, dict, dict, list]:
    """This run's curves plus the earlier ones in ``out`` (other norms of the same model and
    points, checked before the run), with their bands and times from the earlier run.json."""
    from ..bands import band
    from ..curve import RobustnessCurve

    old_run = {}
    if (out / "run.json").exists():
        try:
            old_run = json.loads((out / "run.json").read_text())
        except json.JSONDecodeError:
            old_run = {}
    commands = list(old_run.get("commands") or
                    ([old_run["command"]] if "command" in old_run else []))
    commands.append(vars(args) | {"_run": None})
    seconds = {**(old_run.get("seconds") or {}), **timing}
    done = {c.norm_name for c in curves}
    for f in out.glob("curve-*.json"):
        c = RobustnessCurve.load(f)
        if c.norm_name in done:
            continue
        curves.append(c)
        cert = out / f"certified-{c.norm_name}.json"
        if cert.exists() and c.norm_name not in bands:
            bands[c.norm_name] = band(RobustnessCurve.load(cert), c)
    curves.sort(key=lambda c: -c.norm)  # linf, l2, l1
    return curves, bands, seconds, commands


def _evaluation_data(args: argparse.Namespace, module) -> tuple:
    """The data set to evaluate on, its metadata for the curve files, and a warning (or None).

    For a model file trained on ``--data`` (without ``--split``), the held-out part it records.
    Points the model was trained on are refused unless ``--allow-train-points``.
    """
    from .. import data as rdata
    from ..data.splits import describe, held_out, training_points

    record = (getattr(module, "robcurves_meta", None) or {}).get("train_data") or {}
    if args.split is None and record.get("spec") == args.data and record.get("held_out"):
        ds = held_out(record)
        print(f"note: evaluating on {ds.name}, the {ds.n} points held out when the model was "
              f"trained on {record['name']}")
    else:
        ds = rdata.load(args.data, **({"split": args.split} if args.split else {}))
    n = min(args.n, ds.n)
    meta = {**describe(ds, n), "spec": args.data}
    if meta["split"] is None:
        meta["split"] = args.split
    if args.n > ds.n:
        meta["n_requested"] = args.n
        print(f"note: --n {args.n} asks for more points than {ds.name} holds ({ds.n}); "
              f"using all {ds.n}")
    warning = None
    k = training_points(record, ds, n)
    if k:
        what = (f"{k} of the {n} points of {ds.name} are points the model was trained on "
                f"({record.get('name')}, {record.get('n')} points)")
        if not args.allow_train_points:
            hint = ("drop --split to use the held-out part it records, or " if
                    record.get("spec") == args.data and record.get("held_out") else "")
            raise ValueError(f"{what}: a curve on training points overstates robustness; "
                             f"{hint}evaluate on other data, or pass --allow-train-points")
        warning = f"{what}; curves on training points overstate robustness"
        meta["train_points"] = k
        print(f"WARNING: {warning}")
    return ds, meta, warning


def _certify_band(clf, x, y, p, d, curve, args, out: Path, ray_options=None):
    """Certified lower bounds for one norm, saved next to the attack curve; their band (the
    batches on Ray workers with ``ray_options``, each receiving the network once)."""
    from ..bands import band
    from ..certificates import METHODS, certify
    from ..curve import RobustnessCurve

    if p not in METHODS[args.certify]:
        print(f"note: --certify {args.certify} does not support {norm_name(p)}; skipped")
        return None
    # Certificates are the slow part: computed per batch and stored, so a rerun resumes.
    lo = certify(clf, x, y, p, args.certify, upper=d.distances, indices=d.indices,
                 batch_size=args.batch_size,
                 store=out / "work" / f"certify-{args.certify}-{norm_name(p)}",
                 progress=not args.no_progress, **ray_kwargs(ray_options))
    cost = {k: v for k, v in lo.cost.items() if not k.startswith("seconds")}
    lcurve = RobustnessCurve.from_distances(
        lo, name=f"{curve.name} ({args.certify})",
        metadata={**curve.metadata, "method": lo.method, "settings": lo.settings, "cost": cost})
    lcurve.save(out / f"certified-{norm_name(p)}.json")
    b = band(lcurve, curve)
    print(f"band [{norm_name(p)}] {args.certify} vs attack: largest gap {b.max_gap:.4f}, "
          f"area {b.area:.4g}, pinned within 1%: {b.pinned:.3f}")
    return b


def _plot(curves, path: Path, eps_list: list[float] | None, bands: dict | None = None,
          warning: str | None = None) -> None:
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
        ax.set_title(f"{c.name}: {c.norm_name} (n={c.n})"
                     + ("\nWARNING: on training points" if warning else ""))
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
              + (f"time={timing[c.norm_name]:.1f}s" if c.norm_name in timing else "time=-"))
        print(f"  {'eps':>10}  {'robust error':>12}  {'robust accuracy':>15}")
        for e in eps:
            r = c.robust_error(e)
            print(f"  {e:>10.4g}  {r:>12.4f}  {1 - r:>15.4f}")
    if any(math.isinf(c.median_distance) for c in curves):
        print("\nnote: a median of inf means at least half the points were not broken")

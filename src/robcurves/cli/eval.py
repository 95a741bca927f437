"""``robcurves eval``: robust accuracy at one eps under the AutoAttack protocol, optionally next
to a robustness curve of the same model, data and norm."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._norms import norm_name, parse_norm
from ._common import (
    MODEL_FORMATS,
    add_input_args,
    load_curves,
    load_model_spec,
    model_name,
    parse_eps,
    parse_input_args,
    positive,
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval", help="robust accuracy at one eps (AutoAttack protocol)",
        description="Robust accuracy at one eps with the protocol papers report: APGD-CE, "
                    "APGD-T, FAB-T and Square in sequence, each on the points still robust. "
                    "Prints the accuracy and which attack broke how many points; with --curve, "
                    "also the curve's robust accuracy at that eps (it may not be higher: a "
                    "higher one is flagged).")
    p.add_argument("--model", required=True, help=MODEL_FORMATS)
    p.add_argument("--data", required=True, help="data set name (e.g. digits) or path")
    p.add_argument("--norm", required=True, help="linf or l2")
    p.add_argument("--eps", required=True, help="the radius, e.g. 0.03 or 8/255 (> 0)")
    p.add_argument("--protocol", default="autoattack", help="protocol (default: autoattack)")
    p.add_argument("--n", type=int, default=1000, help="number of points (the first N; "
                   "default 1000)")
    p.add_argument("--curve", default=None, metavar="FILE",
                   help="a curve file (robcurves curve) of the same model, data and norm to "
                        "compare with")
    p.add_argument("--n-queries", type=int, default=5000,
                   help="Square's queries per point (default 5000, the standard protocol)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="also write the result as JSON, per-point results included (read by "
                        "`robcurves compare --autoattack-result FILE` next to the curves)")
    p.add_argument("--name", default=None,
                   help="model name in the JSON (default: the --curve's name, else the model "
                        "file stem, as `robcurves curve` names it)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    add_input_args(p)
    return p


def _check_args(args: argparse.Namespace) -> dict:
    """Every argument that can be checked without the model or data, before any work."""
    import math

    from ..protocol import PROTOCOLS

    p = parse_norm(args.norm)
    if p not in (math.inf, 2.0):
        raise ValueError(f"--norm must be linf or l2 (the protocol's attacks cover those); got "
                         f"{args.norm!r}")
    eps = parse_eps(args.eps, "--eps")
    if args.protocol not in PROTOCOLS:
        raise ValueError(f"unknown --protocol {args.protocol!r}; expected one of "
                         f"{', '.join(sorted(PROTOCOLS))}")
    if args.n < 1:
        raise ValueError(f"--n must be >= 1; got {args.n}")
    positive(args.batch_size, "--batch-size")
    positive(args.n_queries, "--n-queries")
    inputs = parse_input_args(args)
    curve = None
    if args.curve is not None:
        (curve,) = load_curves([args.curve])
        if curve.norm != p:
            raise ValueError(f"--curve {args.curve!r} is a {curve.norm_name} curve; --norm is "
                             f"{norm_name(p)}")
    return {"norm": p, "eps": eps, **inputs, "curve": curve}


def _check_curve_points(curve, data_meta: dict, fingerprint: str, path: str) -> None:
    """Refuse a curve of other points or (for torch models) another model."""
    old = curve.metadata.get("data") or {}
    for key in ("name", "n", "first_index"):
        if key in old and old.get(key) != data_meta.get(key):
            raise ValueError(f"--curve {path!r} is on other points (data {key} {old.get(key)!r}, "
                             f"this run {data_meta.get(key)!r})")
    if curve.n != data_meta["n"]:
        raise ValueError(f"--curve {path!r} has {curve.n} points; this run has {data_meta['n']}")
    old_fp = (curve.metadata.get("model") or {}).get("fingerprint")
    if old_fp and fingerprint and old_fp != fingerprint:
        raise ValueError(f"--curve {path!r} is of another model (fingerprint {old_fp}, this "
                         f"model {fingerprint})")


def _check_curve_predictions(curve, clf, x, y, path: str) -> None:
    """Refuse, before any attack, a curve of other labels, clean predictions or misclassified
    points (what the report's fixed-eps section would refuse after the protocol ran)."""
    import numpy as np

    from ..report.build import points_differ

    pred = clf.predict(x).cpu().numpy()
    why = points_differ(curve, {}, np.asarray(y), pred, pred != np.asarray(y))
    if why:
        raise ValueError(f"--curve {path!r} is not of these points and this model: {why}")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..evaluate import fingerprint_model, probe_model
    from ..model import wrap
    from ..protocol import robust_accuracy
    from ..report import save_protocol
    from .curve import _check_preprocessing, _evaluation_data

    checked = _check_args(args)
    p, eps, curve = checked["norm"], checked["eps"], checked["curve"]
    module = load_model_spec(args.model)
    ds, data_meta, warning = _evaluation_data(args, module)
    pre = _check_preprocessing(checked["mean"], checked["std"], tuple(ds.input_shape))
    bounds = checked["bounds"] if checked["bounds"] is not None else tuple(ds.bounds)
    clf = wrap(module, bounds=bounds, preprocessing=pre, device=args.device,
               batch_size=args.batch_size)
    n = data_meta["n"]
    x, y = ds.x[:n], ds.y[:n]
    probe_model(clf, x, name=args.model)
    fingerprint = fingerprint_model(clf)
    if curve is not None:
        _check_curve_points(curve, data_meta, fingerprint, args.curve)
        _check_curve_predictions(curve, clf, x, y, args.curve)
    r = robust_accuracy(clf, x, y, p, eps, args.protocol, n_queries=args.n_queries,
                        seed=args.seed)
    r = dataclasses.replace(r, metadata={"model": {"spec": args.model,
                                                   "fingerprint": fingerprint},
                                         "data": data_meta})
    print(r.summary())
    print(f"  passes per point: {r.forward_passes / r.n:.0f} forward, "
          f"{r.backward_passes / r.n:.0f} backward; {r.seconds:.1f}s")
    extra = {}
    if curve is not None:
        extra["curve"] = _compare_with_curve(curve, r, eps, args.curve)
    if warning:
        extra["warning"] = warning
        print(f"\nWARNING: {warning}")
    if args.out:
        name = args.name or (curve.name if curve is not None else model_name(args.model))
        save_protocol(args.out, name, r, **extra)
        print(f"wrote {args.out}")
    return 0


def _compare_with_curve(curve, r, eps: float, path: str) -> dict:
    """Print the curve's robust accuracy at eps next to the protocol's; warn if higher."""
    from ..report.build import protocol_check
    from ..report.text import format_eps, protocol_words

    ck = protocol_check(curve.name, curve, r)
    line = protocol_words(ck, lambda nm, e: format_eps(e, digits=6))
    print(f"curve {Path(path).name}: {line}")
    if ck.higher:
        gap = 100 * (ck.curve_accuracy - r.accuracy)
        print(f"WARNING: the curve's robust accuracy is {gap:.1f} points HIGHER than the "
              "protocol's: it overstates robustness at this eps")
    return {"file": str(path), "accuracy": ck.curve_accuracy,
            "difference": ck.curve_accuracy - r.accuracy, "points_missed_by_curve": ck.missed,
            "higher": ck.higher}

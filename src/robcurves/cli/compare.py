"""``robcurves compare``: compare saved curves over all eps and write an HTML/markdown report.

Optional sections: ``--human FILE`` (a human study, ``human.json`` of ``robcurves label
study``), ``--masking FILE`` (a saved gradient-masking check) and ``--masking-check N`` (run the
check now on the first N points of every model, reloading each model and data set its curve
file names; saved as ``DIR/masking-MODEL.json``), ``--autoattack-result FILE`` (a saved
fixed-eps protocol result, as ``robcurves eval --out`` writes) and ``--autoattack NORM:EPS``
(run the AutoAttack protocol now on all the points of every model's curve in that norm,
reloading model and data the same way; saved as ``DIR/autoattack-MODEL-NORM-EPS.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import time
from pathlib import Path

from .._norms import norm_name, parse_norm
from ._common import parse_eps_list


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare", help="compare models' curves: crossings, significance, report",
        description="Compare the robustness curves of several models measured on the same "
                    "points: where they cross, which model wins on which eps interval, whether "
                    "each difference is significant, point-wise tables with ranks, "
                    "threat-model diagnostics. Writes DIR/report.html (self-contained), "
                    "DIR/report.md and DIR/figures/.")
    p.add_argument("curves", nargs="+", metavar="CURVE",
                   help="curve JSON files (`robcurves curve` output); any norms, grouped by norm")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.add_argument("--eps", action="append", default=None, metavar="[NORM:]LIST",
                   help="eps for the point-wise table and the dashed markers, e.g. "
                        "1/255,4/255,8/255; prefix with a norm to set it for that norm only "
                        "(--eps linf:4/255,8/255 --eps l2:0.25,0.5). Default: three eps "
                        "where the curves reach about 25/50/75%% robust error")
    p.add_argument("--level", type=float, default=0.95,
                   help="confidence level of bands and significance marks (default 0.95)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="paired bootstrap resamples over test points (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--eps-max", type=str, default=None,
                   help="upper end of the eps range for areas under the curves, e.g. 16/255")
    p.add_argument("--intersect", action="store_true",
                   help="compare on the points common to all curves of a norm instead of "
                        "refusing different point sets")
    p.add_argument("--logx", action="store_true", help="logarithmic eps axes")
    p.add_argument("--human", action="append", default=[], metavar="FILE",
                   help="a human study (human.json written by `robcurves label study`) of one "
                        "of the curves: adds a 'human validation' section (repeatable)")
    p.add_argument("--masking", action="append", default=[], metavar="FILE",
                   help="a saved gradient-masking check (masking-MODEL.json, written by "
                        "--masking-check or robcurves.report.save_masking): adds it to the "
                        "'gradient masking check' section (repeatable)")
    p.add_argument("--masking-check", type=int, default=None, metavar="N",
                   help="run the gradient-masking check on the first N points (1 to "
                        f"{MAX_MASKING_POINTS}; 20 is a good start) of every model, reloading "
                        "the model and data its curve file names (curves of `robcurves "
                        "curve`), in l2 where the model has an l2 curve, else linf. Costs per "
                        "model one gradient attack plus up to --masking-budget batched model "
                        "passes per decision-based attack (hsja; in l2 also boundary); each "
                        "result is saved as DIR/masking-MODEL.json")
    p.add_argument("--masking-budget", type=int, default=None, metavar="Q",
                   help="with --masking-check: label queries (model passes) per point for "
                        "each decision-based attack (default: the attacks' own, 5000 for hsja "
                        "and 10000 for boundary; fewer is faster and finds larger distances, "
                        "so it flags less)")
    p.add_argument("--autoattack", action="append", default=[], metavar="NORM:LIST",
                   help="run the AutoAttack protocol (robcurves eval) at these eps, e.g. "
                        "linf:8/255 or l2:0.5,1 (linf and l2; repeatable), on all the points "
                        "of every model's curve in that norm, reloading the model and data its "
                        "curve file names: adds a 'fixed-eps protocol' section with the "
                        "curve's robust accuracy next to the protocol's (a higher curve is "
                        "flagged); each result is saved as DIR/autoattack-MODEL-NORM-EPS.json")
    p.add_argument("--autoattack-queries", type=int, default=None, metavar="Q",
                   help="with --autoattack: Square's queries per point (default 5000, the "
                        "standard protocol)")
    p.add_argument("--autoattack-result", action="append", default=[], metavar="FILE",
                   help="a saved fixed-eps protocol result (written by `robcurves eval "
                        "--out`, --autoattack or robcurves.report.save_protocol) of a model "
                        "with a curve here, on the same points: adds it to the 'fixed-eps "
                        "protocol' section (repeatable)")
    return p


#: most points ``--masking-check`` takes (decision-based attacks cost thousands of queries each)
MAX_MASKING_POINTS = 200


def parse_eps_options(values: list[str] | None) -> dict[str, list[float]] | None:
    """``["1/255,8/255", "l2:0.5"]`` -> ``{"*": [...], "l2": [0.5]}``."""
    if not values:
        return None
    out: dict[str, list[float]] = {}
    for v in values:
        key = "*"
        head, sep, rest = v.partition(":")
        if sep:
            key, v = norm_name(parse_norm(head.strip())), rest
        if key in out:
            raise ValueError(f"--eps given twice for {'all norms' if key == '*' else key}")
        eps = parse_eps_list(v)
        if not eps:
            raise ValueError(f"--eps {v!r} holds no eps; expected e.g. 1/255,4/255,8/255")
        out[key] = eps
    return out


def parse_protocol_eps(values: list[str]) -> dict[str, list[float]]:
    """``["linf:8/255", "l2:0.5,1"]`` -> ``{"linf": [8/255], "l2": [0.5, 1.0]}``."""
    out: dict[str, list[float]] = {}
    for v in values:
        head, sep, rest = v.partition(":")
        if not sep:
            raise ValueError(f"--autoattack takes NORM:EPS[,EPS...], e.g. linf:8/255; got {v!r}")
        nm = norm_name(parse_norm(head.strip()))
        if nm not in ("linf", "l2"):
            raise ValueError(f"--autoattack {v!r}: the protocol's attacks cover linf and l2; "
                             f"got {nm}")
        eps = parse_eps_list(rest)
        bad = [e for e in eps if not (e > 0 and math.isfinite(e))]
        if not eps or bad:
            raise ValueError(f"--autoattack {v!r}: expected eps > 0, e.g. linf:4/255,8/255")
        out.setdefault(nm, [])
        out[nm] += [e for e in eps if e not in out[nm]]
    return out


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ..report import build_report
    from ..report.build import check_sections
    from ._common import load_curves, parse_eps

    eps_max = parse_eps(args.eps_max) if args.eps_max else None
    eps = parse_eps_options(args.eps)
    if not 0 < args.level < 1:
        raise ValueError(f"--level must lie in (0, 1); got {args.level}")
    if args.n_boot < 1:
        raise ValueError(f"--n-boot must be >= 1; got {args.n_boot}")
    n_check = args.masking_check
    if n_check is not None and not 1 <= n_check <= MAX_MASKING_POINTS:
        raise ValueError(f"--masking-check takes a number of points from 1 to "
                         f"{MAX_MASKING_POINTS}; got {n_check}")
    if args.masking_budget is not None:
        if n_check is None:
            raise ValueError("--masking-budget is the budget of --masking-check; give both")
        if args.masking_budget < 10:
            raise ValueError(f"--masking-budget must be >= 10 queries; got {args.masking_budget}")
    aa_eps = parse_protocol_eps(args.autoattack)
    if args.autoattack_queries is not None:
        if not aa_eps:
            raise ValueError("--autoattack-queries is the budget of --autoattack; give both")
        if args.autoattack_queries < 1:
            raise ValueError(f"--autoattack-queries must be >= 1; got "
                             f"{args.autoattack_queries}")
    curves = load_curves(args.curves)
    human = _load_human(args.human)
    masking = _load_masking(args.masking)
    protocol = _load_protocol(args.autoattack_result)
    plan = _masking_plan(curves, n_check, set(masking)) if n_check else []
    aa_plan = _protocol_plan(curves, aa_eps, protocol)
    # the report's own checks (human study of a curve not compared, masking of a model without
    # curve, protocol result on other points) run now, before the checks spend minutes
    check_sections(curves, human=human, masking=masking, protocol=protocol)
    for name, curve in plan:
        masking[name] = _run_masking_check(name, curve, n_check, Path(args.out), args)
    for name, curve, eps_list in aa_plan:
        protocol.setdefault(name, []).extend(
            _run_protocol(name, curve, eps_list, Path(args.out), args))
    rep = build_report(curves, eps=eps, level=args.level,
                       n_boot=args.n_boot, seed=args.seed, intersect=args.intersect,
                       logx=args.logx, eps_max=eps_max, human=human, masking=masking,
                       protocol=protocol)
    paths = rep.write(Path(args.out))
    for line in rep.summary:
        print(f"- {line}")
    n_fig = sum(1 for k in paths if k.endswith(".png"))
    print(f"wrote {paths['html']}, {paths['markdown']} and {n_fig} figures "
          f"(PNG + SVG) in {Path(args.out) / 'figures'}")
    return 0


def _load_human(files: list[str]) -> list:
    from ..studies.human import HumanStudy

    return [HumanStudy.load(f) for f in files]


def _load_masking(files: list[str]) -> dict:
    from ..report import load_masking

    out: dict = {}
    for f in files:
        name, res = load_masking(f)
        if name in out:
            raise ValueError(f"--masking: two checks of model {name!r} ({out[name][0]} and {f})")
        out[name] = (f, res)
    return {name: res for name, (_, res) in out.items()}


def _load_protocol(files: list[str]) -> dict[str, list]:
    from ..report import load_protocol

    out: dict[str, list] = {}
    for f in files:
        name, res = load_protocol(f)
        out.setdefault(name, []).append(res)
    return out


def _protocol_plan(curves: list, eps: dict[str, list[float]], given: dict[str, list]
                   ) -> list[tuple[str, object, list[float]]]:
    """For ``--autoattack``: per model and norm, the curve whose model and data are reloaded and
    the eps to run; every refusal before any work."""
    plan = []
    for nm, eps_list in eps.items():
        mine = [c for c in curves if c.norm_name == nm]
        if not mine:
            raise ValueError(f"--autoattack {nm}: no curve in {nm} (the curves are in "
                             f"{', '.join(sorted({c.norm_name for c in curves}))})")
        for curve in mine:
            for r in given.get(curve.name, []):
                if r.norm_name == nm and r.eps in eps_list:
                    raise ValueError(f"model {curve.name!r} has a {nm} result at eps "
                                     f"{r.eps:g} given with --autoattack-result and would be "
                                     "run again by --autoattack; drop one")
            _check_reloadable(curve, "--autoattack", "run robcurves.robust_accuracy on its "
                              "points, save it with robcurves.report.save_protocol and pass "
                              "--autoattack-result FILE")
            plan.append((curve.name, curve, eps_list))
    return plan


def _run_protocol(name: str, curve, eps_list: list[float], out: Path,
                  args: argparse.Namespace) -> list:
    """Reload the model and all the points of ``curve``, run the AutoAttack protocol at each
    eps, save each result."""
    from ..protocol import robust_accuracy
    from ..report import save_protocol

    clf, x, y, meta = _reload(name, curve, curve.n, "--autoattack")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"
    results = []
    for e in eps_list:
        r = robust_accuracy(clf, x, y, curve.norm, e, n_queries=args.autoattack_queries or 5000,
                            seed=args.seed)
        r = dataclasses.replace(r, metadata={"model": {
            k: v for k, v in curve.metadata["model"].items() if k in ("spec", "fingerprint")},
            "data": meta})
        path = save_protocol(out / f"autoattack-{slug}-{curve.norm_name}-{e:.6g}.json", name, r)
        print(f"autoattack of {name} ({curve.norm_name}, eps {e:.6g}, {r.n} points, "
              f"{r.seconds:.1f} s): robust accuracy {r.accuracy:.4f}, the curve's "
              f"{curve.robust_accuracy(e):.4f}; saved {path}")
        results.append(r)
    return results


def _check_reloadable(curve, option: str, hint: str) -> None:
    """Refuse a curve that does not name its model and data (so cannot be reloaded)."""
    model_meta = curve.metadata.get("model") or {}
    data_meta = curve.metadata.get("data") or {}
    if not model_meta.get("spec") or not data_meta.get("spec"):
        raise ValueError(f"{option}: the {curve.norm_name} curve of {curve.name!r} does "
                         "not name its model and data (metadata model.spec and data.spec, "
                         f"as `robcurves curve` writes them); {hint}")


def _masking_plan(curves: list, n: int, done: set[str]) -> list[tuple[str, object]]:
    """For ``--masking-check``: per model (not in ``done``), the curve whose model and data are
    reloaded (l2 preferred, else linf); every refusal before any work."""
    plan = []
    for name in dict.fromkeys(c.name for c in curves):
        if name in done:
            raise ValueError(f"model {name!r} has a check given with --masking and would be "
                             "checked again by --masking-check; drop one")
        mine = {c.norm_name: c for c in curves if c.name == name}
        curve = mine.get("l2") or mine.get("linf")
        if curve is None:
            raise ValueError(f"--masking-check: model {name!r} has curves in "
                             f"{sorted(mine)} only; the decision-based attacks work in l2 and "
                             "linf")
        _check_reloadable(curve, "--masking-check", "check it with "
                          "robcurves.diagnostics.gradient_masking and pass --masking FILE")
        plan.append((name, curve))
    return plan


def _reload(name: str, curve, n: int, option: str) -> tuple:
    """The model of ``curve`` (wrapped as the curve was computed), its first ``n`` points, their
    labels and the data metadata; refused when the model or the points are not the curve's."""
    import numpy as np

    from ..evaluate import fingerprint_model
    from ..model import wrap
    from ._common import load_model_spec
    from .curve import _evaluation_data

    model_meta, data_meta = curve.metadata["model"], curve.metadata["data"]
    module = load_model_spec(model_meta["spec"])
    split = None if data_meta.get("split_rule") else data_meta.get("split")
    ds, meta, _ = _evaluation_data(argparse.Namespace(
        data=data_meta["spec"], split=split, n=curve.n,
        allow_train_points=bool(data_meta.get("train_points"))), module)
    if meta.get("points_fingerprint") != data_meta.get("points_fingerprint"):
        raise ValueError(f"{option}: the points of {data_meta['spec']!r} are not those "
                         f"of the {curve.norm_name} curve of {name!r} (fingerprint "
                         f"{meta.get('points_fingerprint')} vs "
                         f"{data_meta.get('points_fingerprint')})")
    bounds = tuple(-math.inf if b is None and i == 0 else math.inf if b is None else float(b)
                   for i, b in enumerate(model_meta.get("bounds") or ds.bounds))
    clf = wrap(module, bounds=bounds, preprocessing=model_meta.get("preprocessing"))
    if fingerprint_model(clf) != (model_meta.get("fingerprint") or ""):
        raise ValueError(f"{option}: {model_meta['spec']!r} is not the model of the "
                         f"curve of {name!r} (its parameters changed since)")
    k = min(n, curve.n)
    x, y = ds.x[:k], ds.y[:k]
    if curve.predictions is not None:
        pred = clf.predict(x).cpu().numpy()
        if not np.array_equal(pred, curve.predictions[:k]):
            raise ValueError(f"{option}: {model_meta['spec']!r} does not predict what "
                             f"the curve of {name!r} records (run with other options, such as "
                             "--channels-last?)")
    return clf, x, y, meta


def _run_masking_check(name: str, curve, n: int, out: Path, args: argparse.Namespace):
    """Reload the model and points of ``curve``, check its first ``n`` points, save the result."""
    from ..diagnostics import gradient_masking
    from ..report import save_masking

    clf, x, y, _ = _reload(name, curve, n, "--masking-check")
    q = args.masking_budget
    options = None if q is None else {a: {"budget": q} for a in ("hsja", "boundary")
                                      if a == "hsja" or curve.norm == 2.0}
    t0 = time.perf_counter()
    res = gradient_masking(clf, x, y, curve.norm, level=args.level,
                           n_boot=min(args.n_boot, 500), seed=args.seed, options=options)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"
    path = save_masking(out / f"masking-{slug}.json", name, res)
    print(f"masking check of {name} ({res.norm_name}, {res.n} points, "
          f"{time.perf_counter() - t0:.1f} s): {'FLAGGED' if res.flagged else 'not flagged'}; "
          f"saved {path}")
    return res

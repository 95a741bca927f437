"""``robcurves compare``: compare saved curves over all eps and write an HTML/markdown report."""

from __future__ import annotations

import argparse
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
    return p


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


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ..report import build_report
    from ._common import load_curves, parse_eps

    eps_max = parse_eps(args.eps_max) if args.eps_max else None
    eps = parse_eps_options(args.eps)
    if not 0 < args.level < 1:
        raise ValueError(f"--level must lie in (0, 1); got {args.level}")
    if args.n_boot < 1:
        raise ValueError(f"--n-boot must be >= 1; got {args.n_boot}")
    curves = load_curves(args.curves)
    rep = build_report(curves, eps=eps, level=args.level,
                       n_boot=args.n_boot, seed=args.seed, intersect=args.intersect,
                       logx=args.logx, eps_max=eps_max)
    paths = rep.write(Path(args.out))
    for line in rep.summary:
        print(f"- {line}")
    n_fig = sum(1 for k in paths if k.endswith(".png"))
    print(f"wrote {paths['html']}, {paths['markdown']} and {n_fig} figures "
          f"(PNG + SVG) in {Path(args.out) / 'figures'}")
    return 0

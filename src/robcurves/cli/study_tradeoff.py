"""``robcurves study tradeoff``: the accuracy/robustness trade-off of Tsipras et al. on their
distribution (:mod:`robcurves.studies.tradeoff`)."""

from __future__ import annotations

import argparse
import time


def add_study(studies) -> argparse.ArgumentParser:
    """Add ``tradeoff`` to the subparsers of ``robcurves study`` (see :mod:`.study`)."""
    t = studies.add_parser(
        "tradeoff", help="accuracy vs robustness on the Tsipras et al. distribution",
        description="Train logistic regression and a small MLP standardly and adversarially "
                    "(l_inf) on the Tsipras et al. distribution for several d, compute exact "
                    "(linear) and attack (MLP) curves with the population curves overlaid, and "
                    "check Theorem 2.1. Finished models and curves in OUT are reused when the "
                    "same command is run again.")
    t.add_argument("--out", required=True, help="output folder (tradeoff.html, tradeoff.md, "
                                                 "figures/, results.json, models/, curves/)")
    t.add_argument("--quick", action="store_true",
                   help="small run: d in 100,400, 3000 training points, 12 epochs, l_inf "
                        "only; images: as without --quick but 300 evaluated images")
    t.add_argument("--dims", default=None,
                   help="comma-separated d values (default 100,400,1000; quick 100,400)")
    t.add_argument("--vision-data", default="mnist",
                   help="image data set for 'what robust models see' (default mnist; found "
                        "via $ROBCURVES_DATA, or a path)")
    t.add_argument("--no-vision", action="store_true",
                   help="leave out the image part (saliency maps, class interpolations)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true", help="print nothing per model")
    t.set_defaults(_study_run=run)
    return t


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..studies.tradeoff import TradeoffConfig
    from ..studies.tradeoff import run as run_study

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    cfg = TradeoffConfig.quick() if args.quick else TradeoffConfig()
    if args.dims:
        try:
            dims = tuple(int(v) for v in args.dims.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"--dims must be comma-separated integers; got "
                             f"{args.dims!r}") from None
        cfg = replace(cfg, dims=dims)
    if args.no_vision:
        cfg = replace(cfg, vision=None)
    elif cfg.vision is not None:
        cfg = replace(cfg, vision=replace(cfg.vision, data=args.vision_data))
    t0 = time.perf_counter()
    res = run_study(args.out, cfg, threads=args.threads, progress=not args.no_progress)
    print(f"Theorem 2.1 holds on every model: {res['theorem_all_ok']}")
    print(f"wrote tradeoff.html and tradeoff.md to {args.out} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0

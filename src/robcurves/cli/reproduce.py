"""``robcurves reproduce --out DIR [--quick]``: the experiment of Risse, Göpfert & Göpfert in
one resumable command (see :mod:`robcurves.studies.reproduce`)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from ..studies.reproduce import FULL, PAPER_METHODS, QUICK

    p = sub.add_parser(
        "reproduce", help="reproduce the paper's tables and figures on the data found here",
        description="Train the paper's model families (small CNN), measure their robustness "
                    "curves and write OUT/reproduce.html and OUT/reproduce.md: Fig. 2 and "
                    "Table 1, Theorems 1-2 and Example 1, Fig. 5 and Table 2, Fig. 7, Figs. 3-4 "
                    "and Fig. 8 (from a checkpoint). Data sets are looked for in "
                    "$ROBCURVES_DATA (or --data-dir); missing ones are skipped and named on the "
                    "page. Rerunning the same command resumes; other settings are refused.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['test_points']} test points, {QUICK['epochs']} epoch(s) on "
                        f"{QUICK['train_points']} training points "
                        f"({QUICK['train_points_color']} on GTSRB and CIFAR-10), fmn distances "
                        f"(full: {FULL['test_points']} points, {FULL['epochs']} epochs on "
                        f"{FULL['train_points']}, auto distances); a smoke run, not the "
                        "paper's setting")
    p.add_argument("--methods", default=",".join(PAPER_METHODS),
                   help="training methods of Fig. 2 / Table 1 (default: the paper's five: "
                        "%(default)s)")
    p.add_argument("--robust-method", default="mmr-at",
                   help="the family of Figs. 3 and 4 (default %(default)s, the paper's MMR+AT)")
    p.add_argument("--points", type=int, default=None, help="test points per curve "
                   "(overrides the setting)")
    p.add_argument("--train-points", type=int, default=None,
                   help="training points per model (overrides the setting)")
    p.add_argument("--train-points-color", type=int, default=None,
                   help="training points per model on the 3x32x32 sets, GTSRB and CIFAR-10 "
                        "(overrides the setting)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (overrides the setting)")
    p.add_argument("--interclass-points", type=int, default=None,
                   help="points per data set for the inter-class distances (overrides the "
                        "setting)")
    p.add_argument("--data-dir", action="append", default=None,
                   help="folder holding the data sets (repeatable; default $ROBCURVES_DATA "
                        "and /usr/share/datasets)")
    p.add_argument("--wrn-checkpoint", default=None,
                   help="a wrn-28-10 CIFAR-10 state dict (RobustBench format) for Fig. 8")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> int:
    from ..studies.reproduce import reproduce

    settings = {}
    for name, key in (("points", "test_points"), ("train_points", "train_points"),
                      ("train_points_color", "train_points_color"),
                      ("epochs", "epochs"), ("interclass_points", "interclass_points")):
        v = getattr(args, name)
        if v is not None:
            if v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1; got {v}")
            settings[key] = v
    res = reproduce(args.out, quick=args.quick,
                    methods=[m for m in args.methods.split(",")],
                    robust_method=args.robust_method, data_dirs=args.data_dir,
                    settings=settings, wrn_checkpoint=args.wrn_checkpoint, seed=args.seed)
    print(f"{len(res['sections'])} sections in {res['seconds']:.0f} s wall, "
          f"{res['cpu_seconds']:.0f} s CPU")
    print("wrote " + ", ".join(str(p) for p in res["paths"]))
    return 0

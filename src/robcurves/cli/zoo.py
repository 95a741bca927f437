"""``robcurves zoo``: train the standard set of models (ST, AT-linf, AT-l2, TRADES, MAX, AVG,
IBP small CNNs) on Fashion-MNIST."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from ..train.zoo import DEFAULT_TRAIN_POINTS, ZOO, ZOO_THREATS

    thr = ", ".join(f"{k} {v:g}" for k, v in ZOO_THREATS.items())
    p = sub.add_parser(
        "zoo", help="train the standard model zoo (ST, AT, TRADES, MAX, AVG, IBP) on Fashion-MNIST",
        description=f"Train the zoo models {', '.join(ZOO)} (small CNNs; threat models {thr}) "
                    "into a folder as <name>.rcm files. Models already there are kept and an "
                    "interrupted model resumes from its last epoch, so rerunning continues.")
    p.add_argument("--data", default="fmnist", help="'fmnist' (found in $ROBCURVES_DATA or "
                   "/usr/share/datasets) or a folder with train and test splits")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--models", default=None, help=f"comma-separated subset of {','.join(ZOO)}")
    p.add_argument("--arch", default="cnn-small")
    p.add_argument("--train-points", type=int, default=DEFAULT_TRAIN_POINTS,
                   help="cap the training points of every model (default "
                        f"{DEFAULT_TRAIN_POINTS}: the whole zoo in about 25 minutes on 2 CPU "
                        "cores, measured; 0 uses all of them, not timed here)")
    p.add_argument("--epochs-scale", type=float, default=1.0,
                   help="multiply every recipe's epochs")
    p.add_argument("--eval-points", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from ..train.zoo import ZOO, train_zoo
    from ._common import positive

    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else None
    unknown = [n for n in names or [] if n not in ZOO]
    if unknown or names == []:
        raise ValueError(f"--models {args.models!r}: unknown {', '.join(unknown) or 'empty'}; "
                         f"expected some of {', '.join(ZOO)}")
    positive(args.epochs_scale, "--epochs-scale")
    positive(args.eval_points, "--eval-points")
    positive(args.train_points, "--train-points", allow_zero=True)
    files = train_zoo(args.data, args.out, names=names, arch=args.arch,
                      train_points=args.train_points or None, epochs_scale=args.epochs_scale,
                      eval_points=args.eval_points, seed=args.seed, device=args.device,
                      progress=not args.no_progress)
    for name, path in files.items():
        print(f"{name}\t{path}")
    return 0

"""``robcurves study NAME``: the classic studies around robustness, one subcommand each.

A study module adds itself to ``STUDIES`` with a function ``add_parser(subparsers)`` that
returns its parser (with ``_study_run`` set as default); ``scaling`` is the first.
"""

from __future__ import annotations

import argparse


def _add_scaling(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "scaling", help="scaling laws of robustness in model size N and data size D",
        description="Train a grid of widths x training-set sizes with adversarial training, "
                    "measure per run the robust loss on PGD-CW examples and the robustness "
                    "curve of held-out test points, and fit L(N, D) = E + A/N^alpha + B/D^beta "
                    "(Bartoldson et al. 2024) with bootstrap intervals, a held-out check, the "
                    "compute envelope and the compute-optimal N*, D*. Writes runs, plots, "
                    "scaling.html and scaling.md to --out; rerunning resumes run by run.")
    p.add_argument("--data", required=True, help="a data set with train/test splits ('fmnist', "
                   "'mnist' or an IDX folder) or one set that is split ('digits')")
    p.add_argument("--method", default="pgd-at", choices=["pgd-at", "trades"])
    p.add_argument("--norm", default="inf", help="threat model norm: inf, 2, 1 (default inf)")
    p.add_argument("--eps", default="0.1", help="threat model radius, e.g. 0.1 or 8/255")
    p.add_argument("--widths", default=None, help="width multipliers of cnn-wide (default "
                   "1,2,4,8; with --quick 0.25,0.5,1,2)")
    p.add_argument("--train-sizes", default="2500,5000,10000,20000",
                   help="training-set sizes D (nested subsets of the training split)")
    p.add_argument("--label-noise", default="0", help="label-noise rates, e.g. 0,0.2: adds the "
                   "data-quality term (quality = 1 - rate) to the fit")
    p.add_argument("--arch", default="cnn-wide", choices=["cnn-wide"],
                   help="architecture scaled by --widths")
    p.add_argument("--auc-eps-max", default=None, help="AUC over [0, this] (default 2 * eps)")
    p.add_argument("--epochs", type=int, default=None, help="override the setting's epochs")
    p.add_argument("--test-points", type=int, default=None,
                   help="override the setting's number of test points")
    p.add_argument("--quick", action="store_true", help="2 epochs, 2 attack steps in training, "
                   "200 test points, fmn distances, widths 0.25,0.5,1,2 unless --widths is "
                   "given (the full setting: 10 epochs, 10 steps, 1000 test points, auto "
                   "distances, widths 1,2,4,8)")
    p.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples of the runs")
    p.add_argument("--held-out", type=int, default=2,
                   help="largest runs (by N x D) held out of the fit and predicted")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(_study_run=_run_scaling)
    return p


#: default width multipliers of ``study scaling`` with and without ``--quick``
QUICK_WIDTHS, FULL_WIDTHS = "0.25,0.5,1,2", "1,2,4,8"


def _run_scaling(args: argparse.Namespace) -> int:
    from ..studies import scaling
    from ._common import parse_eps

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1; got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    settings = {k: v for k, v in (("epochs", args.epochs), ("test_points", args.test_points))
                if v is not None}
    rows = scaling.sweep(
        args.data, args.out, method=args.method, norm=args.norm, eps=parse_eps(args.eps),
        widths=args.widths or (QUICK_WIDTHS if args.quick else FULL_WIDTHS),
        train_sizes=args.train_sizes, label_noise=args.label_noise,
        arch=args.arch, quick=args.quick, settings=settings,
        auc_eps_max=parse_eps(args.auc_eps_max) if args.auc_eps_max else None,
        seed=args.seed, progress=not args.no_progress)
    result = scaling.analyze(rows, bootstrap_replicates=args.bootstrap, held_out_runs=args.held_out,
                             seed=args.seed)
    paths = scaling.write_report(result, rows, args.out)
    print(result["summary"])
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


#: study name -> function adding its subparser
def _add_tradeoff(sub) -> argparse.ArgumentParser:
    from .study_tradeoff import add_study

    return add_study(sub)


def _add_multi(sub) -> argparse.ArgumentParser:
    from .study_multi import add_study

    return add_study(sub)


STUDIES = {"scaling": _add_scaling, "tradeoff": _add_tradeoff, "multi-perturbation": _add_multi}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("study", help="run a study (scaling laws of robustness, ...)",
                       description="Run one of the classic studies around robustness; each "
                                   "writes its runs, plots and a page to --out.")
    studies = p.add_subparsers(dest="study", metavar="STUDY")
    for add in STUDIES.values():
        add(studies)
    return p


def run(args: argparse.Namespace) -> int:
    fn = getattr(args, "_study_run", None)
    if fn is None:
        raise ValueError(f"robcurves study needs a study name: {', '.join(STUDIES)}")
    return int(fn(args) or 0)

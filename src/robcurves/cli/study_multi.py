"""``robcurves study multi-perturbation``: ST, AT (l_inf, l2, l1), MAX and AVG models against
several perturbation types at once (:mod:`robcurves.studies.multi`)."""

from __future__ import annotations

import argparse
import time


def add_study(studies) -> argparse.ArgumentParser:
    """Add ``multi-perturbation`` to the subparsers of ``robcurves study`` (see :mod:`.study`)."""
    t = studies.add_parser(
        "multi-perturbation", help="robustness to several perturbation types (Tramer & Boneh)",
        description="Train (or take with --models) ST, AT-linf, AT-l2, AT-l1, MAX and AVG "
                    "small CNNs; evaluate per-norm curves, the union curve, the spatial curve, "
                    "optionally the affine curve, and the gradient-masking check; write "
                    "multi.html, multi.md and results.json with the paper's table (accuracy per "
                    "threat at eps_inf 0.1, eps_2 1, eps_1 5, and union accuracy). Rerunning "
                    "the same command resumes; a folder written with other settings is "
                    "refused.")
    t.add_argument("--data", default="fmnist", help="a source with train and test splits "
                   "(default fmnist, found via $ROBCURVES_DATA)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--quick", action="store_true",
                   help="10,000 training points, 2 epochs of 5-step PGD, 200 test points, FMN "
                        "distances, masking on 20 points (full: all 60,000, 5 epochs of "
                        "10 steps, 1,000 points, auto distances, masking on 100)")
    t.add_argument("--models", default=None, metavar="NAME=FILE,...",
                   help="use these model files instead of training (names: st, at-linf, at-l2, "
                        "at-l1, max, avg)")
    t.add_argument("--eps", default=None, metavar="linf:E,l2:E,l1:E",
                   help="the table's radii, also the training eps and the union's threat "
                        "vector (default linf:0.1,l2:1,l1:5, for Fashion-MNIST)")
    t.add_argument("--epochs", type=int, default=None, help="override the setting's epochs")
    t.add_argument("--train-points", type=int, default=None,
                   help="override the setting's training points")
    t.add_argument("--test-points", type=int, default=None,
                   help="override the setting's evaluated test points")
    t.add_argument("--attack", default=None, help="minimal-norm attack of the l_p curves "
                   "(default auto; fmn with --quick)")
    t.add_argument("--affine", action="store_true",
                   help="add the affine threat (on --affine-points points)")
    t.add_argument("--affine-points", type=int, default=None)
    t.add_argument("--masking-points", type=int, default=None,
                   help="points of the gradient-masking check (0: no check)")
    t.add_argument("--masking-norms", default="linf,l2",
                   help="norms of the masking check (linf, l2)")
    t.add_argument("--masking-budget", type=int, default=None,
                   help="label queries per point of the decision-based attacks")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true", help="print no training bars")
    t.set_defaults(_study_run=run)
    return t


def parse_models(text: str | None) -> dict[str, str]:
    """``"st=a.rcm,max=b.rcm"`` -> ``{"st": "a.rcm", "max": "b.rcm"}``."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, eq, file = (s.strip() for s in item.partition("="))
        if not eq or not name or not file:
            raise ValueError(f"--models takes NAME=FILE pairs separated by commas; got "
                             f"{item.strip()!r}")
        if name in out:
            raise ValueError(f"--models names {name!r} twice")
        out[name] = file
    return out


def parse_radii(text: str) -> dict[str, float]:
    """``"linf:0.1,l2:1,l1:5"`` -> ``{"linf": 0.1, "l2": 1.0, "l1": 5.0}`` (names as
    :func:`robcurves.train.parse_threats` reads them; ``8/255`` allowed)."""
    from ..train import parse_threats
    from ._common import parse_eps

    items = [i.strip() for i in text.split(",") if i.strip()]
    try:
        spelled = [f"{i.split(':', 1)[0]}:{parse_eps(i.split(':', 1)[1])!r}" for i in items]
    except (IndexError, ValueError):
        raise ValueError(f"--eps takes norm:radius pairs such as linf:0.1,l2:1,l1:5; got "
                         f"{text!r}") from None
    out = {t.norm_name: t.eps for t in parse_threats(",".join(spelled))}
    if len(out) != len(items):
        raise ValueError(f"--eps names a norm twice: {text!r}")
    return out


def run(args: argparse.Namespace) -> int:
    from ..studies.multi import MODELS, MultiConfig
    from ..studies.multi import run as run_study

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    models = parse_models(args.models)
    trained = [m for m in MODELS if m not in models]
    for flag, value in (("--epochs", args.epochs), ("--train-points", args.train_points)):
        if value is not None and not trained:
            raise ValueError(f"{flag} sets training, but --models gives every model; nothing "
                             "is trained")
    eps = parse_radii(args.eps) if args.eps is not None else None
    changes = {k: v for k, v in (("eps", eps),
        ("data", args.data), ("epochs", args.epochs), ("train_points", args.train_points),
        ("test_points", args.test_points), ("attack", args.attack),
        ("affine", args.affine or None), ("affine_points", args.affine_points),
        ("masking_points", args.masking_points), ("masking_budget", args.masking_budget),
        ("seed", args.seed)) if v is not None}
    changes["masking_norms"] = tuple(n.strip() for n in args.masking_norms.split(",")
                                     if n.strip())
    if args.quick:
        cfg = MultiConfig.quick(**changes)
    else:
        cfg = MultiConfig(**changes)
    t0 = time.perf_counter()
    res = run_study(args.out, cfg, models=models, progress=not args.no_progress)
    f = res["findings"]
    for r in res["table"]:
        print(f"{r['model']:8s} clean {r['clean']:.3f}  " + "  ".join(
            f"{k} {r[k]:.3f}" for k in ("linf", "l2", "l1", "union", "spatial")))
    print(f"best union accuracy: {', '.join(f['best_union']['models'])}; masking flagged: "
          f"{', '.join(f['masking_flagged']) or 'none'}")
    print(f"wrote multi.html, multi.md and results.json to {args.out} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0

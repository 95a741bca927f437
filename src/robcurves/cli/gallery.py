"""``robcurves gallery``: minimal adversarial examples of a model, drawn as a picture."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import load_model_spec, parse_norms


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "gallery", help="draw minimal adversarial examples of a model",
        description="Attack the first --pool points and draw --n of them (evenly spaced ranks "
                    "of the minimal distance d*): clean image, perturbation scaled to be "
                    "visible, adversarial; d* and both predicted labels.")
    p.add_argument("--model", required=True, help="model file or package.module:factory (as "
                   "for `robcurves curve`)")
    p.add_argument("--data", required=True, help="data set name (e.g. digits) or path")
    p.add_argument("--norm", default="inf", help="one norm: inf, 2 or 1 (default inf)")
    p.add_argument("--n", type=int, default=8, help="points shown (default 8)")
    p.add_argument("--pool", type=int, default=64,
                   help="first points attacked, from which the shown ones are picked "
                        "(default 64)")
    p.add_argument("--attack", default="auto", help="attack name (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="gallery.png", help="image file (.png, .svg, .pdf)")
    return p


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .. import data as rdata
    from ..report.gallery import save_gallery

    norms = parse_norms(args.norm)
    if len(norms) != 1:
        raise ValueError(f"--norm takes one norm; got {args.norm!r}")
    if args.n < 1 or args.pool < 1:
        raise ValueError(f"--n and --pool must be >= 1; got {args.n} and {args.pool}")
    ds = rdata.load(args.data)
    model = load_model_spec(args.model)
    k = min(args.pool, ds.n)
    out = save_gallery(Path(args.out), model, ds.x[:k], ds.y[:k], norms[0], n=args.n,
                       classes=ds.classes, attack=args.attack, seed=args.seed)
    print(f"wrote {out}")
    return 0

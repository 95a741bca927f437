"""``robcurves plot``: draw saved curve files together."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import load_curves, parse_eps_list, positive


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("plot", help="plot saved curve files together",
                       description="Overlay saved robustness curves (one panel per norm).")
    p.add_argument("curves", nargs="+", help="curve JSON files written by `robcurves curve`")
    p.add_argument("--out", default="curves.png", help="image file (.png, .svg, .pdf)")
    p.add_argument("--eps", default=None, help="dashed eps markers, e.g. 4/255,8/255")
    p.add_argument("--eps-max", type=float, default=None, help="right end of the eps axis")
    p.add_argument("--accuracy", action="store_true", help="plot robust accuracy, not error")
    p.add_argument("--logx", action="store_true", help="logarithmic eps axis")
    return p


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = parse_eps_list(args.eps) if args.eps else []
    positive(args.eps_max, "--eps-max")
    if Path(args.out).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"--out {args.out!r} must end in .png, .svg or .pdf")
    curves = load_curves(args.curves)
    # linf, l2, l1, then threat labels (union, spatial curves)
    norms = sorted({c.norm for c in curves},
                   key=lambda p: (isinstance(p, str), -p if isinstance(p, float) else 0, str(p)))
    fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 3.8), squeeze=False)
    for ax, p in zip(axes[0], norms, strict=True):
        group = [c for c in curves if c.norm == p]
        eps_max = args.eps_max
        for c in group:
            c.plot(ax=ax, eps_max=eps_max, accuracy=args.accuracy,
                   label=f"{c.name} (n={c.n})")
        for e in markers:
            ax.axvline(e, color="0.5", linestyle="--", linewidth=0.8)
        if args.logx:
            ax.set_xscale("symlog", linthresh=_linthresh(group))
        ax.set_title(f"{group[0].norm_name}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    print(f"wrote {out}")
    return 0


def _linthresh(curves) -> float:
    import numpy as np

    pos = np.concatenate([c.distances[(c.distances > 0) & np.isfinite(c.distances)]
                          for c in curves])
    return float(pos.min()) if pos.size else 1e-3

"""Figures and pages of the tradeoff study (``tradeoff.html``, ``tradeoff.md``, figures/)."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["write_page"]


def _figures(out: Path, cfg, results) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..curve import RobustnessCurve
    from ..population import plot_curves, tsipras_classifiers, tsipras_linear_curve

    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    figs = []
    for d in cfg.dims:
        eta = 3 / math.sqrt(d)
        pops = [tsipras_linear_curve(w, 0.0, "linf", p=cfg.p, eta=eta, name=f"population: {k}")
                for k, w in tsipras_classifiers(d, cfg.p).items()]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for ax, arch in zip(axes, ("logreg", "mlp"), strict=True):
            curves = [RobustnessCurve.load(out / r.curves["linf"]) for r in results
                      if r.d == d and r.arch == arch]
            plot_curves([*curves, *pops], ax=ax, eps_max=4 * eta, accuracy=True,
                        title=f"{arch}, d={d}: l_inf robust accuracy")
            ax.axvline(2 * eta, color="0.4", linewidth=0.8, linestyle=":")
        fig.tight_layout()
        name = f"curves-d{d}.png"
        fig.savefig(figdir / name, dpi=110)
        plt.close(fig)
        figs.append({"file": f"figures/{name}",
                     "caption": f"d={d}: held-out l_inf robust accuracy of every trained model "
                                f"(steps; logreg exact, MLP attack upper bounds on the "
                                f"distances) and exact population curves of the paper's "
                                f"classifiers (dashed). Dotted: eps = 2 eta = {2 * eta:.3g}."})
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for d in cfg.dims:
        for arch, mark in (("logreg", "o-"), ("mlp", "s--")):
            rs = sorted((r for r in results if r.d == d and r.arch == arch),
                        key=lambda r: r.eps_fraction)
            ax.plot([r.eps_fraction for r in rs], [r.clean_acc for r in rs], mark,
                    label=f"{arch}, d={d}")
    ax.set_xlabel("training eps / eta (l_inf)")
    ax.set_ylabel("clean accuracy (held out)")
    ax.axhline(cfg.p, color="0.5", linestyle=":", linewidth=0.8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figdir / "clean-vs-eps.png", dpi=110)
    plt.close(fig)
    figs.append({"file": "figures/clean-vs-eps.png",
                 "caption": f"Clean accuracy against training eps. Dotted: p = {cfg.p}, the "
                            "accuracy of the robust classifier e_1."})
    return figs


def write_page(out: Path, cfg, results, summary: dict) -> None:
    from ..report.render import render

    figs = _figures(out, cfg, results)
    ctx = {"cfg": cfg, "results": sorted(results, key=lambda r: (r.d, r.arch, r.eps_fraction)),
           "summary": summary, "figures": figs, "ratio": cfg.p / (1 - cfg.p)}
    (out / "tradeoff.html").write_text(render("tradeoff.html.j2", **ctx))
    (out / "tradeoff.md").write_text(render("tradeoff.md.j2", **ctx))

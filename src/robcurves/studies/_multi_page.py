"""Figures and pages of the multi-perturbation study (``multi.html``, ``multi.md``,
``figures/``), rendered with the shared templates of :mod:`robcurves.report.render`."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_page"]

_TITLES = {"linf": "l_inf", "l2": "l2", "l1": "l1"}


def _columns(cfg) -> list[tuple[str, str]]:
    """(row key, heading) of the table's accuracy columns."""
    cols = [("clean", "clean")]
    cols += [(nm, f"{_TITLES[nm]} @ {cfg.eps[nm]:g}") for nm in ("linf", "l2", "l1")]
    cols += [("union", "union (all l_p)"), ("spatial", "RT (30°, 3 px)"),
             ("linf_spatial", "l_inf ∪ RT")]
    if cfg.affine:
        cols += [("affine_union_same_points", f"union (first {cfg.affine_points})"),
                 ("affine", f"affine (first {cfg.affine_points})")]
    return cols


def _table(summary: dict, cfg) -> dict:
    cols = _columns(cfg)
    rows = summary["table"]
    best = {k: max(r[k] for r in rows if k in r) for k, _ in cols
            if any(k in r for r in rows)}
    body = []
    for r in rows:
        cells = [{"text": f"{100 * r[k]:.1f}" if k in r else "", "best": k in r
                  and r[k] == best[k]} for k, _ in cols]
        flags = ", ".join(nm for nm, f in r["masking"].items() if f) or \
            ("none" if r["masking"] else "not checked")
        body.append({"model": r["model"], "source": r["source"] if isinstance(r["source"], str)
                     else Path(r["source"]["file"]).name, "cells": cells, "masking": flags})
    return {"head": [h for _, h in cols], "rows": body}


def _figures(out: Path, cfg, summary: dict) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..curve import RobustnessCurve

    results = summary["results"]
    panels = [(f"norm-{nm}", f"{_TITLES[nm]} robust accuracy", f"eps ({_TITLES[nm]})",
               cfg.eps[nm]) for nm in ("linf", "l2", "l1")]
    panels += [("union", "union of the three balls", "t (ball radii t * eps)", 1.0),
               ("spatial", "rotation-translation", "r (1 = 30°, 3 px)", 1.0)]
    if cfg.affine:
        panels.append(("affine", f"affine (first {cfg.affine_points} points)",
                       "t (affine threat, radii t * eps)", 1.0))
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (part, title, xlabel, mark) in zip(axes.ravel(), panels, strict=False):
        for i, (name, res) in enumerate(results.items()):
            info = res["parts"].get(part)
            if not info:
                continue
            c = RobustnessCurve.load(out / info["curve"])
            c.plot(ax=ax, label=name, eps_max=3 * mark, accuracy=True, color=f"C{i}")
        ax.axvline(mark, color="0.4", linestyle=":", linewidth=0.9)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "figures" / "curves.png", dpi=100)
    plt.close(fig)
    return [{"file": "figures/curves.png",
             "caption": "Robust accuracy against perturbation size per model (attack distances: "
                        "upper bounds on the true accuracy). Dotted: the table's radius (t = 1 "
                        "for the union and affine threats, r = 1 for rotation-translation)."}]


def write_page(out: Path, cfg, summary: dict) -> None:
    """Write ``figures/curves.png``, ``multi.html`` and ``multi.md`` into ``out``."""
    from ..report.render import render

    ctx = {"cfg": cfg, "s": summary, "table": _table(summary, cfg),
           "figures": _figures(out, cfg, summary), "f": summary["findings"],
           "masking": [(name, nm, res["parts"][f"masking-{nm}"])
                       for name, res in summary["results"].items() for nm in cfg.masking_norms
                       if f"masking-{nm}" in res["parts"]]}
    (out / "multi.html").write_text(render("multi.html.j2", **ctx))
    (out / "multi.md").write_text(render("multi.md.j2", **ctx))

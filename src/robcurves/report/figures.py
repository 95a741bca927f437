"""The report's figures: robustness curves per norm, pairwise differences, cross-norm transfer,
and the figure of each human study (:meth:`robcurves.studies.human.HumanStudy.figure`).

Each function takes the computed :class:`~robcurves.report.Report` and returns a matplotlib
``Figure`` (not attached to pyplot, so nothing is shown and nothing leaks between calls).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._norms import file_stem
from ..comparison import Comparison
from ..curve import RobustnessCurve

if TYPE_CHECKING:
    from .build import Report

_NORM_TEX = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$"}

# Resolution the PNGs are saved at; the page shows them at 96 px per inch.
PNG_DPI = 150


def figures(report: Report) -> dict[str, object]:
    """Matplotlib figures by file stem: ``curves`` (one panel per norm), ``diff_<norm>``
    (differences of each pair with the simultaneous band), ``transfer`` (cross-norm)."""
    figs = {"curves": _curves_figure(report)}
    for nm, cmp in report.comparisons.items():
        figs[f"diff_{file_stem(nm)}"] = _diff_figure(report, nm, cmp)
    if report.scale_fits:
        figs["transfer"] = _transfer_figure(report)
    for i, st in enumerate(report.human):
        figs[f"human_{i}"] = st.figure()  # the human-study page's own figure
    return figs


def png_bytes(fig) -> bytes:
    """The figure as PNG at :data:`PNG_DPI`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI)
    return buf.getvalue()


def png_width(data: bytes) -> int:
    """Pixel width from a PNG header."""
    return int.from_bytes(data[16:20], "big")


def alt_text(stem: str) -> str:
    """What the figure ``stem`` shows, for the page's alt text and caption."""
    if stem.startswith("human_"):
        return ("attack curve and human-validated curve (left); share of adversarials people "
                "still see as their class, per eps (right)")
    return {"curves": "robustness curves per norm with DKW bands",
            "transfer": "curves across norms after rescaling"}.get(
                stem, f"differences between models, {stem[5:]}")


def _colors(names: Sequence[str]) -> dict[str, object]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _axis(report: Report, nm: str) -> tuple[float, str]:
    """Scale applied to eps on the x axis and its label."""
    if report.per255(nm):
        return 255.0, f"perturbation size ε ({_NORM_TEX[nm]}, in units of 1/255)"
    if nm not in _NORM_TEX:  # a threat label: t is a multiple of the threat's radii
        return 1.0, f"threat size t ({nm})"
    return 1.0, f"perturbation size ε ({_NORM_TEX[nm]} distance in input space)"


def _x_range(curves: Sequence[RobustnessCurve], markers: Sequence[float]) -> tuple[float, float]:
    fin = np.concatenate([c.distances[np.isfinite(c.distances)] for c in curves])
    pos = fin[fin > 0]
    hi = float(np.quantile(fin, 0.995)) * 1.1 if fin.size else 1.0
    if markers:
        hi = max(hi, 1.1 * max(markers))
    hi = hi if hi > 0 else 1.0
    lo = float(pos.min()) * 0.8 if pos.size else hi * 1e-3
    return lo, hi


def _curves_figure(report: Report):
    from matplotlib.figure import Figure

    norms = report.norms()
    names = list(dict.fromkeys(c.name for nm in norms for c in report.curves[nm]))
    col = _colors(names)
    fig = Figure(figsize=(5.2 * len(norms), 4.0), layout=None)
    axes = np.atleast_1d(fig.subplots(1, len(norms), squeeze=False)[0])
    for ax, nm in zip(axes, norms, strict=True):
        cs = report.curves[nm]
        scale, xlabel = _axis(report, nm)
        lo, hi = _x_range(cs, report.eps.get(nm, ()))
        h = report.comparisons[nm].dkw if nm in report.comparisons else None
        for c in cs:
            eps, err = c.steps(hi)
            x = eps * scale
            if report.logx:
                x = np.maximum(x, lo * scale)
            ax.step(x, err, where="post", color=col[c.name], lw=1.6,
                    label=f"{c.name} ({c.kind}, n={c.n})")
            if h is not None:
                ax.fill_between(x, np.clip(err - h, 0, 1), np.clip(err + h, 0, 1), step="post",
                                color=col[c.name], alpha=0.15, lw=0)
        for e in report.eps.get(nm, ()):
            ax.axvline(e * scale, color="0.35", ls="--", lw=0.9)
            ax.text(e * scale, 1.0, " " + report.fmt(nm, e), rotation=90, va="top", ha="left",
                    fontsize=7.5, color="0.3")
        if nm in report.comparisons:
            for cr in report.comparisons[nm].crossings:
                if cr.significant and cr.eps <= hi:
                    y = float(report.comparisons[nm].curves[0].robust_error(cr.eps))
                    ys = [float(c.robust_error(cr.eps)) for c in cs
                          if c.name in (cr.better_before, cr.better_after)]
                    y = float(np.mean(ys)) if ys else y
                    ax.plot([cr.eps * scale], [y], marker="o", ms=7, mfc="none", mec="k",
                            mew=1.2, ls="none")
        for k in report.kinks:
            if k.detected and any(c.name == k.model for c in cs) and k.norm_name == nm:
                c = next(c for c in cs if c.name == k.model)
                ax.annotate("kink", (k.location * scale, float(c.robust_error(k.location))),
                            xytext=(-30, 18), textcoords="offset points", fontsize=8,
                            arrowprops={"arrowstyle": "->", "lw": 0.8})
        if report.logx:
            ax.set_xscale("log")
            ax.set_xlim(lo * scale, hi * scale)
        else:
            ax.set_xlim(0, hi * scale)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("robust error  (1 − robust accuracy)")
        lvl = f"{100 * report.level:g}%"
        ax.set_title(f"{_NORM_TEX.get(nm, nm)} robustness curves" +
                     (f" (bands: {lvl} DKW)" if h is not None else ""), fontsize=10)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    return fig


def _diff_figure(report: Report, nm: str, cmp: Comparison):
    from matplotlib.figure import Figure

    pairs = list(cmp.pairs)[:6]
    ncol = min(3, len(pairs))
    nrow = math.ceil(len(pairs) / ncol)
    fig = Figure(figsize=(4.6 * ncol, 3.3 * nrow), layout=None)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False).ravel())
    scale, xlabel = _axis(report, nm)
    lo, hi = _x_range(cmp.curves, report.eps.get(nm, ()))
    by = {c.name: c for c in cmp.curves}
    for ax, p in zip(axes, pairs, strict=False):
        a, b = by[p.a], by[p.b]
        knots = np.unique(np.concatenate([[0.0, hi], a.distances, b.distances]))
        knots = knots[np.isfinite(knots) & (knots <= hi)]
        d = np.asarray(a.robust_error(knots)) - np.asarray(b.robust_error(knots))
        x = knots * scale
        if report.logx:
            x = np.maximum(x, lo * scale)
        ax.fill_between(x, d - p.band, d + p.band, step="post", color="tab:blue", alpha=0.18,
                        lw=0, label=f"simultaneous {100 * cmp.level:g}% band")
        ax.step(x, d, where="post", color="tab:blue", lw=1.4, label=f"R({p.a}) − R({p.b})")
        ax.axhline(0, color="k", lw=0.8)
        for e in report.eps.get(nm, ()):
            ax.axvline(e * scale, color="0.35", ls="--", lw=0.8)
        if report.logx:
            ax.set_xscale("log")
            ax.set_xlim(lo * scale, hi * scale)
        else:
            ax.set_xlim(0, hi * scale)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("difference of robust error", fontsize=8)
        ax.set_title(f"{p.a} vs {p.b}: below 0 → {p.a} better", fontsize=9)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _transfer_figure(report: Report):
    from matplotlib.figure import Figure

    fits = list(report.scale_fits)
    names = list(dict.fromkeys(f.model for f in fits))
    col = _colors(names)
    pairs = list(dict.fromkeys((f.norm_from, f.norm_to) for f in fits))
    fig = Figure(figsize=(5.0 * len(pairs), 3.8), layout=None)
    axes = np.atleast_1d(fig.subplots(1, len(pairs), squeeze=False)[0])
    for ax, (na, nb) in zip(axes, pairs, strict=True):
        scale, xlabel = _axis(report, na)
        cur = {nm: {c.name: c for c in report.curves[nm]} for nm in (na, nb)}
        allc = [cur[na][f.model] for f in fits if (f.norm_from, f.norm_to) == (na, nb)]
        _, hi = _x_range(allc, ())
        for f in fits:
            if (f.norm_from, f.norm_to) != (na, nb):
                continue
            ca, cb = cur[na][f.model], cur[nb][f.model]
            eps, err = ca.steps(hi)
            ax.step(eps * scale, err, where="post", color=col[f.model], lw=1.6,
                    label=f"{f.model}: {_NORM_TEX[na]}")
            eps_b = eps * f.factor
            ax.step(eps * scale, np.asarray(cb.robust_error(eps_b)), where="post",
                    color=col[f.model], lw=1.2, ls=":",
                    label=f"{f.model}: {_NORM_TEX[nb]} at s·ε, s={f.factor:.3g}")
        ax.set_xlim(0, hi * scale)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("robust error")
        ax.set_title(f"{_NORM_TEX[nb]} curves rescaled onto {_NORM_TEX[na]}", fontsize=10)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    return fig


"""The comparison report: figures, tables and a plain-language summary, as HTML and markdown.

:func:`build_report` groups curves by norm, compares the models of each norm
(:func:`robcurves.comparison.compare`), runs the threat-model diagnostics, and returns a
:class:`Report`; :meth:`Report.write` puts ``report.html`` (self-contained: figures embedded as
base64 PNG), ``report.md`` and ``figures/*.png|svg`` in a folder.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._norms import norm_name, parse_norm
from .comparison import Comparison, PointwiseTable, compare
from .curve import RobustnessCurve
from .diagnostics import (
    Kink,
    RankAgreement,
    ScaleFit,
    detect_kink,
    fit_scale,
    rank_agreement,
    train_eps_of,
)

__all__ = ["Report", "build_report", "write_report", "format_eps", "is_8bit"]

_NORM_ORDER = ("linf", "l2", "l1")
_NORM_TEX = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$"}
_NORM_TXT = {"linf": "l∞", "l2": "l2", "l1": "l1"}


# ---------------------------------------------------------------------------- formatting
def is_8bit(curves: Sequence[RobustnessCurve]) -> bool:
    """All curves come from 8-bit image data (``metadata["data"]["bit_depth"] == 8``)."""
    return bool(curves) and all(
        (c.metadata.get("data") or {}).get("bit_depth") == 8 for c in curves)


def format_eps(eps: float, per255: bool = False, digits: int = 3) -> str:
    """``8/255`` style for 8-bit l_inf data, else ``digits`` significant digits; ``∞``."""
    if math.isinf(eps):
        return "∞"
    if eps == 0:
        return "0"
    if per255:
        x = eps * 255
        return f"{x:.0f}/255" if abs(x - round(x)) < 1e-6 else f"{x:.{digits}g}/255"
    return f"{eps:.{digits}g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:.1f} pts"


# ---------------------------------------------------------------------------- report object
@dataclass(frozen=True)
class Report:
    """Everything a comparison report shows, computed once.

    Attributes:
        comparisons: one :class:`Comparison` per norm name (norms with a single model are
            left out of comparisons but still drawn).
        curves: all curves by norm name.
        tables: point-wise tables per norm name, at ``eps[norm]``.
        eps: the eps of the tables and dashed markers, per norm name.
        kinks: kink diagnostics of every curve whose metadata carries a training eps.
        scale_fits: cross-norm scale factors for models with curves in several norms.
        rank_agreements: ranking agreement between norms (when two or more models have curves
            in two or more norms).
        summary: plain-language findings, most important first.
        level, logx: confidence level; logarithmic eps axes in the figures.
    """

    comparisons: dict[str, Comparison]
    curves: dict[str, tuple[RobustnessCurve, ...]]
    tables: dict[str, PointwiseTable]
    eps: dict[str, tuple[float, ...]]
    kinks: tuple[Kink, ...]
    scale_fits: tuple[ScaleFit, ...]
    rank_agreements: tuple[RankAgreement, ...]
    summary: tuple[str, ...]
    level: float
    logx: bool

    def per255(self, norm: str) -> bool:
        """Eps of this norm are printed as x/255 (8-bit data, l_inf)."""
        return norm == "linf" and is_8bit(self.curves[norm])

    def fmt(self, norm: str, eps: float, digits: int = 3) -> str:
        return format_eps(eps, self.per255(norm), digits)

    def fmt_range(self, norm: str, lo: float, hi: float, sep: str = " – ") -> str:
        """Two eps with just enough digits to tell them apart."""
        for digits in range(3, 12):
            a, b = self.fmt(norm, lo, digits), self.fmt(norm, hi, digits)
            if a != b or lo == hi:
                return a if lo == hi else f"{a}{sep}{b}"
        return f"{a}{sep}{b}"

    # ------------------------------------------------------------------ figures
    def figures(self) -> dict[str, object]:
        """Matplotlib figures by file stem: ``curves`` (one panel per norm), ``diff_<norm>``
        (differences of each pair with the simultaneous band), ``transfer`` (cross-norm)."""
        figs = {"curves": _curves_figure(self)}
        for nm, cmp in self.comparisons.items():
            figs[f"diff_{nm}"] = _diff_figure(self, nm, cmp)
        if self.scale_fits:
            figs["transfer"] = _transfer_figure(self)
        return figs

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.html``, ``report.md`` and ``figures/`` into ``out_dir``."""
        out = Path(out_dir)
        (out / "figures").mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        png: dict[str, bytes] = {}
        for stem, fig in self.figures().items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=150)
            png[stem] = buf.getvalue()
            (out / "figures" / f"{stem}.png").write_bytes(png[stem])
            fig.savefig(out / "figures" / f"{stem}.svg", format="svg")
            paths[f"{stem}.png"] = out / "figures" / f"{stem}.png"
        (out / "report.html").write_text(self.to_html(png), encoding="utf-8")
        (out / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        paths["html"] = out / "report.html"
        paths["markdown"] = out / "report.md"
        return paths

    # ------------------------------------------------------------------ tables as rows
    def _sections(self) -> list[tuple[str, str, list[str], list[list[str]], str]]:
        """(section title, anchor, header, rows, caption) of every table, in page order."""
        secs = []
        lvl = f"{100 * self.level:g}%"
        for nm in self._norms():
            cs = self.curves[nm]
            cmp = self.comparisons.get(nm)
            t = _NORM_TXT[nm]
            if cmp is not None:
                rows = [[s.name, str(s.n), s.kind, _pct(s.clean_error), f"{s.auc_normalized:.3f}",
                         self.fmt(nm, s.median_distance), self.fmt(nm, s.eps_50),
                         self.fmt(nm, s.eps_90), str(s.n_unbroken)] for s in cmp.summaries]
                cap = (f"Area under the robust-error curve on [0, {self.fmt(nm, cmp.eps_max)}], "
                       f"divided by its length (lower is more robust). DKW band half-width "
                       f"±{_pts(cmp.dkw)} at {lvl}.")
            else:
                rows = [[c.name, str(c.n), c.kind, _pct(c.clean_error), "–",
                         self.fmt(nm, c.median_distance), self.fmt(nm, c.eps_at_error(0.5)),
                         self.fmt(nm, c.eps_at_error(0.9)), str(c.n_unbroken)] for c in cs]
                cap = "Only one model for this norm: nothing to compare."
            secs.append((f"{t}: global summaries", f"summary-{nm}",
                         ["model", "n", "bound", "clean error", "AUC (norm.)", "median dist.",
                          "eps @ 50%", "eps @ 90%", "unbroken"], rows, cap))
            if cmp is None:
                continue
            tab = self.tables[nm]
            head = ["eps"] + [f"{m}" for m in tab.models] + ["ranking", "single threshold"]
            rows = []
            for r, e in enumerate(tab.eps):
                cells = [self.fmt(nm, float(e))]
                for i in range(len(tab.models)):
                    cells.append(f"{_pct(tab.errors[r, i])} (#{tab.ranks[r, i]})")
                order = sorted(range(len(tab.models)), key=lambda i: (tab.ranks[r, i], i))
                rank_txt = ""
                for pos, i in enumerate(order):
                    if pos:
                        j = order[pos - 1]
                        same = tab.ranks[r, i] == tab.ranks[r, j]
                        sep = " = " if same else (" < " if tab.diff_significant[r, i, j]
                                                  else " ≤ ")
                        rank_txt += sep
                    rank_txt += tab.models[i]
                flag = ("misleading (significant)" if tab.significant_misleading[r]
                        else "misleading" if tab.misleading[r] else "")
                rows.append(cells + [rank_txt, flag])
            secs.append((f"{t}: robust error at chosen eps", f"table-{nm}", head, rows,
                         "Robust error (rank; 1 = lowest error). In the ranking, '<' marks a "
                         f"difference significant at {lvl} (paired bootstrap, point-wise), '≤' "
                         "one that is not. 'misleading': this row orders some pair of models "
                         "the opposite way of another row, so reporting only this eps would "
                         "mislead; '(significant)' when the reversal is significant in both "
                         "rows."))
            rows = [[self.fmt_range(nm, c.eps, c.eps_end),
                     c.better_before, c.better_after, "yes" if c.significant else "no",
                     (f"[{self.fmt(nm, c.region[0])}, {self.fmt(nm, c.region[1])}]"
                      if c.region else "")]
                    for c in cmp.crossings]
            secs.append((f"{t}: crossings", f"crossings-{nm}",
                         ["eps", "better below", "better above", f"significant ({lvl})",
                          "true crossing within"], rows,
                         "Where the model with the lower robust error changes (a range when the "
                         "curves are tied in between). Exact, from the step functions."))
            rows = []
            for p in cmp.pairs:
                for iv in p.intervals:
                    rows.append([f"{p.a} vs {p.b}",
                                 f"[{self.fmt_range(nm, iv.lo, iv.hi, ', ')})", iv.winner,
                                 _pts(iv.max_diff), self.fmt(nm, iv.eps_at_max),
                                 _pts(iv.mean_diff), "yes" if iv.significant else "no"])
            secs.append((f"{t}: win intervals", f"wins-{nm}",
                         ["pair", "eps interval", "lower robust error", "max advantage",
                          "at eps", "mean advantage", f"significant ({lvl})"], rows,
                         "Robust-error advantage in percentage points of the test points. "
                         "Significant: the simultaneous paired-bootstrap band of the difference "
                         "excludes 0 somewhere on the interval."))
            floor = 1.0 / (1 + cmp.n_boot)  # no resample reached the observed gap
            rows = [[f"{p.a} vs {p.b}", _pts(p.max_abs_diff), f"±{_pts(p.band)}",
                     f"≤ {floor:.2g}" if p.p_value <= floor else f"{p.p_value:.3g}",
                     "yes" if p.significant else "no"] for p in cmp.pairs]
            secs.append((f"{t}: pairs", f"pairs-{nm}",
                         ["pair", "largest gap", "simultaneous band", "p-value",
                          "significant"], rows,
                         f"Paired bootstrap over the {cmp.n} test points ({cmp.n_boot} "
                         "resamples); p-value of 'the curves are equal' with statistic "
                         "max |R_a - R_b|."))
        if self.kinks:
            rows = [[k.model, _NORM_TXT[k.norm_name],
                     self.fmt(k.norm_name, k.train_eps),
                     self.fmt(k.norm_name, k.location), f"{k.score:.2f}",
                     f"{k.slope_before:.3g} → {k.slope_after:.3g}", f"{k.p_value:.2g}",
                     "KINK" if k.detected else "no"] for k in self.kinks]
            secs.append(("Diagnostics: overfitting to the training eps", "kinks",
                         ["model", "norm", "training eps", "location", "score (log2)",
                          "slope below → above", "p-value", "kink"], rows,
                         "A kink: the robust error is held down just below the training eps "
                         "and rises sharply after it. Score: log2 of how much the slope grows "
                         "across the location beyond the local trend (>= 2 and p < 0.01 to "
                         "call a kink). Slopes in robust error per unit eps."))
        if self.rank_agreements:
            rows = [[f"{_NORM_TXT[r.norm_a]} vs {_NORM_TXT[r.norm_b]}",
                     " > ".join(r.ranking_a), " > ".join(r.ranking_b),
                     "–" if math.isnan(r.kendall_tau) else f"{r.kendall_tau:.2f}",
                     "yes" if r.holds else "no: " + ", ".join(f"{a}/{b}" for a, b in r.flipped)]
                    for r in self.rank_agreements]
            secs.append(("Diagnostics: does the ranking transfer across norms?", "transfer",
                         ["norms", "ranking (first norm)", "ranking (second norm)",
                          "Kendall tau", "holds"], rows,
                         "Models ranked by normalized area under the robust-error curve, most "
                         "robust first."))
        if self.scale_fits:
            rows = [[f.model, f"{_NORM_TXT[f.norm_from]} → {_NORM_TXT[f.norm_to]}",
                     f"{f.factor:.4g}", f"{f.log_spread:.3g}", _pts(f.misfit)]
                    for f in self.scale_fits]
            secs.append(("Diagnostics: scale factor between norms", "scale",
                         ["model", "norms", "factor s", "log spread", "misfit after scaling"],
                         rows,
                         "Distances in the second norm are about s times those in the first. "
                         "For a linear model (input box not binding) the curves are the same up "
                         "to s = ||w||_q1 / ||w||_q2 (q dual norms): log spread and misfit 0."))
        return secs

    def _norms(self) -> list[str]:
        return [n for n in _NORM_ORDER if n in self.curves]

    # ------------------------------------------------------------------ renderers
    def to_markdown(self) -> str:
        """The report as markdown; figures referenced as ``figures/<stem>.png``."""
        lines = ["# Robustness comparison", ""]
        lines += ["## Summary", ""] + [f"- {s}" for s in self.summary] + [""]
        lines += ["## Curves", "", "![robustness curves](figures/curves.png)", ""]
        for nm in self.comparisons:
            lines += [f"![differences, {_NORM_TXT[nm]}](figures/diff_{nm}.png)", ""]
        if self.scale_fits:
            lines += ["![transfer across norms](figures/transfer.png)", ""]
        for title, _anchor, head, rows, cap in self._sections():
            lines += [f"## {title}", ""]
            if rows:
                lines.append("| " + " | ".join(head) + " |")
                lines.append("|" + "|".join("---" for _ in head) + "|")
                lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
                          for r in rows]
            else:
                lines.append("(none)")
            lines += ["", f"*{cap}*", ""]
        return "\n".join(lines)

    def to_html(self, png: Mapping[str, bytes] | None = None) -> str:
        """The report as one self-contained HTML page (figures embedded as base64 PNG)."""
        if png is None:
            png = {}
            for stem, fig in self.figures().items():
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=150)
                png[stem] = buf.getvalue()
        e = html.escape
        parts = [_HTML_HEAD, "<h1>Robustness comparison</h1>", '<section id="summary">',
                 "<h2>Summary</h2><ul>"]
        parts += [f"<li>{e(s)}</li>" for s in self.summary]
        parts.append("</ul></section>")
        parts.append('<section id="figures"><h2>Curves</h2>')
        for stem, data in png.items():
            alt = {"curves": "robustness curves per norm with DKW bands",
                   "transfer": "curves across norms after rescaling"}.get(
                       stem, f"differences between models, {stem[5:]}")
            b64 = base64.b64encode(data).decode("ascii")
            width = _png_width(data) * 96 // 150  # saved at 150 dpi: show at 96 px/inch
            parts.append(f'<figure><img id="fig-{e(stem)}" alt="{e(alt)}" width="{width}" '
                         f'src="data:image/png;base64,{b64}"><figcaption>{e(alt)}'
                         "</figcaption></figure>")
        parts.append("</section>")
        for title, anchor, head, rows, cap in self._sections():
            parts.append(f'<section id="{e(anchor)}"><h2>{e(title)}</h2>')
            if rows:
                parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head)
                             + "</tr></thead><tbody>")
                for r in rows:
                    cls = ' class="flag"' if any(c.startswith("misleading") or c == "KINK"
                                                 for c in r) else ""
                    parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in r)
                                 + "</tr>")
                parts.append("</tbody></table>")
            else:
                parts.append("<p>(none)</p>")
            parts.append(f"<p class=cap>{e(cap)}</p></section>")
        parts.append("</body></html>")
        return "\n".join(parts)


def _png_width(data: bytes) -> int:
    """Pixel width from a PNG header."""
    return int.from_bytes(data[16:20], "big")


_HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>robcurves comparison</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f2f2f2; }
tr.flag td { background: #fff3cd; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
figcaption, p.cap { color: #555; font-size: .88em; }
</style></head><body>"""


# ---------------------------------------------------------------------------- figures
def _colors(names: Sequence[str]) -> dict[str, object]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _axis(report: Report, nm: str) -> tuple[float, str]:
    """Scale applied to eps on the x axis and its label."""
    if report.per255(nm):
        return 255.0, f"perturbation size ε ({_NORM_TEX[nm]}, in units of 1/255)"
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

    norms = report._norms()
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
        ax.set_title(f"{_NORM_TEX[nm]} robustness curves" +
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


# ---------------------------------------------------------------------------- building
def _default_eps(curves: Sequence[RobustnessCurve], per255: bool) -> tuple[float, ...]:
    """Three eps where the pooled curves reach about 25%, 50% and 75% robust error."""
    fin = np.concatenate([c.distances[np.isfinite(c.distances)] for c in curves])
    fin = fin[fin > 0]
    if fin.size == 0:
        return ()
    qs = np.quantile(fin, [0.25, 0.5, 0.75])
    out = []
    for q in qs:
        if per255:
            v = max(1.0, round(q * 255)) / 255
        else:
            digits = -int(math.floor(math.log10(q))) + 1
            v = round(q, digits)
        if v > 0 and v not in out:
            out.append(float(v))
    return tuple(out)


def _resolve_eps(eps, norms: Sequence[str], curves: Mapping[str, Sequence[RobustnessCurve]]
                 ) -> dict[str, tuple[float, ...]]:
    out: dict[str, tuple[float, ...]] = {}
    given: dict[str, Sequence[float]] = {}
    if eps is None:
        pass
    elif isinstance(eps, Mapping):
        for k, v in eps.items():
            key = "*" if k in ("*", None) else norm_name(parse_norm(k))
            given[key] = v
    else:
        given["*"] = eps
    for nm in norms:
        v = given.get(nm, given.get("*"))
        if v is None:
            out[nm] = _default_eps(curves[nm], nm == "linf" and is_8bit(curves[nm]))
            continue
        vals = tuple(float(x) for x in v)
        bad = [x for x in vals if not (x >= 0 and math.isfinite(x))]
        if bad:
            raise ValueError(f"eps must be finite and >= 0; got {bad} for {nm}")
        out[nm] = vals
    return out


def _summary(rep_cmp: Mapping[str, Comparison], tables: Mapping[str, PointwiseTable],
             kinks: Sequence[Kink], ranks: Sequence[RankAgreement], fmt, level: float
             ) -> list[str]:
    out: list[str] = []
    lvl = f"{100 * level:g}%"
    for nm, cmp in rep_cmp.items():
        t = _NORM_TXT[nm]
        tab = tables[nm]
        # What a single threshold would hide: one sentence per pair of models whose order
        # flips between two rows of the table (a significant flip preferred).
        seen: set[frozenset[str]] = set()
        flips = []
        for r1, r2 in itertools.combinations(range(tab.eps.size), 2):
            for i, j in itertools.permutations(range(len(tab.models)), 2):
                if tab.errors[r1, i] < tab.errors[r1, j] and tab.errors[r2, i] > tab.errors[r2, j]:
                    sig = bool(tab.diff_significant[r1, i, j] and tab.diff_significant[r2, i, j])
                    flips.append((not sig, r1, r2, i, j, sig))
        for _, r1, r2, i, j, sig in sorted(flips):
            key = frozenset((tab.models[i], tab.models[j]))
            if key in seen:
                continue
            seen.add(key)
            out.append(
                f"{t}: a single threshold would mislead: at eps={fmt(nm, tab.eps[r1])} "
                f"{tab.models[i]} has the lower robust error ({_pct(tab.errors[r1, i])} vs "
                f"{_pct(tab.errors[r1, j])} for {tab.models[j]}), at eps={fmt(nm, tab.eps[r2])} "
                f"{tab.models[j]} has ({_pct(tab.errors[r2, j])} vs "
                f"{_pct(tab.errors[r2, i])}); "
                + ("both differences are significant." if sig else
                   f"but not both differences are significant at {lvl}."))
        for p in cmp.pairs:
            sig_iv = [iv for iv in p.intervals if iv.significant]
            if not sig_iv:
                out.append(f"{t}: {p.a} vs {p.b}: no difference is significant at {lvl} "
                           f"(largest gap {_pts(p.max_abs_diff)}, simultaneous band "
                           f"±{_pts(p.band)}, p={p.p_value:.2g}).")
                continue
            wins = ", ".join(
                f"{iv.winner} on [{fmt(nm, iv.lo)}, {fmt(nm, iv.hi)}) (by up to "
                f"{_pts(iv.max_diff)})" for iv in sig_iv)
            text = f"{t}: {p.a} vs {p.b}: significantly lower robust error for {wins}"
            cross = [c for c in p.crossings if c.significant]
            regions = list(dict.fromkeys(c.region for c in cross))
            if regions:
                where = "; ".join(f"[{fmt(nm, lo)}, {fmt(nm, hi)}]" for lo, hi in regions)
                text += (f"; the curves cross at eps={fmt(nm, cross[0].eps)}"
                         + (f" and {len(cross) - 1} more time(s)" if len(cross) > 1 else "")
                         + f" (true crossing within {where} at {lvl}), so any threshold "
                         "reports only one side of the story")
            out.append(text + ".")
        for note in cmp.notes:
            out.append(f"{t}: note: {note}.")
    for k in kinks:
        if k.detected:
            out.append(f"{k.model} ({_NORM_TXT[k.norm_name]}): its curve has a kink at "
                       f"eps≈{fmt(k.norm_name, k.location)}, near its training eps "
                       f"{fmt(k.norm_name, k.train_eps)} (slope ×"
                       f"{k.slope_after / max(k.slope_before, 1e-12):.1f} across it): robust "
                       "error measured at or below the training eps overstates its robustness "
                       "beyond it.")
    for r in ranks:
        verdict = "holds" if r.holds else "does not hold"
        out.append(f"The ranking on {_NORM_TXT[r.norm_a]} ({' > '.join(r.ranking_a)}) "
                   f"{verdict} on {_NORM_TXT[r.norm_b]} ({' > '.join(r.ranking_b)}).")
    if not out:
        out.append("Nothing to compare: give curves of at least two models for one norm.")
    return out


def build_report(curves: Sequence[RobustnessCurve], *,
                 eps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
                 level: float = 0.95, n_boot: int = 1000, seed: int = 0,
                 intersect: bool = False, logx: bool = False,
                 eps_max: float | None = None) -> Report:
    """Compare curves of any norms and compute everything the report shows.

    Args:
        curves: curves of one or more models in one or more norms (names unique per norm).
        eps: eps for the point-wise tables and dashed markers: one list for all norms, or a
            mapping from norm (``"linf"``, ``"l2"``...; ``"*"`` for the rest) to a list.
            Default per norm: three eps where the pooled curves reach about 25/50/75% error.
        level, n_boot, seed, intersect, eps_max: passed to :func:`robcurves.comparison.compare`.
        logx: logarithmic eps axes.
    """
    curves = list(curves)
    if not curves:
        raise ValueError("build_report needs at least one curve")
    by_norm: dict[str, list[RobustnessCurve]] = {}
    for c in curves:
        if not isinstance(c, RobustnessCurve):
            raise TypeError(f"expected RobustnessCurve objects; got {type(c).__name__}")
        by_norm.setdefault(c.norm_name, []).append(c)
    norms = [n for n in _NORM_ORDER if n in by_norm]
    eps_by = _resolve_eps(eps, norms, by_norm)
    comparisons: dict[str, Comparison] = {}
    tables: dict[str, PointwiseTable] = {}
    for nm in norms:
        if len(by_norm[nm]) >= 2:
            cmp = compare(by_norm[nm], level=level, n_boot=n_boot, seed=seed,
                          intersect=intersect, eps_max=eps_max)
            comparisons[nm] = cmp
            tables[nm] = cmp.table(eps_by[nm] or [cmp.eps_max / 2])
            if not eps_by[nm]:
                eps_by[nm] = (cmp.eps_max / 2,)
    kinks = tuple(detect_kink(c) for nm in norms for c in by_norm[nm]
                  if train_eps_of(c) is not None)
    fits = []
    for na, nb in itertools.combinations(norms, 2):
        other = {c.name: c for c in by_norm[nb]}
        for c in by_norm[na]:
            if c.name in other:
                try:
                    fits.append(fit_scale(c, other[c.name]))
                except ValueError:
                    continue  # no finite positive quantile in common: nothing to fit
    ranks: tuple[RankAgreement, ...] = ()
    names_per_norm = [{c.name for c in by_norm[nm]} for nm in norms]
    if len(norms) >= 2 and len(set.intersection(*names_per_norm)) >= 2:
        ranks = tuple(rank_agreement(curves))
    frozen = {nm: tuple(comparisons[nm].curves if nm in comparisons else by_norm[nm])
              for nm in norms}

    def fmt(nm: str, e: float) -> str:
        return format_eps(float(e), nm == "linf" and is_8bit(frozen[nm]))

    summary = _summary(comparisons, tables, kinks, ranks, fmt, level)
    return Report(comparisons=comparisons, curves=frozen, tables=tables, eps=eps_by,
                  kinks=kinks, scale_fits=tuple(fits), rank_agreements=ranks,
                  summary=tuple(summary), level=level, logx=logx)


def write_report(curves: Sequence[RobustnessCurve], out_dir: str | Path, **kwargs
                 ) -> dict[str, Path]:
    """:func:`build_report` then :meth:`Report.write`; returns the written paths."""
    return build_report(curves, **kwargs).write(out_dir)

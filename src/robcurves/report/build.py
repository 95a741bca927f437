"""The comparison report: :func:`build_report` computes it, :class:`Report` holds and writes it.

:func:`build_report` groups curves by norm, compares the models of each norm
(:func:`robcurves.comparison.compare`), runs the threat-model diagnostics, adds the optional
gradient-masking checks and human studies it is given (checked first by
:func:`check_sections`), and returns a :class:`Report`; :meth:`Report.write` puts
``report.html`` (self-contained: figures embedded as base64 PNG), ``report.md`` and
``figures/*.png|svg`` in a folder. The figures are drawn in :mod:`.figures`, the tables and
sentences written in :mod:`.text`, the pages rendered from the templates by :mod:`.render`.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._norms import file_stem, norm_name, parse_norm
from ..comparison import Comparison, PointwiseTable, compare
from ..curve import RobustnessCurve
from ..diagnostics import (
    GradientMasking,
    Kink,
    RankAgreement,
    ScaleFit,
    detect_kink,
    fit_scale,
    rank_agreement,
    train_eps_of,
)
from ..protocol import RobustAccuracy
from . import figures as _figures
from . import text as _text
from .render import render
from .text import NORM_ORDER, NORM_TXT, format_eps, is_8bit

if TYPE_CHECKING:
    from ..studies.human import HumanStudy

__all__ = ["Report", "ProtocolCheck", "build_report", "write_report", "save_masking",
           "load_masking", "save_protocol", "load_protocol", "protocol_check"]


@dataclass(frozen=True)
class ProtocolCheck:
    """A curve's robust accuracy at one eps next to a fixed-eps protocol's on the same points.

    The protocol's accuracy is an upper bound on the true robust accuracy; so is an attack
    curve's, a certified curve's is a lower bound. A curve whose robust accuracy is *higher*
    than the protocol's (:attr:`higher`) is too optimistic there: its attack missed
    adversarials inside the eps ball that the protocol found.

    Attributes:
        model: the model name (of the curve and the result).
        curve: the model's curve in the result's norm (all its points).
        result: the protocol's :class:`~robcurves.protocol.RobustAccuracy`.
        curve_accuracy: the curve's robust accuracy at ``result.eps`` (share of points whose
            distance exceeds eps).
        missed: points the protocol broke within eps (not counting clean misclassifications)
            that the curve places beyond eps.
    """

    model: str
    curve: RobustnessCurve
    result: RobustAccuracy
    curve_accuracy: float
    missed: int

    @property
    def norm_name(self) -> str:
        return self.result.norm_name

    @property
    def eps(self) -> float:
        return self.result.eps

    @property
    def higher(self) -> bool:
        """The curve's robust accuracy is above the protocol's (flagged in the report)."""
        return self.curve_accuracy > self.result.accuracy


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
        masking: gradient-masking checks by model name (the "gradient masking check"
            section); empty without one.
        human: human studies of curves of the report (one "human validation" section each).
        protocol: fixed-eps protocol results next to the curves (the "fixed-eps protocol"
            section), one per model, norm and eps; empty without one.
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
    masking: dict[str, GradientMasking] = field(default_factory=dict)
    human: tuple[HumanStudy, ...] = ()
    protocol: tuple[ProtocolCheck, ...] = ()

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

    def norms(self) -> list[str]:
        """The norms of the report, in page order (l_inf, l2, l1, then threat labels)."""
        return _page_order(self.curves)

    # ------------------------------------------------------------------ figures
    def figures(self) -> dict[str, object]:
        """Matplotlib figures by file stem: ``curves`` (one panel per norm), ``diff_<norm>``
        (differences of each pair with the simultaneous band), ``transfer`` (cross-norm),
        ``human_<k>`` (the attack and human-validated curves of the k-th human study)."""
        return _figures.figures(self)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.html``, ``report.md`` and ``figures/`` into ``out_dir``."""
        out = Path(out_dir)
        (out / "figures").mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        png: dict[str, bytes] = {}
        for stem, fig in self.figures().items():
            png[stem] = _figures.png_bytes(fig)
            (out / "figures" / f"{stem}.png").write_bytes(png[stem])
            fig.savefig(out / "figures" / f"{stem}.svg", format="svg")
            paths[f"{stem}.png"] = out / "figures" / f"{stem}.png"
        (out / "report.html").write_text(self.to_html(png), encoding="utf-8")
        (out / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        paths["html"] = out / "report.html"
        paths["markdown"] = out / "report.md"
        return paths

    # ------------------------------------------------------------------ pages
    def sections(self) -> list[_text.Section]:
        """Every table of the report (title, anchor, header, rows, caption), in page order."""
        return _text.sections(self)

    def to_markdown(self) -> str:
        """The report as markdown; figures referenced as ``figures/<stem>.png``."""
        return render("report.md.j2", summary=self.summary, sections=self.sections(),
                      alt={f"human_{i}": _figures.alt_text(f"human_{i}")
                           for i in range(len(self.human))},
                      diff_norms=list(self.comparisons),
                      stems={nm: file_stem(nm) for nm in self.comparisons},
                      transfer=bool(self.scale_fits), norm_txt=NORM_TXT)

    def to_html(self, png: Mapping[str, bytes] | None = None) -> str:
        """The report as one self-contained HTML page (figures embedded as base64 PNG)."""
        if png is None:
            png = {stem: _figures.png_bytes(fig) for stem, fig in self.figures().items()}
        figs = {stem: {"stem": stem, "alt": _figures.alt_text(stem),
                       # saved at PNG_DPI: shown at 96 px per inch
                       "width": _figures.png_width(data) * 96 // _figures.PNG_DPI,
                       "base64": base64.b64encode(data).decode("ascii")}
                for stem, data in png.items()}
        sections = self.sections()
        own = {s.figure for s in sections if s.figure}  # shown in their sections
        return render("report.html.j2", summary=self.summary,
                      figures=[f for stem, f in figs.items() if stem not in own],
                      section_figures=figs, sections=sections)


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



def _page_order(by_norm: Mapping[str, object]) -> list[str]:
    """l_inf, l2, l1, then threat labels (union, spatial curves) in sorted order."""
    return ([n for n in NORM_ORDER if n in by_norm]
            + sorted(n for n in by_norm if n not in NORM_ORDER))


def _same_curve(a: RobustnessCurve, b: RobustnessCurve) -> bool:
    """Same model name, norm and points (distances, and data set indices where both have them)."""
    if (a.name, a.norm_name, a.n) != (b.name, b.norm_name, b.n):
        return False
    if a.indices is not None and b.indices is not None and \
            not np.array_equal(a.indices, b.indices):
        return False
    return bool(np.array_equal(a.distances, b.distances, equal_nan=True))


def _describe(c: RobustnessCurve) -> str:
    return f"{c.name!r} ({c.norm_name}, {c.n} points)"


def _check_human(human, curves: Sequence[RobustnessCurve]) -> tuple[HumanStudy, ...]:
    """Human studies whose plain curve is one of ``curves``, or a ValueError naming both."""
    from ..studies.human import HumanStudy

    if human is None:
        return ()
    studies = (human,) if isinstance(human, HumanStudy) else tuple(human)
    for st in studies:
        if not isinstance(st, HumanStudy):
            raise TypeError(f"human= takes HumanStudy results (robcurves.studies.human); got "
                            f"{type(st).__name__}")
        if not any(_same_curve(st.curve, c) for c in curves):
            same = [c for c in curves if (c.name, c.norm_name) == (st.curve.name,
                                                                   st.curve.norm_name)]
            why = (f"the report's curve {_describe(same[0])} has other points or distances"
                   if same else "the report's curves are "
                   + ", ".join(_describe(c) for c in curves))
            raise ValueError(f"the human study is of curve {_describe(st.curve)}, which is not "
                             f"one of the report's curves: {why}; give the study of a curve "
                             "in the report (same model name, norm and points)")
    return studies


def _check_masking(masking, curves: Sequence[RobustnessCurve]) -> dict[str, GradientMasking]:
    """Masking checks keyed by a model name of ``curves``, or a ValueError naming it."""
    if masking is None:
        return {}
    if not isinstance(masking, Mapping):
        raise TypeError("masking= takes a mapping from model name to GradientMasking; got "
                        f"{type(masking).__name__}")
    names = list(dict.fromkeys(c.name for c in curves))
    for name, res in masking.items():
        if not isinstance(res, GradientMasking):
            raise TypeError(f"masking[{name!r}] must be a GradientMasking result "
                            f"(robcurves.diagnostics.gradient_masking); got "
                            f"{type(res).__name__}")
        if name not in names:
            raise ValueError(f"masking check of model {name!r}, which has no curve in the "
                             f"report (models: {', '.join(map(repr, names))})")
    return dict(masking)


def points_differ(c: RobustnessCurve, metadata: Mapping, labels: np.ndarray | None,
                  predictions: np.ndarray | None, misclassified: np.ndarray) -> str | None:
    """Why points (their ``labels``, the model's clean ``predictions`` and which are
    ``misclassified``, the ``metadata`` of model and data) are not those of curve ``c``, or
    None when nothing says so."""
    n = int(np.asarray(misclassified).shape[0])
    if n != c.n:
        return f"it has {n} points, the curve {c.n}"
    for part, keys in (("data", ("name", "spec", "split", "first_index", "n",
                                 "points_fingerprint")), ("model", ("fingerprint",))):
        mine, theirs = metadata.get(part) or {}, c.metadata.get(part) or {}
        for key in keys:
            a, b = mine.get(key), theirs.get(key)
            if a is not None and b is not None and a != b:
                return f"its {part} {key} is {a!r}, the curve's {b!r}"

    def differ(a: np.ndarray, b: np.ndarray, what: str) -> str | None:
        bad = np.flatnonzero(np.asarray(a) != np.asarray(b))
        return (f"{what} differ on {bad.size} of {c.n} points (first: point {bad[0]})"
                if bad.size else None)

    if labels is not None and c.labels is not None:
        why = differ(labels, c.labels, "the labels")
        if why:
            return why
    if predictions is not None and c.predictions is not None:
        why = differ(predictions, c.predictions, "the clean predictions")
        if why:
            return why
    if c.kind != "lower":  # an attack curve: distance 0 exactly where misclassified
        return differ(misclassified, c.distances == 0, "the misclassified points")
    return None


def _check_protocol(protocol, curves: Sequence[RobustnessCurve]) -> tuple[ProtocolCheck, ...]:
    """One :class:`ProtocolCheck` per result, each on the points of its model's curve in its
    norm, or a ValueError naming what does not match."""
    if protocol is None:
        return ()
    if not isinstance(protocol, Mapping):
        raise TypeError("protocol= takes a mapping from model name to RobustAccuracy results "
                        f"(robcurves.robust_accuracy); got {type(protocol).__name__}")
    out: list[ProtocolCheck] = []
    seen: set[tuple[str, str, float]] = set()
    for model, results in protocol.items():
        for r in (results,) if isinstance(results, RobustAccuracy) else tuple(results):
            if not isinstance(r, RobustAccuracy):
                raise TypeError(f"protocol[{model!r}] must hold RobustAccuracy results "
                                f"(robcurves.robust_accuracy); got {type(r).__name__}")
            what = f"the {r.protocol} result of model {model!r} ({r.norm_name}, eps {r.eps:g})"
            key = (model, r.norm_name, r.eps)
            if key in seen:
                raise ValueError(f"{what} is given twice")
            seen.add(key)
            mine = [c for c in curves if c.name == model and c.norm_name == r.norm_name]
            if not mine:
                have = [_describe(c) for c in curves if c.name == model]
                raise ValueError(f"{what} has no curve of that model and norm in the report "
                                 f"(its curves: {', '.join(have) if have else 'none'}; "
                                 "models: " + ", ".join(
                                     map(repr, dict.fromkeys(c.name for c in curves))) + ")")
            out.append(protocol_check(model, mine[0], r))
    return tuple(out)


def protocol_check(model: str, curve: RobustnessCurve, result: RobustAccuracy) -> ProtocolCheck:
    """``curve``'s robust accuracy at ``result.eps`` next to ``result``'s, on the same points.

    Raises:
        ValueError: ``result`` is in another norm or not on the points of ``curve`` (another
            number of points, data set, model fingerprint, labels, clean predictions or
            misclassified points), naming what differs.
    """
    what = (f"the {result.protocol} result of model {model!r} ({result.norm_name}, eps "
            f"{result.eps:g})")
    if curve.norm_name != result.norm_name:
        raise ValueError(f"{what} is in another norm than its curve {_describe(curve)}")
    why = points_differ(curve, result.metadata, result.labels, result.predictions,
                        result.broken_by == "clean")
    if why:
        raise ValueError(f"{what} is not on the points of its curve {_describe(curve)}: "
                         f"{why}; run the protocol on the curve's points (robcurves "
                         "compare --autoattack does)")
    broken = ~result.robust & (result.broken_by != "clean")
    return ProtocolCheck(model=model, curve=curve, result=result,
                         curve_accuracy=float(curve.robust_accuracy(result.eps)),
                         missed=int((broken & (curve.distances > result.eps)).sum()))


def check_sections(curves: Sequence[RobustnessCurve], *,
                   masking: Mapping[str, GradientMasking] | None = None,
                   human: HumanStudy | Sequence[HumanStudy] | None = None,
                   protocol: Mapping[str, RobustAccuracy | Sequence[RobustAccuracy]] | None
                   = None) -> tuple[dict[str, GradientMasking], tuple[HumanStudy, ...],
                                    tuple[ProtocolCheck, ...]]:
    """The checks :func:`build_report` makes of ``masking``, ``human`` and ``protocol`` before
    any work (each masking check of a model of ``curves``, each human study of one of
    ``curves``, each protocol result on the points of its model's curve), alone: a command
    can refuse bad input before it spends minutes computing other parts."""
    return (_check_masking(masking, curves), _check_human(human, curves),
            _check_protocol(protocol, curves))


def build_report(curves: Sequence[RobustnessCurve], *,
                 eps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
                 level: float = 0.95, n_boot: int = 1000, seed: int = 0,
                 intersect: bool = False, logx: bool = False,
                 eps_max: float | None = None,
                 masking: Mapping[str, GradientMasking] | None = None,
                 human: HumanStudy | Sequence[HumanStudy] | None = None,
                 protocol: Mapping[str, RobustAccuracy | Sequence[RobustAccuracy]] | None
                 = None) -> Report:
    """Compare curves of any norms and compute everything the report shows.

    Args:
        curves: curves of one or more models in one or more norms (names unique per norm).
        eps: eps for the point-wise tables and dashed markers: one list for all norms, or a
            mapping from norm (``"linf"``, ``"l2"``...; ``"*"`` for the rest) to a list.
            Default per norm: three eps where the pooled curves reach about 25/50/75% error.
        level, n_boot, seed, intersect, eps_max: passed to :func:`robcurves.comparison.compare`.
        logx: logarithmic eps axes.
        masking: results of :func:`robcurves.diagnostics.gradient_masking` by model name (a
            name of ``curves``): a "gradient masking check" section, and a summary line per
            model (flagged models first).
        human: results of :func:`robcurves.studies.human.human_study` (one or several), each
            of a curve in ``curves`` (same name, norm and distances): a "human validation"
            section each, with the attack and human-validated curves drawn together.
        protocol: results of :func:`robcurves.robust_accuracy` by model name (one or several
            per model: norms and eps), each on the points of the model's curve in its norm: a
            "fixed-eps protocol" section with, per model and eps, the curve's robust accuracy
            next to the protocol's and which attack broke how many points; a curve whose
            accuracy is higher is flagged (and said first in the summary).

    Raises:
        ValueError: a human study of a curve that is not in ``curves``, a masking check of a
            model without curve, a protocol result without a curve of its model and norm or
            on other points (all before any work).
    """
    curves = list(curves)
    if not curves:
        raise ValueError("build_report needs at least one curve")
    by_norm: dict[str, list[RobustnessCurve]] = {}
    for c in curves:
        if not isinstance(c, RobustnessCurve):
            raise TypeError(f"expected RobustnessCurve objects; got {type(c).__name__}")
        by_norm.setdefault(c.norm_name, []).append(c)
    checks, studies, protocol_checks = check_sections(curves, masking=masking, human=human,
                                                      protocol=protocol)
    norms = _page_order(by_norm)
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
    lp = [nm for nm in norms if nm in NORM_ORDER]  # cross-norm diagnostics: l_p curves only
    for na, nb in itertools.combinations(lp, 2):
        other = {c.name: c for c in by_norm[nb]}
        for c in by_norm[na]:
            if c.name in other:
                try:
                    fits.append(fit_scale(c, other[c.name]))
                except ValueError:
                    continue  # no finite positive quantile in common: nothing to fit
    ranks: tuple[RankAgreement, ...] = ()
    names_per_norm = [{c.name for c in by_norm[nm]} for nm in lp]
    if len(lp) >= 2 and len(set.intersection(*names_per_norm)) >= 2:
        ranks = tuple(rank_agreement([c for c in curves if c.norm_name in NORM_ORDER]))
    frozen = {nm: tuple(comparisons[nm].curves if nm in comparisons else by_norm[nm])
              for nm in norms}

    def fmt(nm: str, e: float) -> str:
        return format_eps(float(e), nm == "linf" and is_8bit(frozen[nm]))

    summary = _text.summary(comparisons, tables, kinks, ranks, fmt, level)
    first, last = _text.extra_summary(checks, studies, fmt, protocol_checks)
    return Report(comparisons=comparisons, curves=frozen, tables=tables, eps=eps_by,
                  kinks=kinks, scale_fits=tuple(fits), rank_agreements=ranks,
                  summary=tuple(first + summary + last), level=level, logx=logx,
                  masking=checks, human=studies, protocol=protocol_checks)


def _save_named(path: str | Path, model: str, fields: dict) -> Path:
    """Write ``fields`` with ``"model": model`` as JSON (a saved check or result of one model)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**fields, "model": model}, indent=1, allow_nan=False,
                               default=str))
    return path


def _load_named(path: str | Path, what: str, cls, writer: str):
    """The model name and the ``cls`` object in a file written by :func:`_save_named`."""
    from ..results import read_json_file

    obj = read_json_file(path, what)
    res = cls.from_dict(obj, origin=str(path))
    if not isinstance(obj.get("model"), str):
        raise ValueError(f"{path} names no model (a \"model\" field); write it with "
                         f"robcurves.report.{writer}")
    return obj["model"], res


def save_masking(path: str | Path, model: str, result: GradientMasking) -> Path:
    """Write a gradient-masking check of ``model`` as JSON (read by :func:`load_masking` and
    ``robcurves compare --masking FILE``)."""
    return _save_named(path, model, result.to_dict())


def load_masking(path: str | Path) -> tuple[str, GradientMasking]:
    """The model name and the check in a file written by :func:`save_masking`."""
    return _load_named(path, "masking check file", GradientMasking, "save_masking")


def save_protocol(path: str | Path, model: str, result: RobustAccuracy, **extra) -> Path:
    """Write a fixed-eps protocol result of ``model`` as JSON (read by :func:`load_protocol` and
    ``robcurves compare --autoattack-result FILE``; written by ``robcurves eval --out`` and
    ``robcurves compare --autoattack``). ``extra``: more JSON fields to store alongside."""
    return _save_named(path, model, {**result.to_dict(), **extra})


def load_protocol(path: str | Path) -> tuple[str, RobustAccuracy]:
    """The model name and the result in a file written by :func:`save_protocol`."""
    return _load_named(path, "robust accuracy file", RobustAccuracy, "save_protocol")


def write_report(curves: Sequence[RobustnessCurve], out_dir: str | Path, **kwargs
                 ) -> dict[str, Path]:
    """:func:`build_report` then :meth:`Report.write`; returns the written paths."""
    return build_report(curves, **kwargs).write(out_dir)

"""The report's words and numbers: eps formatting, the tables as sections of text, the summary.

Everything here returns plain strings; :mod:`robcurves.report.render` puts them on a page.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..comparison import Comparison, PointwiseTable
from ..curve import RobustnessCurve
from ..diagnostics import GradientMasking, Kink, RankAgreement

if TYPE_CHECKING:
    from ..studies.human import HumanStudy
    from .build import ProtocolCheck, Report

NORM_ORDER = ("linf", "l2", "l1")

#: fewer labelled images than this behind a share, and the report says the share rests on too
#: few labels to conclude anything
MIN_LABELS = 10


class _NormText(dict):
    """Display names of norms; a threat label (``union(...)``, ``spatial(...)``) shows as itself."""

    def __missing__(self, key: str) -> str:
        return key


NORM_TXT = _NormText({"linf": "l∞", "l2": "l2", "l1": "l1"})


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


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def pts(x: float) -> str:
    return f"{100 * x:.1f} pts"


@dataclass(frozen=True)
class Section:
    """One section of the report: a titled table with a caption.

    Attributes:
        title: section heading.
        anchor: the section's id on the HTML page.
        head: column headers.
        rows: cells as text.
        caption: what the table means.
        notes: findings in sentences, shown above the table (may be empty).
        figure: stem of a figure of :meth:`Report.figures` shown in this section, or None.
    """

    title: str
    anchor: str
    head: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str
    notes: tuple[str, ...] = ()
    figure: str | None = None

    def flagged(self, row: Sequence[str]) -> bool:
        """The row reports a warning (a misleading threshold, a kink, suspect gradient
        masking): highlighted on the page."""
        return any(c.startswith("misleading") or c in ("KINK", "FLAGGED") for c in row)


def sections(report: Report) -> list[Section]:
    """Every table of the report, in page order."""
    secs = []
    lvl = f"{100 * report.level:g}%"
    for nm in report.norms():
        cs = report.curves[nm]
        cmp = report.comparisons.get(nm)
        t = NORM_TXT[nm]
        if cmp is not None:
            rows = [[s.name, str(s.n), s.kind, pct(s.clean_error), f"{s.auc_normalized:.3f}",
                     report.fmt(nm, s.median_distance), report.fmt(nm, s.eps_50),
                     report.fmt(nm, s.eps_90), str(s.n_unbroken)] for s in cmp.summaries]
            cap = (f"Area under the robust-error curve on [0, {report.fmt(nm, cmp.eps_max)}], "
                   f"divided by its length (lower is more robust). DKW band half-width "
                   f"±{pts(cmp.dkw)} at {lvl}.")
        else:
            rows = [[c.name, str(c.n), c.kind, pct(c.clean_error), "–",
                     report.fmt(nm, c.median_distance), report.fmt(nm, c.eps_at_error(0.5)),
                     report.fmt(nm, c.eps_at_error(0.9)), str(c.n_unbroken)] for c in cs]
            cap = "Only one model for this norm: nothing to compare."
        secs.append((f"{t}: global summaries", f"summary-{nm}",
                     ["model", "n", "bound", "clean error", "AUC (norm.)", "median dist.",
                      "eps @ 50%", "eps @ 90%", "unbroken"], rows, cap))
        if cmp is None:
            continue
        tab = report.tables[nm]
        head = ["eps"] + [f"{m}" for m in tab.models] + ["ranking", "single threshold"]
        rows = []
        for r, e in enumerate(tab.eps):
            cells = [report.fmt(nm, float(e))]
            for i in range(len(tab.models)):
                cells.append(f"{pct(tab.errors[r, i])} (#{tab.ranks[r, i]})")
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
        rows = [[report.fmt_range(nm, c.eps, c.eps_end),
                 c.better_before, c.better_after, "yes" if c.significant else "no",
                 (f"[{report.fmt(nm, c.region[0])}, {report.fmt(nm, c.region[1])}]"
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
                             f"[{report.fmt_range(nm, iv.lo, iv.hi, ', ')})", iv.winner,
                             pts(iv.max_diff), report.fmt(nm, iv.eps_at_max),
                             pts(iv.mean_diff), "yes" if iv.significant else "no"])
        secs.append((f"{t}: win intervals", f"wins-{nm}",
                     ["pair", "eps interval", "lower robust error", "max advantage",
                      "at eps", "mean advantage", f"significant ({lvl})"], rows,
                     "Robust-error advantage in percentage points of the test points. "
                     "Significant: the simultaneous paired-bootstrap band of the difference "
                     "excludes 0 somewhere on the interval."))
        floor = 1.0 / (1 + cmp.n_boot)  # no resample reached the observed gap
        rows = [[f"{p.a} vs {p.b}", pts(p.max_abs_diff), f"±{pts(p.band)}",
                 f"≤ {floor:.2g}" if p.p_value <= floor else f"{p.p_value:.3g}",
                 "yes" if p.significant else "no"] for p in cmp.pairs]
        secs.append((f"{t}: pairs", f"pairs-{nm}",
                     ["pair", "largest gap", "simultaneous band", "p-value",
                      "significant"], rows,
                     f"Paired bootstrap over the {cmp.n} test points ({cmp.n_boot} "
                     "resamples); p-value of 'the curves are equal' with statistic "
                     "max |R_a - R_b|."))
    if report.kinks:
        rows = [[k.model, NORM_TXT[k.norm_name],
                 report.fmt(k.norm_name, k.train_eps),
                 report.fmt(k.norm_name, k.location), f"{k.score:.2f}",
                 f"{k.slope_before:.3g} → {k.slope_after:.3g}", f"{k.p_value:.2g}",
                 "KINK" if k.detected else "no"] for k in report.kinks]
        secs.append(("Diagnostics: overfitting to the training eps", "kinks",
                     ["model", "norm", "training eps", "location", "score (log2)",
                      "slope below → above", "p-value", "kink"], rows,
                     "A kink: the robust error is held down just below the training eps "
                     "and rises sharply after it. Score: log2 of how much the slope grows "
                     "across the location beyond the local trend (>= 2 and p < 0.01 to "
                     "call a kink). Slopes in robust error per unit eps."))
    if report.rank_agreements:
        rows = [[f"{NORM_TXT[r.norm_a]} vs {NORM_TXT[r.norm_b]}",
                 " > ".join(r.ranking_a), " > ".join(r.ranking_b),
                 "–" if math.isnan(r.kendall_tau) else f"{r.kendall_tau:.2f}",
                 "yes" if r.holds else "no: " + ", ".join(f"{a}/{b}" for a, b in r.flipped)]
                for r in report.rank_agreements]
        secs.append(("Diagnostics: does the ranking transfer across norms?", "transfer",
                     ["norms", "ranking (first norm)", "ranking (second norm)",
                      "Kendall tau", "holds"], rows,
                     "Models ranked by normalized area under the robust-error curve, most "
                     "robust first."))
    if report.scale_fits:
        rows = [[f.model, f"{NORM_TXT[f.norm_from]} → {NORM_TXT[f.norm_to]}",
                 f"{f.factor:.4g}", f"{f.log_spread:.3g}", pts(f.misfit)]
                for f in report.scale_fits]
        secs.append(("Diagnostics: scale factor between norms", "scale",
                     ["model", "norms", "factor s", "log spread", "misfit after scaling"],
                     rows,
                     "Distances in the second norm are about s times those in the first. "
                     "For a linear model (input box not binding) the curves are the same up "
                     "to s = ||w||_q1 / ||w||_q2 (q dual norms): log spread and misfit 0."))
    out = [Section(title, anchor, tuple(head), tuple(tuple(r) for r in rows), cap)
           for title, anchor, head, rows, cap in secs]
    if report.masking:
        out.append(masking_section(report.masking))
    if report.protocol:
        out.append(protocol_section(report.protocol, report.fmt))
    for i, st in enumerate(report.human):
        out.append(human_section(st, i, functools.partial(report.fmt, st.curve.norm_name)))
    return out


# ---------------------------------------------------------------------------- fixed-eps protocol
def protocol_words(ck: ProtocolCheck, fmt) -> str:
    """The curve's robust accuracy next to the protocol's, in one or two sentences;
    ``fmt(norm, eps)`` prints an eps."""
    r = ck.result
    head = (f"{ck.model} ({NORM_TXT[ck.norm_name]}, eps {fmt(ck.norm_name, ck.eps)}, "
            f"{r.n} points): robust accuracy {pct(ck.curve_accuracy)} from the curve, "
            f"{pct(r.accuracy)} under {r.protocol}")
    if ck.higher:
        return (f"{head}: the curve is HIGHER by {pts(ck.curve_accuracy - r.accuracy)}: "
                f"{r.protocol} broke {ck.missed} point(s) within eps that the curve places "
                "beyond it, so the curve's attack missed adversarials there and the curve "
                "overstates this model's robustness.")
    more = (f"; {r.protocol} broke {ck.missed} point(s) within eps that the curve places "
            "beyond it" if ck.missed else "")
    return f"{head}: the curve is not higher, as expected{more}."


def protocol_section(checks: Sequence[ProtocolCheck], fmt) -> Section:
    """The "fixed-eps protocol" section: one row per model, norm and eps."""
    head = ("model", "norm", "eps", "points", "curve", "robust accuracy (curve)",
            "robust accuracy (protocol)", "curve minus protocol", "protocol: broken by",
            "broken by the protocol, beyond eps on the curve", "curve higher")
    rows = []
    for ck in checks:
        r = ck.result
        broken = ", ".join(f"{k} {v}" for k, v in r.counts.items())
        if r.skipped:
            broken += "; skipped: " + ", ".join(r.skipped)
        method = ck.curve.metadata.get("method") or ck.curve.kind
        rows.append((ck.model, NORM_TXT[ck.norm_name], fmt(ck.norm_name, ck.eps), str(r.n),
                     f"{ck.curve.name} ({method})", pct(ck.curve_accuracy), pct(r.accuracy),
                     f"{100 * (ck.curve_accuracy - r.accuracy):+.1f} pts", broken,
                     str(ck.missed), "FLAGGED" if ck.higher else "no"))
    protocols = " / ".join(sorted({ck.result.protocol for ck in checks}))
    cap = (f"The robust accuracy papers report, at one eps with a fixed attack protocol "
           f"({protocols}: its attacks in sequence, each on the points still robust), next to "
           "the curve's at the same eps, on the same points. Both are upper bounds on the true "
           "robust accuracy, and a curve of minimal distances should be the tighter one: a "
           "curve whose robust accuracy is higher than the protocol's is FLAGGED (its attack "
           "missed adversarials within eps that the protocol found). 'Broken by': the attack "
           "that broke each point first ('clean': misclassified unperturbed; 'robust': none).")
    return Section("Fixed-eps protocol: the curve next to the robust accuracy papers report",
                   "protocol", head, tuple(rows), cap,
                   notes=tuple(protocol_words(ck, fmt) for ck in checks))


# ---------------------------------------------------------------------------- gradient masking
def _ratio_text(res: GradientMasking) -> str:
    return f"{1 - res.ratio:.0%}"


def masking_words(model: str, res: GradientMasking) -> str:
    """What the gradient-masking check found for ``model``, in one or two sentences."""
    attacks = " and ".join(res.decision_attacks)
    one = len(res.decision_attacks) == 1
    where = (f"on {res.n_smaller} of {res.n} points ({pct(res.fraction_smaller)}) the "
             f"decision-based attack{'' if one else 's'} ({attacks}, which use{'s' if one else ''} "
             f"only the predicted labels) found an adversarial more than {_ratio_text(res)} "
             f"closer than the gradient attack ({res.gradient_attack}) did")
    if res.flagged:
        return (f"{model} ({NORM_TXT[res.norm_name]}): suspect gradient masking: {where}"
                + ("" if res.fraction_smaller <= res.fraction else
                   f" (more than the {res.fraction:.0%} allowed)")
                + ("; the robust-error curve of the decision-based attacks lies significantly "
                   f"above the gradient attack's (p={res.p_value:.2g})" if res.significant
                   else "")
                + ". Its gradient-attack curve overstates its robustness: distances of an "
                  "attack that does not need gradients are the safer measure for it.")
    return (f"{model} ({NORM_TXT[res.norm_name]}): no sign of gradient masking: {where} "
            f"(at most {res.fraction:.0%} allowed), and the two robust-error curves do not "
            f"differ significantly in that direction (p={res.p_value:.2g}).")


def masking_section(masking: Mapping[str, GradientMasking]) -> Section:
    """The "Gradient masking check" section: one row per model."""
    ratios = {_ratio_text(r) for r in masking.values()}
    head = ["model", "norm", "points checked", "decision-based attacks",
            (f"distance >{ratios.pop()} smaller" if len(ratios) == 1
             else "distance smaller than ratio × gradient"),
            "median ratio (decision / gradient)", "curve difference: p-value",
            "decision curve significantly above", "flagged"]
    rows = []
    for model, r in masking.items():
        smaller = f"{r.n_smaller} of {r.n} ({pct(r.fraction_smaller)})"
        if "ratio" in head[4]:
            smaller += f", ratio {r.ratio:g}"
        rows.append((model, NORM_TXT[r.norm_name], str(r.n), ", ".join(r.decision_attacks),
                     smaller, "–" if math.isnan(r.median_ratio) else f"{r.median_ratio:.3f}",
                     "–" if math.isnan(r.p_value) else f"{r.p_value:.3g}",
                     f"yes (level {r.level:g})" if r.significant else "no",
                     "FLAGGED" if r.flagged else "no"))
    fractions = sorted({f"{r.fraction:.0%}" for r in masking.values()})
    cap = ("Gradient masking: a model whose gradients are useless (zero, noisy, shattered) "
           "fools gradient attacks, so its curve looks more robust than it is. The check runs "
           "decision-based attacks, which use only the predicted labels, on the same points. "
           f"A model is flagged when they find a distance that much smaller on more than "
           f"{' / '.join(fractions)} of the points, or when their robust-error curve is "
           "significantly above the gradient attack's on some eps interval (paired bootstrap). "
           "Median ratio: over the points both attacks broke; below 1 means the decision-based "
           "attacks come closer.")
    return Section("Diagnostics: gradient masking check", "masking", tuple(head),
                   tuple(rows), cap, notes=tuple(masking_words(m, r)
                                                 for m, r in masking.items()))


# ---------------------------------------------------------------------------- human validation
def human_notes(st: HumanStudy, fmt) -> list[str]:
    """The findings of a human study in sentences, the warnings about too few labels first."""
    out = []
    n_min = st.n_valid + st.n_changed
    if st.n_labels == 0:
        out.append("No labels yet: the human-validated curve is the attack curve (nothing "
                   "validated); label the session with `robcurves label serve`.")
    elif n_min < MIN_LABELS:
        out.append(f"Too few labels to conclude anything: only {n_min} of the {st.n_broken} "
                   f"broken points have a labelled minimal adversarial (fewer than "
                   f"{MIN_LABELS}); the human-validated curve is the attack curve wherever "
                   "nobody looked.")
    few = [fmt(e) for e, k in zip(st.eps, st.n_labelled, strict=True) if 0 < k < MIN_LABELS]
    if few:
        out.append(f"Shares at eps {', '.join(few)} rest on fewer than {MIN_LABELS} labelled "
                   "images each: read them as rough.")
    if st.n_controls and st.n_controls < MIN_LABELS:
        out.append(f"The control accuracy rests on only {st.n_controls} labelled clean images.")
    return out + [line[:1].upper() + line[1:] + "." for line in st.summary(fmt)]


def human_section(st: HumanStudy, index: int, fmt) -> Section:
    """The "Human validation" section of one human study (figure ``human_<index>``)."""
    grid = np.array(st.eps, dtype=np.float64)
    plain = np.asarray(st.curve.robust_error(grid)) if grid.size else np.array([])
    valid = np.asarray(st.validated.robust_error(grid)) if grid.size else np.array([])
    rows = []
    for k, r in enumerate(st.table_rows(fmt)):
        share = r["share"]
        if 0 < st.n_labelled[k] < MIN_LABELS:
            share += " (too few labels)"
        rows.append((r["eps"], share, r["labelled"], r["images"], pct(plain[k]),
                     pct(valid[k])))
    cap = ("'Still seen as their class': share of the labelled adversarials stretched to that "
           "eps that people still give the original class (an image keeps it when more than "
           "half of its answers name it); control accuracy: the same for clean images. "
           "Human-validated robust error: a point counts as broken only when its minimal "
           "adversarial is still seen as its class; points whose minimal adversarial has no "
           f"label stay broken ({st.n_unlabelled} of {st.n_broken} broken points). Shares from "
           f"fewer than {MIN_LABELS} labelled images are marked 'too few labels'.")
    name, nm = st.curve.name, st.curve.norm_name
    return Section(f"Human validation: {name} ({NORM_TXT[nm]})", f"human-{index}",
                   ("eps", "still seen as their class", "labelled", "images",
                    "robust error (attack)", "robust error (human-validated)"),
                   tuple(rows), cap, notes=tuple(human_notes(st, fmt)),
                   figure=f"human_{index}")


def extra_summary(masking: Mapping[str, GradientMasking], human: Sequence[HumanStudy],
                  fmt, protocol: Sequence[ProtocolCheck] = ()) -> tuple[list[str], list[str]]:
    """Summary lines of the masking check, the fixed-eps protocol and human studies: (first,
    last): flagged models and curves go first, the rest after the comparison's findings.
    ``fmt(norm, eps)`` prints an eps."""
    first = [masking_words(m, r) for m, r in masking.items() if r.flagged]
    first += [protocol_words(ck, fmt) for ck in protocol if ck.higher]
    last = [masking_words(m, r) for m, r in masking.items() if not r.flagged]
    last += [protocol_words(ck, fmt) for ck in protocol if not ck.higher]
    for st in human:
        nm = st.curve.norm_name
        head = f"{st.curve.name} ({NORM_TXT[nm]}), human validation"
        if st.n_valid + st.n_changed < MIN_LABELS:
            last.append(f"{head}: too few labels to conclude ({st.n_valid + st.n_changed} "
                        f"labelled minimal adversarials, {st.n_labels} labels from "
                        f"{st.n_annotators} annotators).")
            continue
        share = st.minimal_kept_share
        text = (f"{head}: people still see the original class in {pct(share)} of the "
                f"{st.n_valid + st.n_changed} labelled minimal adversarials "
                f"({st.n_labels} labels from {st.n_annotators} annotators)")
        text += ("; most adversarials change class for people from eps "
                 f"{fmt(nm, st.changes_from)} on, so robust error beyond it partly counts "
                 "points that are no longer of their class." if st.changes_from is not None
                 else "; at no chosen eps do most labelled adversarials change class.")
        last.append(text)
    return first, last


def summary(rep_cmp: Mapping[str, Comparison], pointwise: Mapping[str, PointwiseTable],
            kinks: Sequence[Kink], ranks: Sequence[RankAgreement], fmt, level: float
            ) -> list[str]:
    """Plain-language findings, most important first; ``fmt(norm, eps)`` prints an eps."""
    out: list[str] = []
    lvl = f"{100 * level:g}%"
    for nm, cmp in rep_cmp.items():
        t = NORM_TXT[nm]
        tab = pointwise[nm]
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
                f"{tab.models[i]} has the lower robust error ({pct(tab.errors[r1, i])} vs "
                f"{pct(tab.errors[r1, j])} for {tab.models[j]}), at eps={fmt(nm, tab.eps[r2])} "
                f"{tab.models[j]} has ({pct(tab.errors[r2, j])} vs "
                f"{pct(tab.errors[r2, i])}); "
                + ("both differences are significant." if sig else
                   f"but not both differences are significant at {lvl}."))
        for p in cmp.pairs:
            sig_iv = [iv for iv in p.intervals if iv.significant]
            if not sig_iv:
                out.append(f"{t}: {p.a} vs {p.b}: no difference is significant at {lvl} "
                           f"(largest gap {pts(p.max_abs_diff)}, simultaneous band "
                           f"±{pts(p.band)}, p={p.p_value:.2g}).")
                continue
            wins = ", ".join(
                f"{iv.winner} on [{fmt(nm, iv.lo)}, {fmt(nm, iv.hi)}) (by up to "
                f"{pts(iv.max_diff)})" for iv in sig_iv)
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
            out.append(f"{k.model} ({NORM_TXT[k.norm_name]}): its curve has a kink at "
                       f"eps≈{fmt(k.norm_name, k.location)}, near its training eps "
                       f"{fmt(k.norm_name, k.train_eps)} (slope ×"
                       f"{k.slope_after / max(k.slope_before, 1e-12):.1f} across it): robust "
                       "error measured at or below the training eps overstates its robustness "
                       "beyond it.")
    for r in ranks:
        verdict = "holds" if r.holds else "does not hold"
        out.append(f"The ranking on {NORM_TXT[r.norm_a]} ({' > '.join(r.ranking_a)}) "
                   f"{verdict} on {NORM_TXT[r.norm_b]} ({' > '.join(r.ranking_b)}).")
    if not out:
        out.append("Nothing to compare: give curves of at least two models for one norm.")
    return out

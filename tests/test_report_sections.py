"""The report's optional sections: gradient-masking check (issue 15) and human validation
(issue 20), in the library (``build_report(masking=..., human=...)``) and on the command line
(``robcurves compare --masking-check N --masking FILE --human FILE``).

The masked model is the one of test_masking.py: a linear model behind an input quantisation
whose backward pass returns zeros. The human study is of a logistic regression on the embedded
digits with labels typed here (known answers), as in test_label.py.
"""

from __future__ import annotations

import math
import sys
import textwrap
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import linear_problem
from test_masking import OPTIONS, _Quantized

from robcurves import RobustnessCurve, distances, wrap
from robcurves import data as rdata
from robcurves.diagnostics import GradientMasking, gradient_masking
from robcurves.labels import CANNOT_TELL, prepare_session
from robcurves.report import build_report, format_eps, load_masking, save_masking
from robcurves.report.text import MIN_LABELS
from robcurves.studies.human import HumanStudy, human_study


# ------------------------------------------------------------------------------ page parsing
class _Sections(HTMLParser):
    """Per ``<section id=...>``: its notes (list items), table header and rows, caption, the
    class of each row and the ids of its images; the summary list of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self._sec: dict | None = None
        self._text: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._sec = {"notes": [], "head": [], "rows": [], "classes": [], "caption": "",
                         "images": []}
            self.sections[a["id"]] = self._sec
        elif tag == "tr":
            self._row = []
            self._cls = a.get("class") or ""
        elif tag == "img" and self._sec is not None:
            self._sec["images"].append(a.get("id"))
        elif tag in ("li", "td", "th", "p"):
            self._text = []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "tr":
            if self._row:
                self._sec["rows"].append(self._row)
                self._sec["classes"].append(self._cls)
            self._row = None
        elif tag in ("li", "td", "th", "p") and self._text is not None:
            text = "".join(self._text).strip()
            self._text = None
            if tag == "li":
                self._sec["notes"].append(text)
            elif tag == "th":
                self._sec["head"].append(text)
            elif tag == "td" and self._row is not None:
                self._row.append(text)
            elif tag == "p":
                self._sec["caption"] = text
        elif tag == "section":
            self._sec = None


def _sections(html: str) -> dict[str, dict]:
    p = _Sections()
    p.feed(html)
    return p.sections


def _md_table(md: str, title: str) -> list[list[str]]:
    """The rows of the markdown table under ``## title``."""
    part = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in part.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[1:]]


# ------------------------------------------------------------------------------ masking
@pytest.fixture(scope="module")
def checks():
    """Masking checks of the masked model and of the same model without masking."""
    lin, x, y = linear_problem(dim=10, classes=3, n=24, seed=5)
    masked = gradient_masking(_Quantized(lin).eval(), x, y, "l2", options=OPTIONS, n_boot=200)
    clean = gradient_masking(lin, x, y, "l2", options=OPTIONS, n_boot=200)
    return {"masked": masked, "clean": clean}


def _masking_curves(checks):
    return [RobustnessCurve.from_distances(r.gradient, name=m) for m, r in checks.items()]


def test_masking_section_reports_the_flagged_model_as_flagged(checks, tmp_path):
    rep = build_report(_masking_curves(checks), masking=checks, n_boot=50)
    rep.write(tmp_path)
    sec = _sections((tmp_path / "report.html").read_text())["masking"]
    rows = {r[0]: r for r in sec["rows"]}
    assert set(rows) == {"masked", "clean"}
    for model, res in checks.items():
        r = rows[model]
        # the numbers are the check's, counted again from its per-point distances
        n_smaller = int(np.sum(res.decision.distances < 0.9 * res.gradient.distances))
        assert n_smaller == res.n_smaller
        assert r[1:5] == ["l2", str(res.n), "hsja, boundary",
                          f"{n_smaller} of {res.n} ({100 * n_smaller / res.n:.1f}%)"]
        assert r[5] == ("–" if math.isnan(res.median_ratio) else f"{res.median_ratio:.3f}")
        assert r[6] == f"{res.p_value:.3g}"
    # the masked model: flagged, highlighted, first in the summary, said in words
    assert checks["masked"].flagged and not checks["clean"].flagged
    assert rows["masked"][-1] == "FLAGGED" and rows["masked"][-2].startswith("yes")
    assert rows["clean"][-1] == "no" and rows["clean"][-2] == "no"
    cls = dict(zip([r[0] for r in sec["rows"]], sec["classes"], strict=True))
    assert cls == {"masked": "flag", "clean": ""}
    assert rep.summary[0].startswith("masked (l2): suspect gradient masking")
    assert "24 of 24 points" in rep.summary[0] and "overstates its robustness" in rep.summary[0]
    clean_line = next(s for s in rep.summary if s.startswith("clean (l2)"))
    assert "no sign of gradient masking" in clean_line
    assert sec["notes"] == [s for s in rep.summary if s.startswith(("masked (l2)", "clean (l2)"))]
    assert sec["head"][4] == "distance >10% smaller"
    # the markdown table holds the same rows
    assert _md_table((tmp_path / "report.md").read_text(),
                     "Diagnostics: gradient masking check") == sec["rows"]


def test_a_masking_check_survives_a_json_round_trip(checks, tmp_path):
    name, back = load_masking(save_masking(tmp_path / "m.json", "masked", checks["masked"]))
    res = checks["masked"]
    assert name == "masked"
    for f in ("norm", "n", "decision_attacks", "n_smaller", "fraction_smaller", "p_value",
              "significant", "flagged", "reasons", "ratio", "fraction", "level"):
        assert getattr(back, f) == getattr(res, f), f
    assert math.isnan(back.median_ratio) == math.isnan(res.median_ratio)
    for part in ("gradient", "decision"):
        a, b = getattr(back, part), getattr(res, part)
        np.testing.assert_array_equal(a.distances, b.distances)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.method == b.method
    with pytest.raises(ValueError, match="is not a gradient-masking result"):
        GradientMasking.from_dict({"format": "robcurves-curve"}, "x.json")


def test_masking_of_a_model_without_curve_is_refused(checks):
    curves = _masking_curves(checks)
    with pytest.raises(ValueError, match=r"masking check of model 'other', which has no curve "
                                         r"in the report \(models: 'masked', 'clean'\)"):
        build_report(curves, masking={"other": checks["masked"]})
    with pytest.raises(TypeError, match="must be a GradientMasking"):
        build_report(curves, masking={"masked": 0.5})


# ------------------------------------------------------------------------------ human study
@pytest.fixture(scope="module")
def digits_lr():
    from sklearn.linear_model import LogisticRegression

    ds = rdata.load("digits")
    lr = LogisticRegression(max_iter=300).fit(ds.x[200:].reshape(-1, 64), ds.y[200:])
    return wrap(lr), ds


@pytest.fixture(scope="module")
def human(digits_lr, tmp_path_factory):
    """A session of 40 points (eps 0.1 and 0.2) and labels from three people: the typed
    answers (image -> answer) decide each image by majority."""
    model, ds = digits_lr
    curve = RobustnessCurve.from_distances(distances(model, ds.x[:40], ds.y[:40], "inf"),
                                           name="linear")
    s = prepare_session(tmp_path_factory.mktemp("session"), curve, model, ds, eps=(0.1, 0.2))
    rng = np.random.default_rng(3)
    ids = sorted(s.items)
    typed = {i: (s.items[i]["label"] if rng.random() < 0.6 else CANNOT_TELL) for i in ids}
    rows = [{"annotator": f"person {k % 3}", "image": i, "answer": a, "response_ms": 1,
             "created": ""} for k, (i, a) in enumerate(typed.items())]
    return s, curve, typed, rows


def _validated_error(s, curve, typed, eps: float) -> float:
    """Robust error counting only points whose minimal adversarial (or clean image, d = 0)
    people still see as their class, or that nobody labelled; the plain way."""
    broken = 0
    for d, idx in zip(curve.distances, curve.indices, strict=True):
        if not d <= eps:
            continue
        kind = "clean" if d == 0 else "minimal"
        (iid,) = [i for i, it in s.items.items() if it["kind"] == kind and it["point"] == idx]
        broken += iid not in typed or typed[iid] == s.items[iid]["label"]
    return broken / curve.n


def test_human_section_shows_the_study(human, tmp_path):
    s, curve, typed, rows = human
    st = human_study(rows, s)
    other = RobustnessCurve(curve.distances * 1.3, "linf", name="other", indices=curve.indices)
    rep = build_report([curve, other], human=[st], n_boot=50)
    paths = rep.write(tmp_path)
    page = _sections(paths["html"].read_text())
    sec = page["human-0"]
    assert sec["images"] == ["fig-human_0"] and (tmp_path / "figures" / "human_0.png").is_file()
    assert page["figures"]["images"] == ["fig-curves", "fig-diff_linf"]  # not shown twice
    assert len(sec["rows"]) == 2
    for k, (e, r) in enumerate(zip(s.eps, sec["rows"], strict=True)):
        got = [typed[i] == it["label"] for i, it in s.items.items()
               if it["kind"] == "eps" and it["eps"] == e]
        assert r[0] == format_eps(e)
        assert r[1] == f"{100 * sum(got) / len(got):.0f}%"
        assert r[2:4] == [str(len(got)), str(st.n_images[k])]
        assert r[4] == f"{100 * float(curve.robust_error(e)):.1f}%"
        assert r[5] == f"{100 * _validated_error(s, curve, typed, e):.1f}%"
        assert float(r[5][:-1]) <= float(r[4][:-1])  # validation only removes breaks
    assert sec["notes"][0] == f"{len(rows)} labels from 3 annotators."
    clean = [typed[i] == it["label"] for i, it in s.items.items() if it["kind"] == "clean"]
    assert f"Control accuracy of people on clean images: {100 * np.mean(clean):.0f}% " \
           f"({len(clean)} labelled)." in sec["notes"]
    cross = ("Most adversarials change class for people from eps "
             f"{format_eps(st.changes_from)} on." if st.changes_from is not None else
             "At no chosen eps do most labelled adversarials change class for people.")
    assert cross in sec["notes"]
    assert not any("too few" in n.lower() for n in sec["notes"])
    assert any(line.startswith("linear (l∞), human validation: people still see") for line
               in rep.summary)
    md = paths["markdown"].read_text()
    assert _md_table(md, "Human validation: linear (l∞)") == sec["rows"]
    assert "![attack curve and human-validated curve" in md and "figures/human_0.png" in md


def test_too_few_labels_are_said_plainly(human):
    s, curve, typed, rows = human
    none = build_report([curve], human=human_study([], s), n_boot=20)
    sec = none.sections()[-1]
    assert sec.notes[0].startswith("No labels yet")
    assert [r[1] for r in sec.rows] == ["–", "–"]
    # human-validated = attack curve without labels
    assert [r[4] for r in sec.rows] == [r[5] for r in sec.rows]
    few = human_study(rows[:6], s)  # at most 6 labelled images: too few everywhere
    sec = build_report([curve], human=few, n_boot=20).sections()[-1]
    assert sec.notes[0].startswith("Too few labels to conclude anything: only "
                                   f"{few.n_valid + few.n_changed} of the {few.n_broken} broken")
    for r, k in zip(sec.rows, few.n_labelled, strict=True):
        assert r[1].endswith("(too few labels)") == (0 < k < MIN_LABELS)


def test_a_human_study_of_another_curve_is_refused(human):
    s, curve, typed, rows = human
    st = human_study(rows, s)
    other = RobustnessCurve(curve.distances * 1.3, "linf", name="other", indices=curve.indices)
    with pytest.raises(ValueError, match=r"the human study is of curve 'linear' \(linf, 40 "
                                         r"points\), which is not one of the report's curves: "
                                         r"the report's curves are 'other' \(linf, 40 points\)"):
        build_report([other], human=st)
    shifted = RobustnessCurve(curve.distances * 1.01, "linf", name="linear",
                              indices=curve.indices)
    with pytest.raises(ValueError, match=r"the report's curve 'linear' \(linf, 40 points\) has "
                                         "other points or distances"):
        build_report([shifted, other], human=st)
    l2 = RobustnessCurve(curve.distances, "l2", name="linear", indices=curve.indices)
    with pytest.raises(ValueError, match=r"curves are 'linear' \(l2, 40 points\)"):
        build_report([l2], human=st)
    with pytest.raises(TypeError, match="human= takes HumanStudy results"):
        build_report([curve], human=[curve])


def test_a_human_study_survives_its_json_file(human, tmp_path):
    s, curve, typed, rows = human
    st = human_study(rows, s)
    back = HumanStudy.load(st.write(tmp_path)["json"])
    np.testing.assert_array_equal(back.validated.distances, st.validated.distances)
    np.testing.assert_array_equal(back.curve.distances, st.curve.distances)
    for f in ("eps", "kept_share", "n_labelled", "n_images", "control_accuracy", "n_controls",
              "n_valid", "n_changed", "n_unlabelled", "changes_from", "n_labels",
              "n_annotators"):
        assert getattr(back, f) == getattr(st, f), f
    assert back.n_labels == len(rows) and back.n_annotators == 3


# ------------------------------------------------------------------------------ command line
FACTORY = """
import torch
from sklearn.linear_model import LogisticRegression

from robcurves import data


class _ZeroGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 255) / 255

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g)


def clean():
    ds = data.load("digits")
    lr = LogisticRegression(max_iter=300).fit(ds.x[200:].reshape(-1, 64), ds.y[200:])
    lin = torch.nn.Linear(64, 10)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(lr.coef_, dtype=torch.float32))
        lin.bias.copy_(torch.tensor(lr.intercept_, dtype=torch.float32))
    return torch.nn.Sequential(torch.nn.Flatten(), lin).eval()


class _Masked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = clean()

    def forward(self, x):
        return self.inner(_ZeroGrad.apply(x))


def masked():
    return _Masked().eval()
"""


def test_cli_masking_check_and_human_study_end_to_end(tmp_path, monkeypatch, capsys):
    from robcurves.cli import main

    (tmp_path / "masking_models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("clean", "masked"):
        assert main(["curve", "--model", f"masking_models:{name}", "--data", "digits",
                     "--n", "12", "--norms", "l2", "--name", name, "--out", name,
                     "--no-progress"]) == 0
    files = ["clean/curve-l2.json", "masked/curve-l2.json"]
    # a human study of the clean model's curve, labels typed here
    sys.modules.pop("masking_models", None)
    import masking_models

    clean_curve = RobustnessCurve.load(files[0])
    s = prepare_session(tmp_path / "session", clean_curve, wrap(masking_models.clean()),
                        rdata.load("digits"), eps=(0.5,))
    rows = [{"annotator": "a", "image": i, "answer": it["label"], "response_ms": 1,
             "created": ""} for i, it in s.items.items()]
    human_study(rows, s).write(tmp_path / "human")
    capsys.readouterr()
    assert main(["compare", *files, "--out", "rep", "--n-boot", "50", "--masking-check", "8",
                 "--masking-budget", "1000", "--human", "human/human.json"]) == 0
    printed = capsys.readouterr().out
    assert "masking check of masked (l2, 8 points" in printed and "FLAGGED" in printed
    assert "masking check of clean (l2, 8 points" in printed and "not flagged" in printed
    secs = _sections((tmp_path / "rep" / "report.html").read_text())
    rows_m = {r[0]: r for r in secs["masking"]["rows"]}
    assert rows_m["masked"][-1] == "FLAGGED" and rows_m["clean"][-1] == "no"
    assert rows_m["masked"][2] == "8"
    # every answer was the true class; 12 images are too few to conclude
    assert secs["human-0"]["rows"][0][1] == "100% (too few labels)"
    # the saved checks are what the report shows, and read back with --masking
    name, saved = load_masking(tmp_path / "rep" / "masking-masked.json")
    assert name == "masked" and saved.flagged and saved.n == 8
    assert main(["compare", *files, "--out", "rep2", "--n-boot", "50", "--masking",
                 "rep/masking-masked.json", "--masking", "rep/masking-clean.json"]) == 0
    again = {r[0]: r for r in _sections((tmp_path / "rep2" / "report.html").read_text())[
        "masking"]["rows"]}
    assert again == rows_m
    # refusals, each before any work
    capsys.readouterr()
    assert main(["compare", files[1], "--out", "bad", "--human", "human/human.json"]) == 2
    err = capsys.readouterr().err
    assert "the human study is of curve 'clean' (l2, 12 points)" in err and "'masked'" in err
    assert main(["compare", *files, "--out", "bad", "--masking-check", "0"]) == 2
    assert "--masking-check takes a number of points from 1 to 200; got 0" in \
        capsys.readouterr().err
    assert main(["compare", *files, "--out", "bad", "--masking-budget", "100"]) == 2
    assert "--masking-budget is the budget of --masking-check" in capsys.readouterr().err
    assert main(["compare", *files, "--out", "bad", "--masking", "rep/masking-masked.json",
                 "--masking-check", "5"]) == 2
    assert "model 'masked' has a check given with --masking" in capsys.readouterr().err
    bare = RobustnessCurve(clean_curve.distances, "l2", name="bare",
                           indices=clean_curve.indices).save(tmp_path / "bare.json")
    assert main(["compare", str(bare), "--out", "bad", "--masking-check", "5"]) == 2
    assert "does not name its model and data" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

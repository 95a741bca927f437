"""The report's fixed-eps protocol section (issue 19): per model and eps, the curve's robust
accuracy next to the AutoAttack protocol's on the same points, which attack broke how many
points, and a flag where the curve's is higher; in the library (``build_report(protocol=...)``)
and on the command line (``robcurves compare --autoattack NORM:EPS`` / ``--autoattack-result
FILE``, the JSON ``robcurves eval --out`` writes).

The model is the small ReLU network of test_protocol.py; its honest curve comes from the default
attack. The planted curve is that curve with every positive distance tripled: an attack that
missed the adversarials within eps, so its robust accuracy is too high and must be flagged.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from test_protocol import _mlp
from test_report_sections import _md_table, _sections

import robcurves
from robcurves import RobustnessCurve, wrap
from robcurves.report import build_report, load_protocol, protocol_check, save_protocol
from robcurves.report.text import pct

N_QUERIES = 300


@pytest.fixture(scope="module")
def problem():
    """The model, its points, its honest linf curve and the protocol at the curve's median."""
    net, x, y = _mlp(n=30)
    clf = wrap(net)
    d = robcurves.distances(clf, x, y, math.inf)
    curve = RobustnessCurve.from_distances(d, name="mlp")
    # an eps in the widest relative gap between two distances near the median: a minimal-norm
    # attack is tight only up to a fraction of a percent, so right next to a distance the
    # protocol may break a point the curve places a hair beyond eps (measured: 0.02% at the
    # median here), which the section would rightly flag
    s = np.sort(curve.distances[curve.distances > 0])
    k = len(s) // 2
    i = max(range(k - 5, k + 5), key=lambda j: s[j + 1] / s[j])
    eps = float(np.sqrt(s[i] * s[i + 1]))
    r = robcurves.robust_accuracy(clf, x, y, "linf", eps, n_queries=N_QUERIES)
    return {"clf": clf, "x": x, "y": y, "curve": curve, "eps": eps, "result": r}


def _inflated(curve: RobustnessCurve, name: str = "mlp") -> RobustnessCurve:
    """The curve with every positive distance tripled (misclassified points stay at 0)."""
    return RobustnessCurve(curve.distances * 3, curve.norm, name=name, indices=curve.indices,
                           labels=curve.labels, predictions=curve.predictions)


def _attack_broken(r) -> np.ndarray:
    return ~r.robust & (r.broken_by != "clean")


def test_section_shows_curve_and_protocol_on_the_same_points(problem, tmp_path):
    curve, r, eps = problem["curve"], problem["result"], problem["eps"]
    assert 0 < r.accuracy < r.clean_accuracy  # an eps that is neither trivial nor hopeless
    rep = build_report([curve], protocol={"mlp": r})
    (ck,) = rep.protocol
    # independent of the report's code: the curve's accuracy counted from its distances
    acc = float((curve.distances > eps).mean())
    assert ck.curve_accuracy == acc
    # the honest curve is not above the protocol (the property)
    assert not ck.higher and acc <= r.accuracy
    assert ck.missed == int((_attack_broken(r) & (curve.distances > eps)).sum())
    secs = _sections(rep.to_html(png={}))
    sec = secs["protocol"]
    (row,) = sec["rows"]
    cell = dict(zip(sec["head"], row, strict=True))
    assert cell["model"] == "mlp" and cell["norm"] == "l∞" and cell["points"] == "30"
    assert cell["robust accuracy (curve)"] == pct(acc)
    assert cell["robust accuracy (protocol)"] == pct(r.accuracy)
    assert cell["curve minus protocol"] == f"{100 * (acc - r.accuracy):+.1f} pts"
    # the attack that broke each point: the counts add up to the points and match broken_by
    broken = dict(kv.rsplit(" ", 1) for kv in cell["protocol: broken by"].split("; ")[0]
                  .split(", "))
    assert {k: int(v) for k, v in broken.items()} == {
        k: int((r.broken_by == ("" if k == "robust" else k)).sum()) for k in broken}
    assert sum(int(v) for v in broken.values()) == 30
    assert cell["curve higher"] == "no" and sec["classes"] == [""]
    assert any("the curve is not higher" in note for note in sec["notes"])
    md = _md_table(rep.to_markdown(), rep.sections()[-1].title)
    assert md == [row]


def test_a_too_optimistic_curve_is_flagged(problem):
    curve, r, eps = problem["curve"], problem["result"], problem["eps"]
    # the fewest points the protocol broke pushed beyond eps on the curve (their distances
    # inflated, as by an attack that missed them) for the curve to be higher: one point more
    broken = np.flatnonzero(_attack_broken(r) & (curve.distances <= eps))
    k = round((r.accuracy - curve.robust_accuracy(eps)) * curve.n) + 1
    assert 0 < k <= broken.size
    d = curve.distances.copy()
    d[broken[:k]] *= 1.5 * eps / d[broken[:k]]
    planted = RobustnessCurve(d, curve.norm, name="planted", indices=curve.indices,
                              labels=curve.labels, predictions=curve.predictions)
    inflated = _inflated(curve, "inflated")
    rep = build_report([curve, planted, inflated],
                       protocol={"mlp": r, "planted": [r], "inflated": r}, n_boot=50)
    checks = {ck.model: ck for ck in rep.protocol}
    acc = float((planted.distances > eps).mean())
    assert acc == r.accuracy + 1 / curve.n  # one point above the protocol: flagged
    assert checks["planted"].higher and checks["inflated"].higher and not checks["mlp"].higher
    missed = int((_attack_broken(r) & (curve.distances > eps)).sum()) + k
    assert checks["planted"].missed == missed
    sec = _sections(rep.to_html(png={}))["protocol"]
    rows = {row[0]: (row, cls) for row, cls in zip(sec["rows"], sec["classes"], strict=True)}
    for name in ("planted", "inflated"):
        assert rows[name][0][-1] == "FLAGGED" and rows[name][1] == "flag"
    assert rows["mlp"][0][-1] == "no" and rows["mlp"][1] == ""
    assert rows["planted"][0][5:8] == [pct(acc), pct(r.accuracy),
                                       f"{100 * (acc - r.accuracy):+.1f} pts"]
    assert rows["planted"][0][9] == str(missed)
    # said first in the summary, with the number of points the curve missed
    first = {line.split(" (", 1)[0]: line for line in rep.summary[:2]}
    assert set(first) == {"planted", "inflated"}
    assert "HIGHER" in first["planted"] and f"broke {missed} point(s)" in first["planted"]


def test_results_on_other_points_are_refused(problem):
    clf, x, y = problem["clf"], problem["x"], problem["y"]
    curve, r, eps = problem["curve"], problem["result"], problem["eps"]
    fewer = robcurves.robust_accuracy(clf, x[:20], y[:20], "linf", eps, attacks=["apgd-ce"])
    with pytest.raises(ValueError, match=r"not on the points of its curve 'mlp' \(linf, 30 "
                                         r"points\): it has 20 points, the curve 30"):
        build_report([curve], protocol={"mlp": fewer})
    # 30 other points of the same model: its clean predictions differ
    net, x2, y2 = _mlp(n=60)
    other = robcurves.robust_accuracy(clf, x2[30:], y2[30:], "linf", eps, attacks=["apgd-ce"])
    with pytest.raises(ValueError, match=r"the labels differ on \d+ of 30 points"):
        build_report([curve], protocol={"mlp": other})
    # without labels and predictions, the misclassified points still tell
    bare = dataclasses.replace(r, labels=None, predictions=None,
                               broken_by=np.where(r.broken_by == "clean", "apgd-ce", "clean"))
    with pytest.raises(ValueError, match="the misclassified points differ on 30 of 30 points"):
        build_report([curve], protocol={"mlp": bare})
    recorded = dataclasses.replace(r, metadata={"data": {"points_fingerprint": "abc"}})
    marked = RobustnessCurve(curve.distances, curve.norm, name="mlp",
                             metadata={"data": {"points_fingerprint": "def"}})
    with pytest.raises(ValueError, match="its data points_fingerprint is 'abc', the curve's 'def'"):
        build_report([marked], protocol={"mlp": recorded})
    with pytest.raises(ValueError, match=r"model 'other' \(linf, eps [\d.e-]+\) has no curve of "
                                         r"that model and norm in the report \(its curves: none"):
        build_report([curve], protocol={"other": r})
    l2 = robcurves.robust_accuracy(clf, x, y, "l2", 0.5, attacks=["apgd-ce"])
    with pytest.raises(ValueError, match=r"its curves: 'mlp' \(linf, 30 points\)"):
        build_report([curve], protocol={"mlp": l2})
    with pytest.raises(ValueError, match="is given twice"):
        build_report([curve], protocol={"mlp": [r, r]})
    with pytest.raises(TypeError, match="RobustAccuracy results"):
        build_report([curve], protocol={"mlp": [0.5]})
    assert protocol_check("mlp", curve, r).curve_accuracy == curve.robust_accuracy(eps)


def test_a_result_survives_its_json_file(problem, tmp_path):
    r = problem["result"]
    path = save_protocol(tmp_path / "r.json", "mlp", r)
    name, back = load_protocol(path)
    assert name == "mlp"
    for f in dataclasses.fields(r):
        a, b = getattr(r, f.name), getattr(back, f.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, f.name
    obj = json.loads(path.read_text())
    obj["accuracy"] = 1.0
    (tmp_path / "bad.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="accuracy 1.0 is not the share of robust points"):
        load_protocol(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"accuracy": 0.5, "counts": {}}))
    with pytest.raises(ValueError, match="is not a saved robust accuracy"):
        load_protocol(tmp_path / "old.json")


# ------------------------------------------------------------------------------ command line


def test_cli_autoattack_and_saved_results_end_to_end(digits_mlp_file, tmp_path, monkeypatch,
                                                     capsys):
    from robcurves.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["curve", "--model", str(digits_mlp_file), "--data", "digits", "--n", "16",
                 "--norms", "linf", "--out", "m", "--no-progress"]) == 0
    curve_file = "m/curve-linf.json"
    curve = RobustnessCurve.load(curve_file)
    eps = float(np.median(curve.distances))
    eps_txt = f"{eps:.6g}"
    capsys.readouterr()
    assert main(["compare", curve_file, "--out", "rep", "--autoattack", f"linf:{eps_txt}",
                 "--autoattack-queries", "100"]) == 0
    assert f"autoattack of mlp (linf, eps {eps_txt}, 16 points" in capsys.readouterr().out
    saved = tmp_path / "rep" / f"autoattack-mlp-linf-{eps_txt}.json"
    name, r = load_protocol(saved)
    assert name == "mlp" and r.n == 16 and r.eps == float(eps_txt)
    assert r.metadata["data"]["points_fingerprint"] == curve.metadata["data"][
        "points_fingerprint"]
    # the protocol run here independently gives the same result
    ds = robcurves.data.load("digits")
    lib = robcurves.robust_accuracy(robcurves.load_model(digits_mlp_file), ds.x[:16], ds.y[:16],
                                    "linf", float(eps_txt), n_queries=100)
    assert np.array_equal(lib.broken_by, r.broken_by)
    sec = _sections((tmp_path / "rep" / "report.html").read_text())["protocol"]
    (row,) = sec["rows"]
    assert row[5] == pct(curve.robust_accuracy(float(eps_txt))) and row[6] == pct(lib.accuracy)
    # the saved result, and the one `robcurves eval --out` writes, give the same row
    assert main(["compare", curve_file, "--out", "rep2", "--autoattack-result", str(saved)]) == 0
    assert _sections((tmp_path / "rep2" / "report.html").read_text())["protocol"]["rows"] == [row]
    assert main(["eval", "--model", str(digits_mlp_file), "--data", "digits", "--norm", "linf",
                 "--eps", eps_txt, "--n", "16", "--n-queries", "100", "--curve", curve_file,
                 "--out", "ev.json"]) == 0
    assert main(["compare", curve_file, "--out", "rep3", "--autoattack-result", "ev.json"]) == 0
    assert _sections((tmp_path / "rep3" / "report.html").read_text())["protocol"]["rows"] == [row]
    # refusals, each before any work
    assert main(["eval", "--model", str(digits_mlp_file), "--data", "digits", "--norm", "linf",
                 "--eps", eps_txt, "--n", "8", "--n-queries", "20", "--out", "ev8.json"]) == 0
    capsys.readouterr()
    assert main(["compare", curve_file, "--out", "bad", "--autoattack-result", "ev8.json"]) == 2
    assert "it has 8 points, the curve 16" in capsys.readouterr().err
    assert main(["compare", curve_file, "--out", "bad", "--autoattack", "l1:0.5"]) == 2
    assert "the protocol's attacks cover linf and l2; got l1" in capsys.readouterr().err
    assert main(["compare", curve_file, "--out", "bad", "--autoattack", "0.1"]) == 2
    assert "--autoattack takes NORM:EPS[,EPS...]" in capsys.readouterr().err
    assert main(["compare", curve_file, "--out", "bad", "--autoattack-queries", "10"]) == 2
    assert "--autoattack-queries is the budget of --autoattack" in capsys.readouterr().err
    assert main(["compare", curve_file, "--out", "bad", "--autoattack", "l2:0.5"]) == 2
    assert "--autoattack l2: no curve in l2" in capsys.readouterr().err
    assert main(["compare", curve_file, "--out", "bad", "--autoattack", f"linf:{eps_txt}",
                 "--autoattack-result", str(saved)]) == 2
    assert "given with --autoattack-result and would be run again" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

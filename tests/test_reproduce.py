"""``robcurves reproduce`` (issue 14.2): the paper's experiment end to end on a tiny setting,
resuming, refusing bad input before any work, and captions that state the computed numbers."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from robcurves.cli import main
from robcurves.comparison import compare
from robcurves.curve import RobustnessCurve
from robcurves.studies import reproduce as R

TINY = ["--quick", "--epochs", "1", "--methods", "standard,pgd-at", "--robust-method", "pgd-at",
        "--points", "24", "--train-points", "300", "--interclass-points", "200"]


def _write_idx(path: Path, arr: np.ndarray) -> None:
    head = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.astype(np.uint8).tobytes())


def _copy(src: Path, dst: Path, parts: dict[str, int]) -> None:
    """The first points of each IDX part of ``src`` in ``dst``, same names and format."""
    from robcurves.data import load

    dst.mkdir(parents=True)
    for part, n in parts.items():
        ds = load(src, split=part)
        prefix = "t10k" if part == "test" else "train"
        x = np.round(ds.x[:n, 0] * 255)
        _write_idx(dst / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx(dst / f"{prefix}-labels-idx1-ubyte.gz", ds.y[:n])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _copy(shared_data("fashion-mnist"), root / "fashion-mnist", {"train": 600, "test": 200})
    _copy(shared_data("mnist"), root / "mnist", {"test": 400})  # no train split: hold-out rule
    return root


@pytest.fixture(scope="module")
def done(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["reproduce", "--out", str(out), "--data-dir", str(data_dir), *TINY]) == 0
    return out


def test_writes_the_page_with_every_section(done: Path) -> None:
    md = (done / "reproduce.md").read_text()
    html = (done / "reproduce.html").read_text()
    for title in ("Fig. 2 and Table 1", "Theorem 1", "Example 1", "Theorem 2",
                  "Fig. 5 and Table 2", "Fig. 7", "Fig. 3", "Fig. 4", "Fig. 8"):
        assert f"## {title}" in md and f"<h2>{title}" in html
    assert md.count("**The paper reports:**") == md.count("**This run measured:**") == 9
    # the data sets that are not there are named on the page, the ones that are have rows
    assert "Not found here, so not measured: GTSRB, CIFAR-10, Tiny-ImageNet, UCI HAR" in md
    assert "| Fashion-MNIST | 200 |" in md and "| MNIST | 200 |" in md
    assert "needs a wrn-28-10 checkpoint" in md
    # splits stated: Fashion-MNIST's own, MNIST by the hold-out rule (test set only here)
    assert "Fashion-MNIST: 300 training points (seeded subset of 600) from its own training" in md
    assert "MNIST: 300 training points (seeded subset of 320) from the seeded hold-out rule" in md
    # figures embedded in the page, one per norm and method in the gallery
    assert html.count("data:image/png;base64,") == 4 + 4
    assert sorted(p.name for p in (done / "models").iterdir()) == [
        "fmnist-pgd-at-l2.rcm", "fmnist-pgd-at-linf.rcm", "fmnist-standard-linf.rcm",
        "mnist-pgd-at-linf.rcm"]


def test_captions_state_the_computed_numbers(done: Path) -> None:
    md = (done / "reproduce.md").read_text()
    curves = {p.stem: RobustnessCurve.load(p) for p in (done / "curves").glob("*.json")}
    for nm, eps in (("linf", 0.1), ("l2", 1.0)):
        st, at = curves[f"fmnist-standard-linf@{nm}"], curves[f"fmnist-pgd-at-linf@{nm}"]
        want = (f"robust error at eps = {eps:.3g}: ST {100 * st.robust_error(eps):.1f}%, "
                f"AT {100 * at.robust_error(eps):.1f}%.")
        assert want in md
        cmp = compare([st, at], n_boot=R.QUICK["n_boot"], seed=0)
        assert (f"{nm}: {len(cmp.crossings)} crossing(s) between pairs of curves, "
                f"{sum(c.significant for c in cmp.crossings)} significant at 95%") in md
        # Table 1's cells are the curves' robust errors at the table's eps
        for e in R.TABLE_EPS[nm]:
            row = f"| {e:.3g} | {100 * st.robust_error(e):.1f}% "
            assert row in md, row
    # Fig. 4: the mean robust errors are the curves' normalized areas
    a = curves["fmnist-pgd-at-linf@l2"].auc(2.0, normalized=True)
    b = curves["fmnist-pgd-at-l2@l2"].auc(2.0, normalized=True)
    assert f"in l2, mean robust error on [0, 2]: l_inf-trained {a:.3f}, l2-trained {b:.3f}" in md
    # Fig. 4's table: fit_scale of the saved l_inf and l2 curves of each l_inf model
    from robcurves.diagnostics import fit_scale

    for key, label in (("fmnist", "Fashion-MNIST"), ("mnist", "MNIST")):
        row = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |") and "%" in ln)
        try:
            f = fit_scale(curves[f"{key}-pgd-at-linf@linf"], curves[f"{key}-pgd-at-linf@l2"])
        except ValueError:  # a tiny model may misclassify every point
            assert "| none (no point with finite positive distances" in row
        else:
            assert row.endswith(f"| {f.factor:.3g} | {f.misfit:.3f} |"), row
    # Fig. 5 / Table 2: min and max of the saved inter-class distances
    d = np.load(done / "interclass" / "fmnist@l2.npy")
    line = next(ln for ln in md.splitlines() if ln.startswith("| Fashion-MNIST | 200 |"))
    assert line.split(" | ")[-3:] == [f"{d.min():.3g}", f"{np.median(d):.3g}",
                                      f"{d.max():.3g} |"]
    # next to the authors' Table 2: their printed values, this run's min / max per norm
    d_inf = np.load(done / "interclass" / "fmnist@linf.npy")
    assert (f"| Fashion-MNIST | 0.36 / 1.00 | {d_inf.min():.2f} / {d_inf.max():.2f} | "
            f"2.00 / 10.70 | {d.min():.2f} / {d.max():.2f} |") in md
    m_inf, m_2 = (np.load(done / "interclass" / f"mnist@{nm}.npy") for nm in ("linf", "l2"))
    order = "MNIST, Fashion-MNIST" if m_2.min() < d.min() else "Fashion-MNIST, MNIST"
    same = "the same as" if order == "Fashion-MNIST, MNIST" else "NOT the same as"
    assert f"smallest l2 inter-class distance: {order} ({same} in the authors' Table 2)" in md
    res = json.loads((done / "results.json").read_text())
    assert res["theory"] == {"theorem1_agrees": True, "example1_agrees": True,
                             "theorem2_holds": True, "theorem2_box_holds": False}
    # kink verdicts on the page are detect_kink's on the saved curves
    from robcurves.diagnostics import detect_kink

    k = detect_kink(curves["mnist-pgd-at-linf@linf"], 0.1)
    assert ("MNIST: FIRES" if k.detected else "MNIST: does not fire") in md
    assert res["fig3"]["mnist"]["fired"] is k.detected
    fired = k.detected + detect_kink(curves["fmnist-pgd-at-linf@linf"], 0.1).detected
    assert f"it fires on {fired} of the 2 of them found here." in md
    # Fig. 4's verdict against the paper's finding follows the two areas compared above
    wins = [nm for nm in ("linf", "l2") if res["fig4"][nm]["better"] == "linf-trained"]
    assert ("better in both norms): yes." in md) is (len(wins) == 2)
    a_linf = curves["fmnist-pgd-at-linf@linf"].auc(0.2, normalized=True)
    b_linf = curves["fmnist-pgd-at-l2@linf"].auc(0.2, normalized=True)
    assert ("linf" in wins) is (a_linf < b_linf) and ("l2" in wins) is (a < b)


def test_every_computed_stage_is_timed(done: Path) -> None:
    t = json.loads((done / "timings.json").read_text())
    models = {p.stem for p in (done / "models").glob("*.rcm")}
    curves = {p.stem for p in (done / "curves").glob("*.json")}
    assert {k.removeprefix("train ") for k, v in t.items() if v["kind"] == "train"} == models
    assert {k.removeprefix("curve ") for k, v in t.items() if v["kind"] == "curve"} == curves
    assert sum(v["kind"] == "interclass" for v in t.values()) == 4
    assert all(v["wall"] > 0 and v["cpu"] >= 0 for v in t.values())
    # training a model costs CPU time (a clock that missed the work would read 0)
    assert all(v["cpu"] > 0 for v in t.values() if v["kind"] == "train")
    md = (done / "reproduce.md").read_text()
    wall, cpu = sum(v["wall"] for v in t.values()), sum(v["cpu"] for v in t.values())
    assert f"| all stages | {len(t)} | {wall:.0f} | {cpu:.0f} |" in md
    assert "its numbers are NOT those of the paper's setting" in md


def test_rerun_recomputes_nothing(done: Path, data_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(R, "_train", lambda *a, **k: calls.append("fit"))
    monkeypatch.setattr(R, "_distances", lambda *a, **k: calls.append("distances"))
    monkeypatch.setattr("robcurves.scale.interclass_distances",
                        lambda *a, **k: calls.append("interclass"))
    monkeypatch.setattr("robcurves.report.gallery.save_gallery",
                        lambda *a, **k: calls.append("gallery"))
    # models, curves, inter-class distances and galleries (the cheap plots are redrawn)
    files = [p for p in done.rglob("*") if p.is_file() and p.parent != done
             and (p.parent.name != "plots" or p.name.startswith("fig7-"))]
    assert len(files) == 4 + 8 + 4 + 4  # models, curves, inter-class, galleries
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    before = (done / "reproduce.md").read_text()
    timings = (done / "timings.json").read_text()
    assert main(["reproduce", "--out", str(done), "--data-dir", str(data_dir), *TINY]) == 0
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    assert (done / "timings.json").read_text() == timings  # reused stages keep their times
    strip = re.compile(r"This run took .*? CPU")
    assert strip.sub("", (done / "reproduce.md").read_text()) == strip.sub("", before)


def test_bad_input_is_refused_before_any_work(done: Path, data_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(R, "_train", lambda *a, **k: calls.append("fit"))
    monkeypatch.setattr(R, "_distances", lambda *a, **k: calls.append("distances"))
    base = ["reproduce", "--data-dir", str(data_dir)]
    new = tmp_path / "new"
    assert main([*base, "--out", str(new), "--methods", "standard,mmr-nope"]) == 2
    err = capsys.readouterr().err
    assert "'mmr-nope' are not registered" in err and "standard" in err
    assert not new.exists()
    assert main([*base, "--out", str(new), "--methods", "standard", "--robust-method",
                 "kw-typo"]) == 2
    assert "'kw-typo' are not registered" in capsys.readouterr().err
    assert main([*base, "--out", str(new), "--methods", "standard,multi-max"]) == 2
    assert "'multi-max' train(s) against several threat models" in capsys.readouterr().err
    # the paper's default families, where this tree lacks some of them
    from robcurves.train import method_names

    missing = [m for m in R.PAPER_METHODS if m not in method_names()]
    if missing:
        assert main([*base, "--out", str(new)]) == 2
        assert f"{missing[0]!r}" in capsys.readouterr().err
    ok = [*base, "--methods", "standard", "--robust-method", "pgd-at"]
    for flag in ("--points", "--epochs", "--train-points", "--train-points-color"):
        assert main([*ok, "--out", str(new), flag, "0"]) == 2
        assert f"{flag} must be >= 1; got 0" in capsys.readouterr().err
    assert main([*ok, "--out", str(new), "--points", "1"]) == 2
    assert "test_points must be >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --quick takes no value
        main([*ok, "--out", str(new), "--quick=yes"])
    # another study's folder
    other = tmp_path / "scaling"
    other.mkdir()
    (other / "runs.json").write_text("[]")
    assert main([*ok, "--out", str(other)]) == 2
    assert "found runs.json" in capsys.readouterr().err
    # this study with other settings: named, refused
    changed = [a if a != "24" else "30" for a in TINY]
    assert main([*base, "--out", str(done), *changed]) == 2
    err = capsys.readouterr().err
    assert "other settings (differing: test_points)" in err
    assert calls == [] and not new.exists()


def test_a_subset_missing_the_last_classes_keeps_every_class(tmp_path: Path) -> None:
    """GTSRB's 43 classes on a 500-point training subset: the model must still have 43
    outputs, or the held-out points of the missing classes cannot be scored."""
    from robcurves.data import Dataset

    x = np.zeros((12, 1, 2, 2), np.float32)
    train = Dataset(x=x[:8], y=np.array([0, 1, 2, 0, 1, 2, 0, 1]), name="t")
    test = Dataset(x=x[8:], y=np.array([3, 4, 0, 1]), name="t")
    tr, te = R._same_classes(train.subset(slice(0, 4)), test, 5)
    assert tr.num_classes == te.num_classes == 5
    assert train.subset(slice(0, 4)).num_classes == 3  # what the model was built for before
    assert np.array_equal(tr.y, train.y[:4]) and np.array_equal(te.y, test.y)
    named = Dataset(x=x[:2], y=np.array([0, 1]), name="t", classes=("a", "b", "c"))
    assert R._same_classes(named, named, 3)[0].classes == ("a", "b", "c")

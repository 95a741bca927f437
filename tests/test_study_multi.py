"""The multi-perturbation study (Tramèr & Boneh): the command end to end on digits writes its page
and results, the table's union accuracy agrees with the per-norm curves point by point (and so
is never above any single threat's accuracy), a rerun recomputes nothing, and bad input fails
before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robcurves.cli import main
from robcurves.curve import RobustnessCurve
from robcurves.studies import multi

# small radii for 8x8 digits, so that every norm leaves some points robust
EPS = {"linf": 0.05, "l2": 0.3, "l1": 1.0}
TINY = ["--data", "digits", "--quick", "--eps", "linf:0.05,l2:0.3,l1:1", "--test-points", "24",
        "--masking-points", "4", "--masking-norms", "linf", "--masking-budget", "300",
        "--no-progress"]


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A standard CNN on the digits train split (about 85% clean accuracy)."""
    from robcurves.data import load
    from robcurves.train import fit, save_model

    m = fit(load("digits", split="train"), arch="cnn-small", epochs=3, batch_size=32,
            progress=False, eval_points=10, eval_steps=2, device="cpu")
    path = tmp_path_factory.mktemp("model") / "st.rcm"
    save_model(m, path)
    return path


class _Count:
    """Wrap the study's expensive steps and count the calls."""

    def __init__(self, monkeypatch):
        self.calls = {"train": 0, "distances": 0, "spatial": 0, "masking": 0, "affine": 0}
        for attr, key in (("train_fit", "train"), ("distances", "distances"),
                          ("spatial_distances", "spatial"), ("gradient_masking", "masking")):
            monkeypatch.setattr(multi, attr, self._wrap(getattr(multi, attr), key))
        from robcurves import unions

        monkeypatch.setattr(unions, "affine_distances",
                            self._wrap(unions.affine_distances, "affine"))

    def _wrap(self, fn, key):
        def counted(*a, **k):
            self.calls[key] += 1
            return fn(*a, **k)
        return counted


@pytest.fixture(scope="module")
def study(digits_model, tmp_path_factory):
    """One run: st, at-linf and at-l2 from the file, at-l1, max and avg trained (1 epoch on 150
    points); then the same command again, counting what the rerun recomputes."""
    out = tmp_path_factory.mktemp("multi") / "out"
    given = ",".join(f"{n}={digits_model}" for n in ("st", "at-linf", "at-l2"))
    argv = ["study", "multi-perturbation", *TINY, "--models", given, "--epochs", "1",
            "--train-points", "150", "--out", str(out)]
    mp = pytest.MonkeyPatch()
    try:
        first = _Count(mp)
        assert main(argv) == 0
        stamps = {p: p.stat().st_mtime_ns for sub in ("models", "results", "curves", "work")
                  for p in (out / sub).rglob("*") if p.is_file()}
        res1 = json.loads((out / "results.json").read_text())
        mp.undo()
        again = _Count(mp)
        assert main(argv) == 0
    finally:
        mp.undo()
    return {"out": out, "argv": argv, "first": first.calls, "again": again.calls,
            "given": {n: digits_model for n in ("st", "at-linf", "at-l2")},
            "stamps": stamps, "res1": res1,
            "res": json.loads((out / "results.json").read_text())}


def test_cli_end_to_end_writes_page_table_and_json(study):
    out, res = study["out"], study["res"]
    html = (out / "multi.html").read_text()
    md = (out / "multi.md").read_text()
    assert (out / "figures" / "curves.png").stat().st_size > 1000
    assert [r["model"] for r in res["table"]] == list(multi.MODELS)
    for name in multi.MODELS:
        assert f"<td>{name}</td>" in html and f"| {name} |" in md
    assert "union (all l_p)" in html and "l_inf @ 0.05" in md
    assert res["config"]["eps"] == EPS and res["data"]["evaluated"] == 24
    assert study["first"]["train"] == 3          # at-l1, max, avg; the others from the file
    assert study["first"]["distances"] == 6 * 3  # every model, every norm
    assert study["first"]["spatial"] == 6 and study["first"]["masking"] == 6
    by = {r["model"]: r for r in res["table"]}
    assert by["st"]["source"]["sha256"] == by["at-l2"]["source"]["sha256"]
    # the same file under three names gives the same numbers
    for k in ("clean", "linf", "l2", "l1", "union", "spatial"):
        assert by["st"][k] == by["at-linf"][k] == by["at-l2"][k]
    assert 0.6 < by["st"]["clean"] <= 1.0
    for r in res["table"]:
        assert r["masking"] == {"linf": r["masking"]["linf"]} and \
            isinstance(r["masking"]["linf"], bool)


def test_union_accuracy_is_the_and_of_the_per_norm_ones(study):
    out, res = study["out"], study["res"]
    eps = res["config"]["eps"]
    some_robust = False
    for r in res["table"]:
        parts = res["results"][r["model"]]["parts"]
        curves = {nm: RobustnessCurve.load(out / parts[f"norm-{nm}"]["curve"])
                  for nm in multi.NORMS}
        for nm, c in curves.items():
            assert np.array_equal(c.indices, np.arange(24))
            assert r[nm] == pytest.approx(np.mean(c.distances > eps[nm]))
        # robust against the union <=> robust against every ball, point by point
        robust = np.logical_and.reduce([c.distances > eps[nm] for nm, c in curves.items()])
        assert r["union"] == pytest.approx(robust.mean())
        assert r["union"] <= min(r[nm] for nm in multi.NORMS) + 1e-12
        assert r["linf_spatial"] <= min(r["linf"], r["spatial"]) + 1e-12
        assert r["union"] <= r["clean"] and r["spatial"] <= r["clean"]
        some_robust |= min(r[nm] for nm in multi.NORMS) > 0
    # the radii leave robust points in every norm, so the checks above are not 0 <= 0
    assert some_robust


def test_rerun_recomputes_nothing_and_other_settings_are_refused(study, capsys):
    assert study["again"] == {"train": 0, "distances": 0, "spatial": 0, "masking": 0,
                              "affine": 0}
    for p, t in study["stamps"].items():
        assert p.stat().st_mtime_ns == t, p
    assert study["res"]["table"] == study["res1"]["table"]
    argv = study["argv"]
    capsys.readouterr()
    i = argv.index("--test-points")
    assert main([*argv[:i + 1], "30", *argv[i + 2:]]) == 2
    assert "other settings (differs in test_points)" in capsys.readouterr().err


def test_affine_column_is_added_on_resume(study, tmp_path, monkeypatch):
    """Adding the affine threat later computes only it, next to the union on its points."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(study["out"], out)
    given = study["given"]
    cfg = multi.MultiConfig.quick(
        data="digits", eps=EPS, test_points=24, masking_points=4, masking_norms=("linf",),
        masking_budget=300, epochs=1, train_points=150, affine=True, affine_points=4,
        affine_kwargs={"lambdas": 2, "steps": 5, "search_steps": 4})
    calls = _Count(monkeypatch).calls
    res = multi.run(out, cfg, models=given, progress=False, log=lambda _: None)
    assert calls["affine"] == 6 and calls["distances"] == calls["train"] == 0
    for r in res["table"]:
        part = res["results"][r["model"]]["parts"]["affine"]
        c = RobustnessCurve.load(out / part["curve"])
        assert c.n == part["points"] == 4 and c.kind == "upper"
        assert np.array_equal(c.indices, np.arange(4))
        assert r["affine"] == pytest.approx(np.mean(c.distances > 1.0))
        # the union on the same 4 points, from the union curve
        u = RobustnessCurve.load(out / res["results"][r["model"]]["parts"]["union"]["curve"])
        assert r["affine_union_same_points"] == pytest.approx(np.mean(u.distances[:4] > 1))
    page = (out / "multi.html").read_text()
    assert "affine (first 4)" in page and "union (first 4)" in page
    # the same affine settings again: nothing recomputed
    multi.run(out, cfg, models=given, progress=False, log=lambda _: None)
    assert calls["affine"] == 6


def _no_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("work started before the input was checked")
    for attr in ("train_fit", "distances", "spatial_distances", "gradient_masking"):
        monkeypatch.setattr(multi, attr, boom)


def test_bad_input_fails_clearly_before_any_work(tmp_path, digits_model, monkeypatch, capsys):
    _no_work(monkeypatch)
    base = ["study", "multi-perturbation", "--data", "digits", "--quick", "--no-progress",
            "--out", str(tmp_path / "o")]
    np.savez(tmp_path / "plain.npz", x=np.random.rand(20, 1, 8, 8).astype("float32"),
             y=np.arange(20) % 3)
    (tmp_path / "junk.rcm").write_text("not a model")
    cases = [
        (["--models", f"foo={digits_model}"], "unknown model name 'foo'"),
        (["--models", f"st={tmp_path / 'missing.rcm'}"], "missing.rcm"),
        (["--models", f"st={tmp_path / 'junk.rcm'}"], "not a robcurves model file"),
        (["--models", "st"], "NAME=FILE"),
        (["--eps", "linf:0.1,l2:1"], "eps must give a radius for each of linf, l2, l1"),
        (["--eps", "linf:0.1,l2:x,l1:5"], "--eps takes norm:radius pairs"),
        (["--masking-norms", "l1"], "masking_norms must be among linf, l2"),
        (["--attack", "nope"], "attack must be one of"),
        (["--masking-budget", "100"], "too small for hsja in linf on inputs of 64 values"),
        (["--epochs", "1", "--models",
          ",".join(f"{n}={digits_model}" for n in multi.MODELS)],
         "--epochs sets training, but --models gives every model"),
    ]
    for extra, msg in cases:
        capsys.readouterr()
        assert main([*base, *extra]) == 2, extra
        assert msg in capsys.readouterr().err, (extra, msg)
    for data, msg in ((str(tmp_path / "plain.npz"), "has no train split"),
                      (str(tmp_path / "plain.npz") + "x", "neither a registered name")):
        capsys.readouterr()
        i = base.index("digits")
        assert main([*base[:i], data, *base[i + 1:]]) == 2
        assert msg in capsys.readouterr().err
    # a model for other inputs (28x28) than the data's (8x8)
    from robcurves.train import build, save_model

    big = build("cnn-small", (1, 28, 28), 10)
    big.robcurves_meta = {"arch": "cnn-small", "arch_kwargs": {}, "input_shape": [1, 28, 28],
                          "num_classes": 10}
    save_model(big, tmp_path / "big.rcm")
    capsys.readouterr()
    assert main([*base, "--models", f"max={tmp_path / 'big.rcm'}"]) == 2
    assert "takes inputs of shape (1, 28, 28); the data has (1, 8, 8)" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results").exists() or \
        not any((tmp_path / "o" / "results").iterdir())

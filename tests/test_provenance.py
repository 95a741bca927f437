"""Which data a curve was measured on and which points a model was trained on (issue 13.1, 13.2,
13.4): compare refuses curves of different data, training holds out data it is evaluated on,
and ``robcurves curve`` refuses training points and says when ``--n`` is cut."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED_DATA

from robcurves.cli import main
from robcurves.comparison import compare
from robcurves.curve import RobustnessCurve
from robcurves.data import load
from robcurves.data.splits import holdout_indices, train_test
from robcurves.train import read_meta

FMNIST = SHARED_DATA / "fashion-mnist"
MNIST = SHARED_DATA / "mnist"


def _curve(name: str, dists: np.ndarray, data: dict | None) -> RobustnessCurve:
    return RobustnessCurve(distances=dists, norm=np.inf, name=name,
                           indices=np.arange(dists.size), metadata={"data": data} if data else {})


def test_compare_refuses_curves_of_different_data_even_with_intersect() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50) + 0.3
    mnist = {"name": "mnist-test", "source": "/d/mnist/t10k-images-idx3-ubyte.gz",
             "fingerprint": "aaaa"}
    fmnist = {"name": "fashion-mnist-test", "source": "/d/fashion-mnist/t10k.gz",
              "fingerprint": "bbbb"}
    for intersect in (False, True):
        with pytest.raises(ValueError) as err:
            compare([_curve("at", a, mnist), _curve("st", b, fmnist)], n_boot=50,
                    intersect=intersect)
        msg = str(err.value)
        assert "'at'" in msg and "'st'" in msg and "mnist-test" in msg
        assert "fashion-mnist-test" in msg
    # old curve files without a fingerprint: name / split / source decide
    with pytest.raises(ValueError, match="split"):
        compare([_curve("x", a, {"name": "digits", "split": "train"}),
                 _curve("y", b, {"name": "digits", "split": "test"})], n_boot=50)
    # same data (same fingerprint, even under another path), or no data metadata: compared
    same = dict(fmnist, source="/elsewhere/copy")
    assert compare([_curve("at", a, fmnist), _curve("st", b, same)], n_boot=50).n == 50
    assert compare([_curve("at", a, None), _curve("st", b, fmnist)], n_boot=50).n == 50
    assert compare([_curve("at", a, None), _curve("st", b, None)], n_boot=50).n == 50


def test_holdout_rule_is_seeded_disjoint_and_recorded() -> None:
    tr, te = holdout_indices(1797)
    assert te.size == 359 and tr.size == 1438
    assert np.intersect1d(tr, te).size == 0 and np.union1d(tr, te).size == 1797
    tr2, te2 = holdout_indices(1797, seed=0)
    assert np.array_equal(te, te2)
    assert not np.array_equal(te, holdout_indices(1797, seed=1)[1])
    train, test = train_test("digits")
    whole = load("digits")
    assert np.array_equal(train.x, whole.x[tr]) and np.array_equal(test.y, whole.y[te])
    assert train.info["split"]["rule"] == "holdout" and train.info["split"]["seed"] == 0
    assert load("digits:split=test").n == 359
    assert load("digits:split=test,seed=3").n == 359
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load("digits:test")


def test_train_uses_the_train_split_where_one_exists(monkeypatch) -> None:
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{FMNIST} not present")
    monkeypatch.setenv("ROBCURVES_DATA", str(SHARED_DATA))
    train, test = train_test("fmnist")
    assert (train.name, train.n) == ("fashion-mnist-train", 60000)
    assert (test.name, test.n) == ("fashion-mnist-test", 10000)
    assert train.info["split"]["rule"] == "native"
    if (MNIST / "t10k-images-idx3-ubyte.gz").exists() and not (
            MNIST / "train-images-idx3-ubyte.gz").exists():
        train, test = train_test("mnist")  # only the test files here: a stated hold-out
        assert (train.n, test.n) == (8000, 2000)
        assert train.info["split"]["of"] == "mnist-test"


def _cli_train(tmp_path, data: str = "digits"):
    model = tmp_path / "m.rcm"
    assert main(["train", "--data", data, "--arch", "mlp", "--epochs", "1", "--eval-points",
                 "40", "--out", str(model), "--no-progress"]) == 0
    return model


def test_train_then_curve_evaluates_held_out_points_and_refuses_training_points(
        tmp_path, capsys) -> None:
    model = _cli_train(tmp_path)
    meta = read_meta(model)
    rec = meta["train_data"]
    assert rec["name"] == "digits:train" and rec["n"] == 1438 and rec["rule"] == "holdout"
    assert rec["seed"] == 0 and rec["fraction"] == 0.2 and rec["spec"] == "digits"
    assert rec["held_out"]["n"] == 359 and meta["eval_on"] == "digits:test"
    capsys.readouterr()

    out = tmp_path / "held"
    assert main(["curve", "--model", str(model), "--data", "digits", "--n", "10", "--norms",
                 "inf", "--attack", "fmn", "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "curve-linf.json").read_text())["metadata"]["data"]
    held = load("digits:split=test")
    assert data["name"] == "digits:test" and data["split"] == "test" and data["n"] == 10
    assert data["fingerprint"] and "train_points" not in data
    assert data["split_rule"]["rule"] == "holdout"
    from robcurves.evaluate import fingerprint_data
    assert data["points_fingerprint"] == fingerprint_data(held.x[:10], held.y[:10])

    # the training part, or all digits (whose first points include training points): refused
    for argv in (["--data", "digits", "--split", "train"], ["--data", "digits:split=train"]):
        assert main(["curve", "--model", str(model), *argv, "--n", "10", "--norms", "inf",
                     "--out", str(tmp_path / "tr"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "10 of the 10 points" in err and "trained on" in err
        assert "--allow-train-points" in err
    from robcurves.data.splits import holdout_indices
    k = int(np.count_nonzero(holdout_indices(1797)[0] < 30))
    assert main(["curve", "--model", str(model), "--data", str(_npz_of_all_digits(tmp_path)),
                 "--n", "30", "--norms", "inf", "--out", str(tmp_path / "all"),
                 "--no-progress"]) == 2
    assert f"{k} of the 30 points" in capsys.readouterr().err

    # with the flag: done, with a warning on every output
    out = tmp_path / "allowed"
    assert main(["curve", "--model", str(model), "--data", "digits:split=train", "--n", "10",
                 "--norms", "inf", "--attack", "fmn", "--out", str(out), "--no-progress",
                 "--allow-train-points"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("WARNING") >= 2
    meta = json.loads((out / "curve-linf.json").read_text())["metadata"]
    assert "training points" in meta["warning"] and meta["data"]["train_points"] == 10
    assert "training points" in json.loads((out / "run.json").read_text())["warning"]


def _npz_of_all_digits(tmp_path):
    whole = load("digits")
    path = tmp_path / "all-digits.npz"
    np.savez(path, x=whole.x, y=whole.y)
    return path


def test_curve_says_when_n_is_cut_to_the_data_size(tmp_path, capsys) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    spec = tmp_path / "lin.pt"
    torch.jit.save(torch.jit.script(net), spec)
    out = tmp_path / "c"
    assert main(["curve", "--model", str(spec), "--data", "digits:split=test", "--n", "20000",
                 "--norms", "2", "--attack", "deepfool", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "--n 20000" in printed and "(359)" in printed
    data = json.loads((out / "curve-l2.json").read_text())["metadata"]["data"]
    assert data["n"] == 359 and data["n_requested"] == 20000


def test_zoo_trains_on_the_training_part_and_records_it(tmp_path) -> None:
    from robcurves.train.zoo import train_zoo

    files = train_zoo("digits", tmp_path, names=["st"], train_points=200, epochs_scale=0.2,
                      eval_points=50, progress=False, log=lambda s: None)
    meta = read_meta(files["st"])
    rec = meta["train_data"]
    assert rec["rule"] == "holdout" and rec["spec"] == "digits" and rec["n"] == 200
    assert rec["held_out"]["name"] == "digits:test" and meta["eval_on"] == "digits:test"
    # the 200 training points come from the training part, never from the held-out one
    from robcurves.data.splits import fingerprint

    part = load("digits:split=train")
    order = np.random.default_rng(0).permutation(part.n)  # the zoo's seeded subset
    assert rec["fingerprint"] == fingerprint(part.subset(np.sort(order[:200])))
    assert rec["of_n"] == 1797 and part.n == 1438


def test_registering_a_data_set_with_parameters() -> None:
    from robcurves.data import Dataset, register, registered

    def gauss(d: int = 3, n: int = 10, scale: float = 0.1, name: str = "g") -> Dataset:
        x = (0.5 + scale * np.random.default_rng(0).standard_normal((n, d))).clip(0, 1)
        return Dataset(x=x.astype(np.float32), y=np.arange(n) % 2, name=f"{name}-{d}")

    register("gauss-test", gauss)
    try:
        ds = load("Gauss-Test:d=5,n=7,scale=0.2,name=Hq")
        assert ds.x.shape == (7, 5) and ds.name == "Hq-5"
        assert load("gauss-test").x.shape == (10, 3)
        with pytest.raises(ValueError, match="KEY=VALUE"):
            load("gauss-test:d")
    finally:
        from robcurves.data import registry
        registry._REGISTRY.pop("gauss-test")
    assert "gauss-test" not in registered()


def test_cli_compare_refuses_curves_of_different_data(tmp_path, capsys) -> None:
    rng = np.random.default_rng(1)
    files = []
    for name, data in (("at", {"name": "mnist-test", "fingerprint": "aaaa"}),
                       ("st", {"name": "fashion-mnist-test", "fingerprint": "bbbb"})):
        files.append(tmp_path / f"{name}.json")
        _curve(name, rng.random(40), data).save(files[-1])
    for extra in ([], ["--intersect"]):
        assert main(["compare", *map(str, files), "--out", str(tmp_path / "r"), "--n-boot",
                     "50", *extra]) == 2
        err = capsys.readouterr().err
        assert "mnist-test" in err and "fashion-mnist-test" in err and "different data" in err
    assert not (tmp_path / "r" / "report.html").exists()


def test_describe_lets_library_curves_carry_their_data() -> None:
    from robcurves.data.splits import describe

    rng = np.random.default_rng(2)
    test, train = load("digits:split=test"), load("digits:split=train")
    a = _curve("a", rng.random(30), describe(test, 30))
    b = _curve("b", rng.random(30), describe(train, 30))
    c = _curve("c", rng.random(30), describe(load("digits:split=test"), 30))
    assert a.metadata["data"]["split"] == "test" and a.metadata["data"]["n"] == 30
    with pytest.raises(ValueError, match="digits:test.*digits:train"):
        compare([a, b], n_boot=50)
    assert compare([a, c], n_boot=50).n == 30

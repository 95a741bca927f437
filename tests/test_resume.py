"""Interrupted runs resume: finished batches are kept, only the rest is attacked, and the
final files equal those of an uninterrupted run."""

import json
import math

import numpy as np
import pytest
import torch

import robcurves
from robcurves.attacks import ATTACKS
from robcurves.cli import main


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 10))


class Interrupting:
    """Wraps the default attack; records the points it attacks and raises KeyboardInterrupt
    (as Ctrl-C would) when asked to attack its ``stop_at``-th batch."""

    def __init__(self, stop_at: int | None) -> None:
        self.stop_at, self.calls, self.points = stop_at, 0, 0
        self.fn = ATTACKS["auto"][0]

    def __call__(self, model, x, y, p, seed=0, **kw):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.points += x.shape[0]
        return self.fn(model, x, y, p, seed=seed, **kw)


@pytest.fixture
def interrupting():
    def install(stop_at):
        att = Interrupting(stop_at)
        ATTACKS["interrupt-test"] = (att, (math.inf, 2.0, 1.0))
        return att
    yield install
    ATTACKS.pop("interrupt-test", None)


def test_library_store_resumes_and_matches_uninterrupted(tmp_path, interrupting):
    ds = robcurves.data.load("digits").subset(slice(0, 50))
    net = _net()
    kw = dict(attack="interrupt-test", batch_size=10, budget=120)
    first = interrupting(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        robcurves.distances(net, ds.x, ds.y, "l2", store=tmp_path / "a", **kw)
    assert first.points == 20
    second = interrupting(stop_at=None)
    resumed = robcurves.distances(net, ds.x, ds.y, "l2", store=tmp_path / "a", **kw)
    assert second.points == 30  # only the three batches not done before
    fresh = robcurves.distances(net, ds.x, ds.y, "l2", store=tmp_path / "b", **kw)
    np.testing.assert_array_equal(resumed.distances, fresh.distances)
    # a store of other settings is refused rather than mixed
    with pytest.raises(ValueError, match="other settings"):
        robcurves.distances(net, ds.x, ds.y, "l2", store=tmp_path / "a", attack="interrupt-test",
                            batch_size=10, budget=150)


def test_cli_curve_interrupted_and_rerun_gives_identical_files(tmp_path, interrupting):
    model_path = tmp_path / "net.pt"
    torch.jit.script(_net(1)).save(str(model_path))
    args = ["curve", "--model", str(model_path), "--data", "digits", "--n", "40",
            "--norms", "inf,2", "--batch-size", "10", "--attack", "interrupt-test",
            "--no-progress"]
    interrupting(stop_at=6)  # linf: 4 batches done; l2: 1 batch done, then Ctrl-C
    assert main(args + ["--out", str(tmp_path / "run")]) == 130
    assert not (tmp_path / "run" / "curve-l2.json").exists()
    second = interrupting(stop_at=None)
    assert main(args + ["--out", str(tmp_path / "run")]) == 0
    assert second.points == 30  # the three l2 batches not done before
    interrupting(stop_at=None)
    assert main(args + ["--out", str(tmp_path / "ref")]) == 0
    for name in ("curve-linf.json", "curve-l2.json"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    c = robcurves.RobustnessCurve.load(tmp_path / "run" / "curve-l2.json")
    assert c.n == 40 and c.norm == 2.0 and (tmp_path / "run" / "curves.png").exists()


def test_cli_certify_is_resumed_too(tmp_path, monkeypatch):
    """Certificates are the slowest stage: an interrupted --certify run keeps its finished
    batches, recomputes only the others, and ends with the files of an uninterrupted run."""
    import sys

    cert_mod = sys.modules["robcurves.certificates"]
    real = cert_mod.certified_radius
    calls = {"n": 0, "stop_at": 2}

    def counting(*a, **kw):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(cert_mod, "certified_radius", counting)
    ds = robcurves.data.load("digits")
    net = robcurves.train.fit(ds.subset(slice(100, 400)), arch="mlp", arch_kwargs={"width": 32},
                              epochs=2, seed=0, progress=False)
    model_path = robcurves.train.save_model(net, tmp_path / "net.rcm")
    args = ["curve", "--model", str(model_path), "--data", "digits", "--n", "30", "--norms",
            "inf", "--batch-size", "10", "--certify", "ibp", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "run")]) == 130  # in the second batch
    calls.update(n=0, stop_at=None)
    assert main(args + ["--out", str(tmp_path / "run")]) == 0
    assert calls["n"] == 2  # the two batches not certified before
    calls.update(n=0)
    assert main(args + ["--out", str(tmp_path / "ref")]) == 0
    assert calls["n"] == 3
    for name in ("certified-linf.json", "curve-linf.json"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    lower = robcurves.RobustnessCurve.load(tmp_path / "run" / "certified-linf.json")
    assert lower.kind == "lower" and lower.n == 30 and lower.metadata["method"] == "ibp"


def test_library_certify_store_resumes(tmp_path, monkeypatch):
    """certify(..., store=) keeps each finished batch: a rerun computes nothing, other settings
    are refused, and the stored result equals a fresh one."""
    import sys

    cert_mod = sys.modules["robcurves.certificates"]
    ds = robcurves.data.load("digits").subset(slice(0, 25))
    net = _net(2)
    first = robcurves.certify(net, ds.x, ds.y, "inf", "crown", batch_size=10, iters=6,
                              store=tmp_path / "c")
    monkeypatch.setattr(cert_mod, "certified_radius", None)  # any recomputation would fail
    again = robcurves.certify(net, ds.x, ds.y, "inf", "crown", batch_size=10, iters=6,
                              store=tmp_path / "c")
    np.testing.assert_array_equal(first.distances, again.distances)
    assert again.method == "crown" and again.n == 25
    with pytest.raises(ValueError, match="other settings"):
        robcurves.certify(net, ds.x, ds.y, "inf", "crown", batch_size=10, iters=7,
                          store=tmp_path / "c")


def test_a_store_without_batches_takes_new_settings(tmp_path):
    """A run refused before its first batch leaves only the manifest: the next run, with other
    settings, replaces it; once a batch is stored, other settings are refused."""
    from robcurves.store import BatchStore

    BatchStore(tmp_path / "s", {"budget": 50})
    store = BatchStore(tmp_path / "s", {"budget": 200})
    assert json.loads((tmp_path / "s" / "manifest.json").read_text()) == {"budget": 200}
    ds = robcurves.data.load("digits").subset(slice(0, 5))
    store.put(0, 5, robcurves.distances(_net(), ds.x, ds.y, "l2", budget=120))
    with pytest.raises(ValueError, match="other settings \\(differing: budget\\)"):
        BatchStore(tmp_path / "s", {"budget": 300})


def test_cli_curve_rerun_after_a_refused_budget(tmp_path, capsys):
    """A budget too small for the attack is refused; the same command with a workable budget
    then runs in the same output folder."""
    model_path = tmp_path / "net.pt"
    torch.jit.script(_net(1)).save(str(model_path))
    args = ["curve", "--model", str(model_path), "--data", "digits", "--n", "10", "--norms",
            "l1", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(args + ["--budget", "50"]) == 2
    assert "budget 50 passes per point is too small" in capsys.readouterr().err
    assert main(args + ["--budget", "200"]) == 0
    assert (tmp_path / "o" / "curve-l1.json").exists()

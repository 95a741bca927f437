"""Training methods, architectures and model files (issue 7), on scikit-learn's digits."""

from __future__ import annotations

import importlib
import json
import math
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robcurves import data as rdata
from robcurves.model import wrap
from robcurves.train import (
    ThreatModel,
    build,
    combine_losses,
    evaluate_model,
    fit,
    load_model,
    lr_factor,
    make_method,
    save_model,
    schedule_at,
)
from robcurves.train.methods import Schedule

# ``robcurves.train.fit`` is the function; the module is reached through sys.modules
fit_mod = importlib.import_module("robcurves.train.loop")

MLP_SMALL = {"width": 256}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Many small ops: one thread is fastest and stays fast when the machine is shared.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    ds = rdata.load("digits")
    order = np.random.default_rng(0).permutation(ds.n)
    return ds.subset(np.sort(order[200:])), ds.subset(np.sort(order[:200]))


def _logits(module: nn.Module, x: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x))


# ----------------------------------------------------------------------------- properties
def test_pgd_at_raises_robust_accuracy_measured_by_attack_engine(digits):
    from robcurves.evaluate import distances

    train, test = digits
    eps = 0.2
    kw = dict(arch="mlp", arch_kwargs=MLP_SMALL, eps=eps, epochs=8, lr=3e-3, progress=False,
              eval_points=10, eval_steps=2)
    st = fit(train, method="standard", **kw)
    at = fit(train, method="pgd-at", steps=5, **kw)
    x, y = test.x[:150], test.y[:150]
    rob = {}
    for name, m in (("st", st), ("at", at)):
        d = distances(m, x, y, norm="inf")  # the attack engine, not the training attack
        rob[name] = float(np.mean(d.distances > eps))
    assert rob["at"] >= rob["st"] + 0.15, rob
    assert rob["st"] < 0.1, rob
    meta = at.robcurves_meta
    assert meta["method"] == "pgd-at" and meta["train_norm"] == "linf"
    assert meta["train_eps"] == pytest.approx(eps)
    assert meta["threat_model"] == {"norm": "linf", "eps": eps, "steps": 5, "step_size": 2.5}
    assert st.robcurves_meta["train_eps"] is None
    assert 0.6 < meta["clean_accuracy"] <= 1.0


def test_multi_max_and_avg_on_hand_made_losses():
    losses = torch.tensor([[1.0, 5.0, 2.0, 3.0],
                           [4.0, 0.5, 2.0, 3.5],
                           [0.0, 1.0, 7.0, 1.0]], requires_grad=True)
    val, idx = combine_losses(losses, "max")
    assert idx.tolist() == [1, 0, 2, 1]
    assert float(val.detach()) == pytest.approx((4.0 + 5.0 + 7.0 + 3.5) / 4)
    (g,) = torch.autograd.grad(val, losses)
    expected = torch.zeros_like(losses)
    expected[idx, torch.arange(4)] = 0.25
    assert torch.equal(g, expected)  # only the chosen attack of each example gets gradient
    val, idx = combine_losses(losses, "avg")
    assert idx is None
    assert float(val.detach()) == pytest.approx(float(losses.detach().mean()))
    (g,) = torch.autograd.grad(val, losses)
    assert torch.allclose(g, torch.full_like(losses, 1 / 12))  # every attack, every example


def test_multi_methods_train_on_chosen_adversarials(monkeypatch):
    # Replace the attacks by fixed perturbations so the per-attack losses are known exactly.
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2) * 0.5 + 0.25
    y = torch.tensor([0, 1, 2, 0, 1])
    shifts = {"linf": 0.2, "l2": -0.2}

    def fake_attack(self, module, clf, x, y, tm, eps_scale, loss="ce", x_init=None):
        return x + shifts[tm.norm_name]

    monkeypatch.setattr("robcurves.train.methods.Method.attack", fake_attack)
    threats = [ThreatModel("linf", 0.1), ThreatModel("l2", 0.5)]
    clf = wrap(module)
    with torch.no_grad():
        per = torch.stack([F.cross_entropy(module(x + s), y, reduction="none")
                           for s in shifts.values()])
    assert (per[0] != per[1]).all()
    mx = make_method("multi-max", threats)
    loss, _ = mx.loss(module.train(), clf, x, y, Schedule())
    assert float(loss.detach()) == pytest.approx(float(per.max(0).values.mean()), rel=1e-6)
    av = make_method("multi-avg", threats)
    loss, _ = av.loss(module, clf, x, y, Schedule())
    assert float(loss.detach()) == pytest.approx(float(per.mean()), rel=1e-6)


def test_ibp_training_certifies_where_standard_does_not(digits):
    train, test = digits
    eps = 0.1
    kw = dict(arch="mlp", arch_kwargs=MLP_SMALL, eps=eps, epochs=10, progress=False,
              eval_points=10, eval_steps=2)
    st = fit(train, method="standard", **kw)
    cert = fit(train, method="ibp", kappa=0.0, warmup=3, warmup_start=0, lr=3e-3, **kw)
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
    tm = [ThreatModel("linf", eps)]
    r_st = evaluate_model(st, x, y, tm, certify=True, steps=1, restarts=0)
    r_ibp = evaluate_model(cert, x, y, tm, certify=True, steps=10, restarts=0)
    c_st = r_st["ibp_certified_accuracy"]["linf@0.1"]
    c_ibp = r_ibp["ibp_certified_accuracy"]["linf@0.1"]
    assert c_st <= 0.05, c_st
    assert c_ibp >= 0.3 and c_ibp > c_st + 0.25, (c_ibp, c_st)
    # a certificate can never beat an attack: certified <= PGD accuracy <= clean accuracy
    assert c_ibp <= r_ibp["pgd_accuracy"]["linf@0.1"] <= r_ibp["clean_accuracy"]
    assert r_ibp["clean_accuracy"] > 0.6
    assert "ibp_certified_accuracy" in cert.robcurves_meta


# ----------------------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def small_model(digits):
    train, _ = digits
    return fit(train.subset(slice(0, 300)), arch="cnn-small", method="standard", epochs=1,
               progress=False, eval_points=50, eval_steps=2)


def test_save_load_identical_logits(small_model, digits, tmp_path):
    path = save_model(small_model, tmp_path / "m.rcm")
    loaded = load_model(path)
    x = digits[1].x
    assert torch.equal(_logits(small_model, x), _logits(loaded, x))
    meta = loaded.robcurves_meta
    for key in ("arch", "arch_kwargs", "input_shape", "num_classes", "data", "method",
                "threat_model", "seed", "epochs", "clean_accuracy", "train_seconds"):
        assert key in meta
    assert meta["format"] == "robcurves-model" and meta["format_version"] == 1
    assert meta["input_shape"] == [1, 8, 8] and meta["num_classes"] == 10


def _rewrite(src, dst, meta_fn=None, weights_fn=None):
    with zipfile.ZipFile(src) as zf:
        meta, weights = json.loads(zf.read("meta.json")), zf.read("weights.pt")
    meta = meta_fn(meta) if meta_fn else meta
    weights = weights_fn(weights) if weights_fn else weights
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr("weights.pt", weights)
    return dst


def test_corrupted_or_mismatched_files_fail_clearly(small_model, tmp_path):
    good = save_model(small_model, tmp_path / "m.rcm")

    def flip(b: bytes) -> bytes:
        b = bytearray(b)
        b[len(b) // 2] ^= 0xFF
        return bytes(b)

    cases = {
        "corrupted": (_rewrite(good, tmp_path / "c.rcm", weights_fn=flip), "corrupted"),
        "truncated": (tmp_path / "t.rcm", "not a robcurves model file"),
        "other format": (_rewrite(good, tmp_path / "f.rcm",
                                  meta_fn=lambda m: {**m, "format": "something-else"}),
                         "format 'something-else'"),
        "newer version": (_rewrite(good, tmp_path / "v.rcm",
                                   meta_fn=lambda m: {**m, "format_version": 99}),
                          "format version 99"),
        "wrong arch": (_rewrite(good, tmp_path / "a.rcm",
                                meta_fn=lambda m: {**m, "arch": "mlp"}),
                       "do not match architecture 'mlp'"),
        "wrong classes": (_rewrite(good, tmp_path / "k.rcm",
                                   meta_fn=lambda m: {**m, "num_classes": 7}),
                          "7 classes"),
    }
    (tmp_path / "t.rcm").write_bytes(good.read_bytes()[:200])
    for name, (path, message) in cases.items():
        with pytest.raises(ValueError, match=message) as err:
            load_model(path)
        assert str(path) in str(err.value), name  # the message names the file
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.rcm")
    with pytest.raises(ValueError, match="lacks arch"):
        save_model(nn.Linear(2, 2), tmp_path / "x.rcm")


# ----------------------------------------------------------------------------- practicalities
def test_checkpoint_resume_matches_uninterrupted_run(digits, tmp_path, monkeypatch):
    train, test = digits
    sub = train.subset(slice(0, 400))
    kw = dict(arch="mlp", arch_kwargs={"width": 64}, method="pgd-at", steps=3, epochs=3,
              progress=False, eval_points=20, eval_steps=2, seed=3)
    ref = fit(sub, **kw)
    again = fit(sub, **kw)
    assert torch.equal(_logits(ref, test.x), _logits(again, test.x))  # deterministic on CPU

    ckpt = tmp_path / "run.ckpt"
    original = fit_mod._save_checkpoint

    class Stop(Exception):
        pass

    def save_then_stop(path, state):
        original(path, state)
        if state["epoch"] == 1:
            raise Stop

    monkeypatch.setattr(fit_mod, "_save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        fit(sub, checkpoint=ckpt, **kw)
    monkeypatch.setattr(fit_mod, "_save_checkpoint", original)
    resumed = fit(sub, checkpoint=ckpt, **kw)
    assert torch.equal(_logits(ref, test.x), _logits(resumed, test.x))
    assert [h["epoch"] for h in resumed.robcurves_meta["history"]] == [1, 2, 3]
    with pytest.raises(ValueError, match="different run"):
        fit(sub, checkpoint=ckpt, **{**kw, "seed": 4})


@pytest.mark.parametrize("method,extra", [
    ("trades", {"beta": 3.0}),
    ("pgd-at", {"norm": "l1", "eps": 2.0, "clean_mix": 0.5}),
    ("pgd-at", {"norm": "l2", "eps": 0.5}),
    ("multi-max", {"threats": "linf:0.1,l2:0.5,l1:2"}),
])
def test_every_method_trains_and_records_its_threat_model(digits, method, extra):
    train, _ = digits
    m = fit(train.subset(slice(0, 128)), arch="cnn-small", method=method, epochs=1, steps=2,
            batch_size=64, progress=False, eval_points=16, eval_steps=2, **extra)
    meta = m.robcurves_meta
    assert math.isfinite(meta["history"][0]["loss"])
    assert meta["method"] == method
    assert set(meta["pgd_accuracy"]) == {f"{t['norm']}@{t['eps']:g}" for t in meta["threats"]}
    k, n = meta["eval_pgd_n"], meta["eval_n"]
    assert 0 < k <= n
    for v in meta["pgd_accuracy"].values():
        # PGD runs on the first k evaluation points: its robust points are correctly
        # classified points among them, so their count is at most the clean count of all n
        robust = v * k
        assert robust == pytest.approx(round(robust), abs=1e-9)
        assert 0 <= round(robust) <= round(meta["clean_accuracy"] * n)


def test_bad_names_and_options_fail_clearly(digits):
    train, _ = digits
    sub = train.subset(slice(0, 32))
    with pytest.raises(ValueError, match="unknown method 'pgd'"):
        fit(sub, method="pgd", progress=False)
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        fit(sub, arch="resnet", progress=False)
    with pytest.raises(ValueError, match="bad options"):
        fit(sub, method="pgd-at", beta=2.0, progress=False)
    with pytest.raises(ValueError, match="needs threats"):
        fit(sub, method="multi-avg", progress=False)
    with pytest.raises(ValueError, match="one l_inf threat model"):
        fit(sub, method="ibp", norm="l2", progress=False)


def test_architectures_shapes_and_one_step():
    for shape in [(1, 8, 8), (1, 28, 28), (3, 32, 32)]:
        m = build("cnn-small", shape, 10)
        assert isinstance(m, nn.Sequential)
        assert all(isinstance(layer, (nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten)) for layer in m)
        assert m(torch.zeros((2,) + shape)).shape == (2, 10)
    m = build("cnn-small", (1, 28, 28), 10)
    assert [layer.out_channels for layer in m if isinstance(layer, nn.Conv2d)] == [16, 32]
    assert [layer.out_features for layer in m if isinstance(layer, nn.Linear)] == [100, 100, 10]
    assert build("mlp", (1, 28, 28), 10)[1].out_features == 1024
    wide = build("cnn-wide", (1, 28, 28), 10, width=2, depth=3)
    assert wide(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [c.out_channels for c in wide if isinstance(c, nn.Conv2d)] == [32, 64, 64]
    for name, kw in (("preact-resnet18", {}), ("wrn-16-k", {"k": 1})):
        net = build(name, (3, 32, 32), 10, **kw)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        loss = F.cross_entropy(net.train()(x), y)
        loss.backward()
        opt.step()
        assert net.eval()(x).shape == (4, 10) and math.isfinite(float(loss.detach()))


def test_schedules():
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor("step", 0.6) == pytest.approx(0.1)
    assert lr_factor("triangle", 0.4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor("exp", 0.5)
    s = schedule_at(1.5, warmup_start=1.0, warmup=2.0, kappa_start=1.0, kappa_end=0.0)
    assert s.eps_scale == pytest.approx(0.25) and s.kappa == pytest.approx(0.75)
    assert schedule_at(0.5, 1.0, 2.0).eps_scale == 0.0
    assert schedule_at(9.0, 1.0, 2.0).eps_scale == 1.0

"""Certified side: IBP/CROWN soundness, exact linear distances, exact MILP, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from conftest import exact_linear_distances, linear_problem
from torch import nn

import robcurves
from robcurves.certificates import Normalize, certify, ibp_bounds
from robcurves.certificates._layers import sequential_layers
from robcurves.certificates.crown import concretize_lower
from robcurves.certificates.linear import halfspace_distance


@pytest.fixture(autouse=True)
def _one_thread():
    # bound propagation is many small ops: on a shared, loaded machine one thread is far faster
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _digits(n_train: int = 600, n_test: int = 40):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x[:n_train], y[:n_train], x[-n_test:], y[-n_test:]


def _train(net: nn.Module, x: np.ndarray, y: np.ndarray, shape: tuple, steps: int = 150,
           pre: tuple[float, float] | None = None) -> nn.Module:
    xt = torch.tensor(x).reshape((-1,) + shape)
    if pre is not None:
        xt = (xt - pre[0]) / pre[1]
    yt = torch.tensor(y)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def digits_nets():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    xtr, ytr, xte, yte = _digits(n_test=20)
    mlp = _train(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                               nn.Linear(16, 10)), xtr, ytr, (64,))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(4, 8, 3, stride=1, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 2 * 2, 10))
    cnn = _train(cnn, xtr, ytr, (1, 8, 8), pre=(0.3, 0.4), steps=100)
    small = _train(nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10)), xtr, ytr,
                   (64,))
    torch.set_num_threads(threads)
    return {
        "small": (robcurves.wrap(small), xte, yte),
        "mlp": (robcurves.wrap(mlp), xte, yte),
        "cnn": (robcurves.wrap(cnn, preprocessing={"mean": 0.3, "std": 0.4}),
                xte.reshape(-1, 1, 8, 8), yte),
    }


# ---------------------------------------------------------------------------------- IBP
def _test_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AvgPool2d(2),
                        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()), nn.Flatten(),
                        nn.Linear(6 * 4 * 4, 12), nn.BatchNorm1d(12), nn.ReLU(),
                        nn.Linear(12, 3))
    with torch.no_grad():
        for bn in (net[1], net[7]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(-1.5, 1.5)
    return net.eval()


def test_ibp_bounds_contain_outputs_of_random_box_points():
    net = _test_net()
    lower = torch.rand(6, 1, 16, 16) * 0.8
    upper = lower + torch.rand(6, 1, 16, 16) * 0.2
    lo, hi = ibp_bounds(net, lower, upper)
    assert lo.shape == hi.shape == (6, 3)
    with torch.no_grad():
        for _ in range(50):
            u = torch.rand_like(lower)
            u[:, :, :2] = torch.randint(0, 2, u[:, :, :2].shape).float()  # corners too
            out = net(lower + u * (upper - lower))
            assert (out >= lo - 1e-5).all() and (out <= hi + 1e-5).all()
    # a point box gives the exact output
    lo0, hi0 = ibp_bounds(net, lower, lower)
    with torch.no_grad():
        assert torch.allclose(lo0, net(lower), atol=1e-5)
        assert torch.allclose(hi0, net(lower), atol=1e-5)


def test_ibp_bounds_are_differentiable_in_the_parameters():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.rand(4, 1, 4, 4)
    lo, hi = ibp_bounds(net, (x - 0.1).clamp(0, 1), (x + 0.1).clamp(0, 1))
    (hi - lo).sum().backward()
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0
    assert net[3].weight.grad.abs().sum() > 0


def test_unsupported_layers_are_named():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
    with pytest.raises(ValueError, match=r"unsupported layer 3 \('2.1': Tanh\)"):
        ibp_bounds(net, torch.zeros(1, 4), torch.ones(1, 4))
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="MaxPool2d"):
        certify(cnn, np.random.rand(2, 1, 6, 6), np.array([0, 1]), "inf", "crown")
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    with pytest.raises(ValueError, match="training mode"):
        ibp_bounds(bn, torch.zeros(2, 4), torch.ones(2, 4))


def test_unsupported_norms_and_methods_are_named():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    x, y = np.random.rand(3, 2), np.zeros(3, dtype=int)
    with pytest.raises(ValueError, match="does not support norm l2"):
        certify(net, x, y, 2, "milp")
    with pytest.raises(ValueError, match="unknown norm"):
        certify(net, x, y, 3, "crown")
    with pytest.raises(ValueError, match="unknown certification method 'deeppoly'"):
        certify(net, x, y, "inf", "deeppoly")
    with pytest.raises(ValueError, match="needs an affine model"):
        certify(net, x, y, "inf", "exact-linear")
    with pytest.raises(ValueError, match="inputs must lie in bounds"):
        certify(net, x + 2, y, "inf", "crown")


# ------------------------------------------------------------------ concretization
@pytest.mark.parametrize("p", [math.inf, 2.0, 1.0])
def test_concretize_lower_is_sound_and_tight(p):
    g = torch.Generator().manual_seed(1)
    n, k, d = 3, 4, 6
    a = torch.randn(n, k, d, generator=g, dtype=torch.float64)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.4, 1.5], dtype=torch.float64)
    bound = concretize_lower(a, x, eps, p, (0.0, 1.0))
    for i in range(n):
        for j in range(k):
            # reference: the exact minimum by a convex solver on the ball intersected with the box
            ref = _min_linear_over_domain(a[i, j].numpy(), x[i].numpy(), float(eps[i]), p)
            assert bound[i, j] <= ref + 1e-7
            assert bound[i, j] >= ref - 1e-4 * max(1.0, abs(ref))


def _min_linear_over_domain(a, x, eps, p):
    d = a.size
    box = list(zip(-x, 1 - x, strict=True))
    if p == 2.0:
        cons = [{"type": "ineq", "fun": lambda z: eps ** 2 - z @ z, "jac": lambda z: -2 * z}]
        best = math.inf
        for s in range(5):
            z0 = np.random.default_rng(s).uniform(-1, 1, d) * 1e-3
            r = scipy.optimize.minimize(lambda z: a @ z, z0, jac=lambda z: a, bounds=box,
                                        constraints=cons, method="SLSQP",
                                        options={"ftol": 1e-12, "maxiter": 500})
            best = min(best, float(a @ r.x))
        return float(a @ x) + best
    if p == math.inf:
        bnds = [(max(lo, -eps), min(hi, eps)) for lo, hi in box]
        r = scipy.optimize.linprog(a, bounds=bnds, method="highs")
        return float(a @ x) + r.fun
    # l1: delta = u - v
    c = np.concatenate([a, -a])
    bnds = [(0, hi) for _, hi in box] + [(0, -lo) for lo, _ in box]
    r = scipy.optimize.linprog(c, A_ub=np.ones((1, 2 * d)), b_ub=[eps], bounds=bnds,
                               method="highs")
    return float(a @ x) + r.fun


# -------------------------------------------------------------------- linear models
@pytest.mark.parametrize("norm", ["inf", 2, 1])
def test_exact_linear_matches_closed_form_and_bounds_the_attack(norm):
    lin, x, y = linear_problem(dim=10, classes=4, n=30)
    d = certify(lin, x.numpy(), y.numpy(), norm, "exact-linear")
    p = robcurves.parse_norm(norm)
    ref = exact_linear_distances(lin, x, y, p)
    inside = d.settings["n_box_binding"] == 0
    assert d.kind == "exact"
    if inside:
        np.testing.assert_allclose(d.distances, ref, rtol=1e-9, atol=1e-12)
    else:  # the box can only make distances larger
        assert (d.distances >= ref - 1e-12).all()
    # the same through a wrapped nn.Sequential and through (W, b)
    seq = certify(nn.Sequential(lin), x.numpy(), y.numpy(), norm, "exact-linear")
    np.testing.assert_allclose(seq.distances, d.distances, rtol=1e-6)
    wb = certify((lin.weight.detach().numpy(), lin.bias.detach().numpy()), x.numpy(),
                 y.numpy(), norm, "exact-linear")
    np.testing.assert_allclose(wb.distances, d.distances, rtol=1e-9)
    att = robcurves.distances(lin, x, y, norm)
    assert (att.distances >= d.distances * (1 - 1e-5) - 1e-7).all()
    # and the attack finds them closely on a linear model
    assert np.median(att.distances / np.maximum(d.distances, 1e-12)) < 1.05


def test_default_method_is_exact_on_affine_models():
    """method="auto" (the default) is exact on every form of affine model (the closed form,
    where CROWN's bisection lands up to a bracket step below) and CROWN on ReLU nets."""
    lin, x, y = linear_problem(dim=10, classes=4, n=30)
    xs, ys = x.numpy(), y.numpy()
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    for norm in ["inf", 2, 1]:
        ref = exact_linear_distances(lin, x, y, robcurves.parse_norm(norm))
        for model in (lin, nn.Sequential(nn.Flatten(), Normalize(0.0, 1.0, axis=-1), lin),
                      robcurves.wrap(lin), (w, b)):
            d = certify(model, xs, ys, norm)
            assert d.method == "exact-linear" and d.kind == "exact"
            np.testing.assert_allclose(d.distances, ref, rtol=1e-6)
    from sklearn.linear_model import LogisticRegression

    xtr, ytr, xte, yte = _digits(300, 10)
    logreg = LogisticRegression(max_iter=200).fit(xtr, ytr)
    d = certify(logreg, xte, yte, 2)
    assert d.method == "exact-linear" and d.kind == "exact"
    relu = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4))
    assert certify(relu, xs[:3], ys[:3], "inf", iters=4).method == "crown"


def _unbounded(module: nn.Module):
    """``module`` wrapped without an input box (what ``wrap(module, bounds=None)`` gives)."""
    clf = robcurves.wrap(module)
    clf.bounds = (-math.inf, math.inf)
    return clf


def test_exact_linear_on_unbounded_inputs_is_the_closed_form():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(1, 12)), rng.normal(size=1)
    x = rng.normal(scale=20.0, size=(30, 12))  # far outside [0, 1]
    y = (x @ w[0] + b[0] > 0).astype(int)
    for norm, q in (("inf", 1), (2, 2), (1, math.inf)):
        d = certify((w, b), x, y, norm, bounds=(-math.inf, math.inf))
        assert d.method == "exact-linear" and d.settings["n_box_binding"] == 0
        ref = np.abs(x @ w[0] + b[0]) / np.linalg.norm(w[0], ord=q)
        np.testing.assert_allclose(d.distances, ref, rtol=1e-10)
    lin = nn.Linear(12, 4)
    x4 = torch.randn(30, 12) * 20
    with torch.no_grad():
        y4 = lin(x4).argmax(1)
    for norm in ["inf", 2, 1]:
        p = robcurves.parse_norm(norm)
        d = certify(lin, x4.numpy(), y4.numpy(), norm, bounds=(-math.inf, math.inf))
        np.testing.assert_allclose(d.distances, exact_linear_distances(lin, x4, y4, p),
                                   rtol=1e-6)
        # CROWN on the same affine model: the domain is the ball alone, so it is exact up to
        # the bisection step of a bracket found by doubling
        cr = certify(_unbounded(nn.Sequential(lin)), x4.numpy(), y4.numpy(), norm, "crown",
                     iters=14)
        assert cr.settings["bracket"] == "doubling" and cr.settings["bounds"][0] == -math.inf
        assert (cr.distances <= d.distances * (1 + 1e-9)).all()
        step = np.maximum(2 * d.distances, 1.0) / 2 ** 14  # bracket: first power of 2 above
        assert (cr.distances >= d.distances - step - 1e-9).all()


@pytest.mark.parametrize("norm", ["inf", 2, 1])
def test_crown_on_unbounded_inputs_is_below_attack_distances(norm):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    clf = _unbounded(net)
    x = torch.randn(12, 6) * 3
    with torch.no_grad():
        y = net(x).argmax(1)
    att = robcurves.distances(clf, x, y, norm)
    assert np.isfinite(att.distances).all() and (np.abs(x.numpy()) > 1).any()
    for method in ("crown", "ibp"):
        cert = certify(clf, x.numpy(), y.numpy(), norm, method, iters=12)
        assert (cert.distances <= att.distances * (1 + 1e-6) + 1e-7).all(), method
        assert np.isfinite(cert.distances).all() and (cert.distances > 0).all()
    if norm != 2:  # the MILP's big-M bounds come from the ball alone
        mi = certify(clf, x[:4].numpy(), y[:4].numpy(), norm, "milp", upper=att.distances[:4],
                     time_limit=20)
        assert mi.kind == "exact"
        assert (mi.distances <= att.distances[:4] * (1 + 1e-6) + 1e-7).all()
        assert (mi.distances >= cert.distances[:4] * (1 - 1e-6) - 1e-7).all()
        with pytest.raises(ValueError, match="needs a finite search radius"):
            certify(clf, x.numpy(), y.numpy(), norm, "milp")


def _halfspace_reference(g, m, x, p):
    """Independent solutions of min ||delta||_p, g.delta >= m, x + delta in [0, 1]."""
    dlo, dhi = -x, 1 - x
    room = np.where(g > 0, dhi, -dlo)  # how far each coordinate can move in g's direction
    gain = np.abs(g)
    if p == math.inf:  # reach(t) = sum |g_i| min(t, room_i), increasing: bisection on t
        lo_t, hi_t = 0.0, 1.0
        for _ in range(200):
            t = (lo_t + hi_t) / 2
            lo_t, hi_t = (lo_t, t) if (gain * np.minimum(t, room)).sum() >= m else (t, hi_t)
        return hi_t
    if p == 1.0:  # fractional knapsack: spend on the largest |g_i| first
        total = 0.0
        for i in np.argsort(-gain):
            need = m / gain[i]
            if room[i] >= need:
                return total + need
            total += room[i]
            m -= gain[i] * room[i]
        return math.inf
    cons = [{"type": "ineq", "fun": lambda z: g @ z - m, "jac": lambda z: g}]
    r = scipy.optimize.minimize(lambda z: z @ z, np.clip(g * m / (g @ g), dlo, dhi),
                                jac=lambda z: 2 * z, bounds=list(zip(dlo, dhi, strict=True)),
                                constraints=cons, method="SLSQP",
                                options={"ftol": 1e-14, "maxiter": 1000})
    return float(np.sqrt(r.x @ r.x))


@pytest.mark.parametrize("p", [math.inf, 2.0, 1.0])
def test_exact_linear_when_the_box_binds_matches_lp_and_qp(p):
    rng = np.random.default_rng(3)
    n_bind = 0
    for _ in range(25):
        d = 8
        x = rng.uniform(0, 1, d)
        x[:3] = rng.choice([0.0, 1.0, 0.98, 0.02], 3)  # near the faces: the box binds
        g = rng.normal(size=d)
        m = rng.uniform(0.2, 1.5)
        dist, bound = halfspace_distance(g, m, x, p, (0.0, 1.0))
        ref = _halfspace_reference(g, m, x, p)
        n_bind += bound
        if math.isinf(ref):
            assert math.isinf(dist)
        else:
            assert dist == pytest.approx(ref, rel=2e-5, abs=1e-8)
    assert n_bind >= 10  # the test really exercises the LP/QP path


def test_exact_linear_box_binding_through_certify_and_attack_never_below():
    torch.manual_seed(2)
    lin = nn.Linear(12, 3)
    x = torch.rand(40, 12)
    x[:, :6] = (x[:, :6] > 0.5).float()  # half the pixels at the faces
    with torch.no_grad():
        y = lin(x).argmax(1)
        y[:5] = (y[:5] + 1) % 3  # a few misclassified points: distance 0
    for norm in ["inf", 2, 1]:
        d = certify(lin, x.numpy(), y.numpy(), norm, "exact-linear")
        assert d.settings["n_box_binding"] > 0
        assert (d.distances[:5] == 0).all()
        free = exact_linear_distances(lin, x, y, robcurves.parse_norm(norm))
        assert (d.distances[5:] >= free[5:] - 1e-9).all()
        assert (d.distances[5:] > free[5:] + 1e-6).any()  # the box made some larger
        att = robcurves.distances(lin, x, y, norm)
        assert (att.distances >= d.distances * (1 - 1e-5) - 1e-6).all()


def test_exact_linear_accepts_scikit_learn_models():
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    xtr, ytr, xte, yte = _digits(500, 30)
    for clf, cls in [(LogisticRegression(max_iter=300), None), (LinearSVC(), (3, 8))]:
        if cls is not None:  # binary: labels 3 and 8 (classes_ are not 0..K-1)
            keep, keep_te = np.isin(ytr, cls), np.isin(yte, cls)
            clf.fit(xtr[keep], ytr[keep])
            xs, ys = xte[keep_te], yte[keep_te]
        else:
            clf.fit(xtr, ytr)
            xs, ys = xte, yte
        d = certify(clf, xs, ys, 2, "exact-linear")
        pred = clf.predict(xs)
        np.testing.assert_array_equal(np.asarray(clf.classes_)[d.predictions], pred)
        # the distance moves the decision: check the closed form on a binary/multiclass model
        w, b = np.atleast_2d(clf.coef_), np.atleast_1d(clf.intercept_)
        if w.shape[0] == 1:
            ok = pred == ys
            ref = np.abs(xs @ w[0] + b[0]) / np.linalg.norm(w[0])
            assert (d.distances[ok] >= ref[ok] - 1e-9).all()
            assert (d.distances[~ok] == 0).all()
        else:
            assert ((d.distances == 0) == (pred != ys)).all()


# ----------------------------------------------------------------- ReLU networks
@pytest.fixture(scope="module")
def soundness_nets():
    """Small ReLU networks of several seeds and widths, trained briefly or left random, with
    ten held-out digits each (labels: the true ones for trained nets, the net's own
    predictions for random nets, so that the points have something to certify)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = _digits(n_train=400, n_test=10)
    nets = {}
    for name, seed, hidden, steps in (("mlp16-trained", 0, (16,), 60),
                                      ("mlp24x12-random", 1, (24, 12), 0),
                                      ("mlp10-trained", 2, (10,), 30)):
        torch.manual_seed(seed)
        layers, d = [], 64
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        net = nn.Sequential(*layers, nn.Linear(d, 10))
        if steps:
            net = _train(net, xtr, ytr, (64,), steps=steps)
            y = yte
        else:
            with torch.no_grad():
                y = net.eval()(torch.tensor(xte)).argmax(1).numpy()
        nets[name] = (robcurves.wrap(net), xte, y)
    torch.manual_seed(3)
    cnn = _train(nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(),
                               nn.Flatten(), nn.Linear(48, 10)), xtr, ytr, (1, 8, 8), steps=40)
    nets["cnn-trained"] = (robcurves.wrap(cnn), xte.reshape(-1, 1, 8, 8), yte)
    torch.set_num_threads(threads)
    return nets


@pytest.fixture(scope="module")
def soundness_attacks(soundness_nets):
    """Per (net name, norm), the default attacks' distances on the net's ten points, each
    computed once: the radii and the MILP tests below compare with the same adversarials."""
    class _PerNetNorm(dict):
        def __missing__(self, key):
            name, norm = key
            model, x, y = soundness_nets[name]
            self[key] = robcurves.distances(model, x, y, norm)
            return self[key]

    return _PerNetNorm()


@pytest.mark.parametrize("norm", ["inf", 2, 1])
def test_certified_radii_never_exceed_independent_attack_distances(soundness_nets,
                                                                   soundness_attacks, norm):
    """No bracket: CROWN and IBP search the whole box, so only soundness keeps them below the
    distances of adversarials the attacks found independently."""
    for name, (model, x, y) in soundness_nets.items():
        att = soundness_attacks[name, norm]
        correct = att.predictions == y
        assert correct.sum() >= 5, name
        for method in ("crown", "ibp"):
            cert = certify(model, x, y, norm, method, iters=10)
            assert cert.kind == "lower" and cert.settings["bracket"] == "box"
            assert (cert.distances <= att.distances * (1 + 1e-6) + 1e-7).all(), (name, method)
            assert (cert.distances[~correct] == 0).all()
            if method == "crown":  # sound and not vacuous
                assert (cert.distances[correct] > 0).mean() >= 0.8, name
                ratio = np.median(cert.distances[correct] / att.distances[correct])
                assert ratio > 0.2, (name, ratio)


@pytest.mark.parametrize("norm", ["inf", 1])
def test_exact_milp_lies_between_crown_and_attacks(soundness_nets, soundness_attacks, norm):
    """Without attack radii: the MILP's exact distance is at most every adversarial's the
    attacks found and at least CROWN's certified radius."""
    for name in ("mlp16-trained", "mlp10-trained"):  # random nets: test_milp_matches_brute_force
        model, x, y = soundness_nets[name]
        x, y = x[:4], y[:4]
        att = soundness_attacks[name, norm].subset(np.arange(4))  # the first 4 points
        crown = certify(model, x, y, norm, "crown", iters=12)
        mi = certify(model, x, y, norm, "milp", time_limit=20)
        solved = np.array([s in ("optimal", "misclassified") for s in mi.settings["status"]])
        assert solved.sum() >= 3, (name, mi.settings["status"])
        assert (mi.distances[solved] <= att.distances[solved] * (1 + 1e-6) + 1e-7).all(), name
        assert (mi.distances[solved] >= crown.distances[solved] * (1 - 1e-6) - 1e-7).all(), name
        up = np.array([math.inf if u is None else u for u in mi.settings["upper"]])
        assert (up[solved] <= mi.distances[solved] * (1 + 2e-4) + 1e-7).all()  # HiGHS gap


def test_preprocessing_is_folded_in(digits_nets):
    model, x, y = digits_nets["cnn"]
    explicit = nn.Sequential(Normalize(0.3, 0.4), model.module)
    a = certify(model, x[:5], y[:5], "inf", "crown", iters=6)
    b = certify(explicit, x[:5], y[:5], "inf", "crown", iters=6)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-9)
    steps = sequential_layers(explicit, (1, 8, 8))
    assert steps[0].name.endswith("Normalize)")


def _tiny_net() -> nn.Module:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    return net.eval().double()


@pytest.mark.parametrize("norm", ["inf", 1])
def test_milp_matches_brute_force_on_a_tiny_2d_network(norm):
    net = _tiny_net()
    h = 1 / 600
    grid = np.stack(np.meshgrid(np.arange(601) * h, np.arange(601) * h), -1).reshape(-1, 2)
    with torch.no_grad():
        gp = net(torch.tensor(grid)).argmax(1).numpy()
    x = np.array([[0.3, 0.6], [0.5, 0.5], [0.8, 0.2], [0.15, 0.85], [0.65, 0.7]])
    with torch.no_grad():
        y = net(torch.tensor(x)).argmax(1).numpy()
    p = robcurves.parse_norm(norm)
    mi = certify(net, x, y, norm, "milp", time_limit=20)
    assert mi.kind == "exact"
    for i in range(len(x)):
        other = grid[gp != y[i]]
        brute = robcurves._norms.lp_norm_np(other - x[i], p).min() if len(other) else math.inf
        assert mi.distances[i] <= brute + 1e-9  # grid points are real adversarials
        assert mi.distances[i] >= brute - 2 * h  # the grid is within h of the optimum
    crown = certify(net, x, y, norm, "crown")
    assert (crown.distances <= mi.distances + 1e-9).all()

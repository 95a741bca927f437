"""KW (Wong & Kolter 2018), MMR+AT and MMR-Universal training (issue 14, section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_certify_crown_patches import _net as _patch_test_net
from torch import nn

from robcurves import data as rdata
from robcurves.certificates._layers import ReLU, sequential_layers
from robcurves.certificates.crown import ibp_margins
from robcurves.certificates.milp import milp_distances
from robcurves.train import ThreatModel, fit, make_method
from robcurves.train._kw import kw_margins, kw_preactivation_bounds
from robcurves.train._mmr import hinge_topk, mmr_terms, region_distances
from robcurves.train.methods import Schedule

MLP_SMALL = {"width": 64}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    ds = rdata.load("digits")
    order = np.random.default_rng(0).permutation(ds.n)
    return ds.subset(np.sort(order[200:])), ds.subset(np.sort(order[:200]))


def _tiny_mlp(seed: int, d: int = 5, widths=(7, 6), k: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(d, w), nn.ReLU()]
        d = w
    layers.append(nn.Linear(d, k))
    return nn.Sequential(*layers).double()


# ------------------------------------------------------------------------------------- MMR
def _brute_force_geometry(net: nn.Sequential, x: np.ndarray):
    """Per point: the activation pattern, then the region's affine maps written out with
    numpy matrices: hidden units' (z, v) and the logits' (f, V)."""
    lin = [m for m in net if isinstance(m, nn.Linear)]
    ws = [m.weight.detach().numpy() for m in lin]
    bs = [m.bias.detach().numpy() for m in lin]
    out = []
    for xi in x:
        a_mat, a_off = np.eye(len(xi)), np.zeros(len(xi))  # input -> current layer input
        zs, vs = [], []
        h = xi
        for w, b in zip(ws[:-1], bs[:-1], strict=True):
            z = w @ h + b
            v = w @ a_mat  # gradient of every unit of this layer
            zs.append(z)
            vs.append(v)
            mask = (z > 0).astype(float)
            a_mat = mask[:, None] * v
            a_off = mask * (w @ a_off + b)
            h = np.maximum(z, 0)
        f = ws[-1] @ h + bs[-1]
        out.append((np.concatenate(zs), np.concatenate(vs), f, ws[-1] @ a_mat))
        assert np.allclose(a_mat @ xi + a_off, h)  # the region's map reproduces the net
    return out


def _brute_force_distances(net, x, y, q):
    d_b, d_d = [], []
    for (z, v, f, vf), yi in zip(_brute_force_geometry(net, x), y, strict=True):
        d_b.append(np.abs(z) / np.linalg.norm(v, ord=q, axis=1))
        row = np.full(len(f), np.inf)
        for k in range(len(f)):
            if k != yi:
                row[k] = (f[yi] - f[k]) / np.linalg.norm(vf[yi] - vf[k], ord=q)
        d_d.append(row)
    return np.array(d_b), np.array(d_d)


def _brute_force_mmr(d_b, d_d, gb, gd, kb, kd):
    def term(dist, g, k):
        return np.mean(np.maximum(0.0, 1 - np.sort(dist)[:k] / g))
    return np.array([term(b, gb, kb) + term(dd, gd, kd) for b, dd in zip(d_b, d_d, strict=True)])


@pytest.mark.parametrize("q", [1.0, 2.0, math.inf])
def test_region_and_decision_distances_match_brute_force(q):
    net = _tiny_mlp(0)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (12, 5))
    y = rng.integers(0, 4, 12)
    steps = sequential_layers(net, (5,), like=torch.zeros((), dtype=torch.float64))
    d_b, d_d = region_distances(steps, torch.from_numpy(x), torch.from_numpy(y), q)
    bb, bd = _brute_force_distances(net, x, y, q)
    np.testing.assert_allclose(d_b.detach().numpy(), bb, rtol=1e-10)
    np.testing.assert_allclose(d_d.detach().numpy(), bd, rtol=1e-10)
    # and the regulariser built on them: mean hinge over the k smallest distances
    for kb, kd in ((3, 4), (13, 2), (1, 1)):
        reg = mmr_terms(steps, torch.from_numpy(x), torch.from_numpy(y), (q,), (0.7,), (0.9,),
                        (1.0,), kb, kd, chunk=5)
        np.testing.assert_allclose(reg.detach().numpy(),
                                   _brute_force_mmr(bb, bd, 0.7, 0.9, kb, kd), rtol=1e-10)


def test_mmr_universal_sums_l1_and_linf_terms_over_the_union_of_nearest_units():
    net = _tiny_mlp(2)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (9, 5))
    y = rng.integers(0, 4, 9)
    steps = sequential_layers(net, (5,), like=torch.zeros((), dtype=torch.float64))
    kb, kd, g1, gi, l1, li = 4, 4, 2.0, 0.5, 3.0, 5.0
    reg = mmr_terms(steps, torch.from_numpy(x), torch.from_numpy(y), (math.inf, 1.0),
                    (g1, gi), (g1, gi), (l1, li), kb, kd).detach().numpy()
    b1, d1 = _brute_force_distances(net, x, y, math.inf)  # l1 distances (q = inf)
    bi, di = _brute_force_distances(net, x, y, 1.0)  # l_inf distances (q = 1)
    want = []
    for i in range(len(x)):
        union = set(np.argsort(b1[i])[:kb]) | set(np.argsort(bi[i])[:kb])
        region = sum(l1 * max(0, 1 - b1[i][j] / g1) + li * max(0, 1 - bi[i][j] / gi)
                     for j in union) / kb
        dec = (l1 * np.mean(np.maximum(0, 1 - np.sort(d1[i])[:kd] / g1))
               + li * np.mean(np.maximum(0, 1 - np.sort(di[i])[:kd] / gi)))
        want.append(region + dec)
    np.testing.assert_allclose(reg, want, rtol=1e-10)
    # not vacuous: for some point the nearest units differ between the norms
    assert any(set(np.argsort(b1[i])[:kb]) != set(np.argsort(bi[i])[:kb]) for i in range(9))


def test_region_geometry_of_a_conv_net_matches_autograd_gradients():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(3, 4, 3, stride=1, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    steps = sequential_layers(net, (1, 8, 8), like=x)
    d_b, d_d = region_distances(steps, x, y, 1.0)
    pre = [net[0], net[:3], net[:6]]  # the pre-activations of the three ReLUs
    jacobian = torch.autograd.functional.jacobian
    for i in range(3):
        want_b = []
        for sub in pre:
            z = sub(x[i:i + 1]).reshape(-1).detach()
            jac = jacobian(lambda v, sub=sub: sub(v).reshape(-1), x[i:i + 1]).reshape(len(z), -1)
            want_b.append(z.abs() / jac.abs().sum(1))
        torch.testing.assert_close(d_b[i], torch.cat(want_b))
        f = net(x[i:i + 1])[0].detach()
        g = jacobian(lambda v: net(v)[0], x[i:i + 1]).reshape(3, -1)
        for k in range(3):
            if k != int(y[i]):
                want = (f[y[i]] - f[k]).detach() / (g[y[i]] - g[k]).abs().sum()
                torch.testing.assert_close(d_d[i, k], want)


def test_mmr_conv_fast_path_equals_the_identity_batch_values_and_gradients(monkeypatch):
    # two conv layers with non-square kernels, strides and paddings, several channels: the
    # patch/fold fast path must give the regulariser and its parameter gradients of the dense
    # identity-batch computation (the same function with the fast path switched off)
    from robcurves.train import _mmr

    torch.manual_seed(7)
    convs = nn.Sequential(nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(0, 1)), nn.ReLU(),
                          nn.Conv2d(3, 4, (2, 3), stride=(2, 1), padding=(1, 1)), nn.ReLU(),
                          nn.Flatten())
    flat = convs(torch.zeros(1, 2, 9, 7)).shape[1]
    net = nn.Sequential(*convs, nn.Linear(flat, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.rand(7, 2, 9, 7, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1])
    steps = sequential_layers(net, (2, 9, 7), like=x)
    assert _mmr._conv_plan(steps) is not None  # the fast path is the one tested
    params = list(net.parameters())
    cases = [((1.0,), (9.0,), (9.0,), (1.0,)), ((2.0,), (5.0,), (7.0,), (1.5,)),
             ((math.inf, 1.0), (40.0, 9.0), (40.0, 9.0), (3.0, 0.5))]
    for qs, gb, gd, w in cases:
        for kb, kd in ((60, 3), (5, 2)):
            fast = mmr_terms(steps, x, y, qs, gb, gd, w, kb, kd)
            with monkeypatch.context() as m:
                m.setattr(_mmr, "_conv_plan", lambda steps: None)
                dense = mmr_terms(steps, x, y, qs, gb, gd, w, kb, kd)
            torch.testing.assert_close(fast, dense, rtol=1e-10, atol=1e-12)
            assert float(dense.detach().min()) > 0
            weights = torch.arange(1.0, 8.0, dtype=torch.float64)  # a gradient per point
            g_fast = torch.autograd.grad((fast * weights).sum(), params)
            g_dense = torch.autograd.grad((dense * weights).sum(), params)
            for a, b in zip(g_fast, g_dense, strict=True):
                assert float(b.abs().max()) > 0
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_hinge_topk_is_the_mean_hinge_of_the_k_nearest():
    d = torch.tensor([[0.5, 0.1, 2.0, 0.3]])
    # k = 2: distances 0.1, 0.3 -> hinges 0.9, 0.7 with gamma 1
    assert float(hinge_topk(d, 1.0, 2)) == pytest.approx(0.8)
    assert float(hinge_topk(d, 1.0, 10)) == pytest.approx((0.9 + 0.7 + 0.5) / 4)


# -------------------------------------------------------------------------------------- KW
def _certified_radius_kw(steps, x, y, p, iters=20):
    lo = torch.zeros(x.shape[0], dtype=x.dtype)
    hi = torch.full((x.shape[0],), 4.0 if p == 1.0 else 1.0, dtype=x.dtype)
    with torch.no_grad():
        for _ in range(iters):
            mid = (lo + hi) / 2
            m = kw_margins(steps, x, y, mid, p, (0.0, 1.0))
            ok = m.masked_fill(F.one_hot(y, m.shape[1]).bool(), math.inf).amin(1) > 0
            lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lo


@pytest.mark.parametrize("p", [math.inf, 1.0])
def test_kw_never_certifies_beyond_the_exact_milp_distance(p):
    net = _tiny_mlp(5, d=6, widths=(10, 8), k=3)
    torch.manual_seed(6)
    x = torch.rand(6, 6, dtype=torch.float64)
    y = net(x).argmax(1)
    steps = sequential_layers(net, (6,), like=x)
    res = milp_distances(steps, x, y, p, (0.0, 1.0), time_limit=10)
    solved = np.array([s == "optimal" for s in res.status])
    assert solved.sum() >= 5
    exact = torch.from_numpy(res.upper)  # an adversarial exists at this distance
    radius = _certified_radius_kw(steps, x, y, p)
    assert (radius[solved] <= exact[solved] * (1 + 1e-9)).all(), (radius, exact)
    assert (radius > 0).all()  # not vacuous: every point gets some certificate
    # the margins at the exact distance: some class is not certified
    with torch.no_grad():
        m = kw_margins(steps, x[solved], y[solved], exact[solved], p, (0.0, 1.0))
    m = m.masked_fill(F.one_hot(y[solved], 3).bool(), math.inf)
    assert (m.amin(1) <= 1e-9).all()


@pytest.mark.parametrize("p", [math.inf, 2.0, 1.0])
@pytest.mark.parametrize("intermediate", ["dual", "ibp"])
def test_kw_margin_is_below_every_margin_inside_the_ball(p, intermediate):
    """A 2-D input: the ball ∩ box is sampled densely; the bound must lie below every sample."""
    net = _tiny_mlp(7, d=2, widths=(16, 12), k=3)
    x = torch.tensor([[0.3, 0.6], [0.8, 0.2], [0.5, 0.5]], dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    steps = sequential_layers(net, (2,), like=x)
    eps = torch.tensor([0.15, 0.3, 0.25], dtype=torch.float64)
    with torch.no_grad():
        m = kw_margins(steps, x, y, eps, p, (0.0, 1.0), intermediate)
        g = torch.linspace(-1, 1, 301, dtype=torch.float64)
        grid = torch.cartesian_prod(g, g)
        for i in range(3):
            delta = grid * eps[i]
            inside = delta.norm(p=p, dim=1) <= eps[i]
            pts = (x[i] + delta[inside]).clamp(0, 1)
            f = net(pts)
            true = f[:, y[i]:y[i] + 1] - f  # margins at every sample
            assert (m[i] <= true.amin(0) + 1e-9).all(), (p, i, m[i], true.amin(0))
            # and not vacuous: within a factor of the exact spread
            assert (m[i] > true.amin(0) - 10.0).all()


def test_kw_is_exact_and_no_looser_than_ibp_when_every_relu_is_stable():
    net = _tiny_mlp(8, d=6, widths=(12, 10), k=4)
    torch.manual_seed(9)
    x = torch.rand(6, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    steps = sequential_layers(net, (6,), like=x)
    eps = torch.full((6,), 1e-3, dtype=torch.float64)
    with torch.no_grad():
        pre, _ = kw_preactivation_bounds(steps, x, eps, math.inf, (0.0, 1.0))
        assert all(((lo >= 0) | (hi <= 0)).all() for lo, hi in pre.values())
        m = kw_margins(steps, x, y, eps, math.inf, (0.0, 1.0))
        ib = ibp_margins(steps, x, y, eps, math.inf, (0.0, 1.0))  # (N, K-1): classes != y
        others = ~F.one_hot(y, 4).bool()
        assert (m[others].reshape(6, 3) >= ib - 1e-12).all()
    # exact: the region's affine margin minimised over the box (closed form)
    for i in range(6):
        xi = x[i:i + 1].clone().requires_grad_(True)
        f = net(xi)[0]
        for k in range(4):
            if k == int(y[i]):
                continue
            grad, = torch.autograd.grad(f[y[i]] - f[k], xi, retain_graph=True)
            lo_d = (x[i] - eps[i]).clamp_min(0) - x[i]
            hi_d = (x[i] + eps[i]).clamp_max(1) - x[i]
            exact = (f[y[i]] - f[k]).detach() + torch.where(grad[0] > 0, grad[0] * lo_d,
                                                            grad[0] * hi_d).sum()
            assert float(m[i, k]) == pytest.approx(float(exact), abs=1e-10)


def test_kw_bound_is_differentiable_in_the_weights():
    net = _tiny_mlp(10)
    x = torch.rand(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    steps = sequential_layers(net, (5,), like=x)
    m = kw_margins(steps, x, y, torch.full((4,), 0.1, dtype=torch.float64), math.inf, (0, 1))
    F.cross_entropy(-m, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in net.parameters())


def _tiny_cnn() -> nn.Sequential:
    """The CROWN patch tests' conv net (see there), seed 11, in eval mode."""
    return _patch_test_net(seed=11).eval()


def _kw_rows_reference(steps, i, x, eps, p, bounds, pts, rows, rel, cache):
    """The dual bounds as first written: for every (point, neuron) pair its own dense unit
    row, with that point's relaxations copied for it, pushed back through every step."""
    import robcurves.train._kw as kw

    shape = steps[i].in_shape
    r = pts.numel()
    eye = torch.zeros((r, 1, math.prod(shape)), dtype=x.dtype)
    eye[torch.arange(r), 0, rows] = 1.0
    a_in, c_lo, c_hi = kw._dual_backward(steps, i, eye.reshape((r, 1) + shape),
                                         {j: (d[pts], t[pts]) for j, (d, t) in rel.items()})
    lower = kw.concretize_lower(a_in, x[pts], eps[pts], p, bounds) + c_lo
    upper = c_hi - kw.concretize_lower(-a_in, x[pts], eps[pts], p, bounds)
    return lower[:, 0], upper[:, 0]


@pytest.mark.parametrize("p,eps", [(math.inf, 0.06), (2.0, 0.6), (1.0, 1.5)])
def test_kw_fast_paths_give_the_reference_bounds_and_gradients(monkeypatch, p, eps):
    """Conv rows kept as patches and dense rows batched per point (the fast paths) against one
    dense unit row per (point, neuron) pair (the reference)."""
    import robcurves.train._kw as kw

    net = _tiny_cnn()
    torch.manual_seed(12)
    x = torch.rand(5, 2, 11, 10, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    e = torch.full((5,), eps, dtype=torch.float64)
    e[3] = eps / 3  # points with unequal numbers of unstable neurons
    steps0 = sequential_layers(net, (2, 11, 10), like=x)
    relus = [i for i, s in enumerate(steps0) if isinstance(s, ReLU)]
    assert [kw._patch_geometries(steps0, i) is not None for i in relus] == [True, True, False]

    def run():
        steps = sequential_layers(net, (2, 11, 10), like=x)  # fresh graph of the BN's scale
        pre, _ = kw_preactivation_bounds(steps, x, e, p, (0.0, 1.0))
        m = kw_margins(steps, x, y, e, p, (0.0, 1.0))
        net.zero_grad()
        F.cross_entropy(-m, y).backward()
        return ({i: (lo.detach(), hi.detach()) for i, (lo, hi) in pre.items()}, m.detach(),
                [q.grad.clone() for q in net.parameters()])

    pre, m, grads = run()
    monkeypatch.setattr(kw, "_tighten", _kw_rows_reference)
    pre_ref, m_ref, grads_ref = run()
    for i in relus:  # the dual pass tightened neurons of every layer, unequally per point
        lo, hi = (b.flatten(1) for b in pre_ref[i])
        counts = ((lo < 0) & (hi > 0)).sum(1)
        assert int(counts.sum()) >= 10 and int(counts.max()) > int(counts.min()), counts
        torch.testing.assert_close(pre[i], pre_ref[i], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m, m_ref, rtol=1e-10, atol=1e-12)
    assert all(float(g.abs().sum()) > 0 for g in grads_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)


# ------------------------------------------------------------------- training: robustness
EPS = 0.15
TRAIN = dict(arch="mlp", arch_kwargs=MLP_SMALL, epochs=5, lr=3e-3, progress=False,
             eval_points=10, eval_steps=2, seed=0, norm="inf", eps=EPS)


@pytest.fixture(scope="module")
def standard(digits):
    """The reference: the same architecture, data, epochs and seed, trained on clean data."""
    return fit(digits[0], method="standard", **TRAIN)


def _robust_accuracy(model, test, norm="inf", eps=EPS, n=100):
    """Fraction of test points whose minimal adversarial distance found by the attack engine
    (not the training attack) exceeds ``eps``."""
    from robcurves.evaluate import distances

    d = distances(model, test.x[:n], test.y[:n], norm=norm)
    return float(np.mean(d.distances > eps))


def test_kw_training_certifies_and_resists_where_standard_does_not(digits, standard):
    train, test = digits
    cert = fit(train, method="kw", warmup=3, **TRAIN)
    xt, yt = torch.from_numpy(test.x[:100]), torch.from_numpy(test.y[:100]).long()
    meth = make_method("kw", [ThreatModel("inf", EPS)])
    ca = {n: meth.certified_accuracy(m.eval(), xt, yt) for n, m in (("st", standard),
                                                                    ("kw", cert))}
    rob = {n: _robust_accuracy(m, test) for n, m in (("st", standard), ("kw", cert))}
    assert ca["kw"] >= 0.3 and ca["kw"] >= ca["st"] + 0.25, ca
    assert rob["kw"] >= rob["st"] + 0.1, rob
    assert rob["kw"] >= ca["kw"] - 1e-9  # certified points are never broken by an attack
    meta = cert.robcurves_meta
    assert meta["method"] == "kw" and f"linf@{EPS:g}" in meta["kw_certified_accuracy"]
    assert meta["history"][0]["eps_scale"] < 1.0 and meta["history"][-1]["eps_scale"] == 1.0


@pytest.mark.parametrize("method", ["mmr-at", "mmr-universal"])
def test_mmr_training_is_more_robust_than_standard(digits, standard, method):
    train, test = digits
    opts = {"ramp_epochs": 2}
    if method == "mmr-at":
        opts["steps"] = 5
    mm = fit(train, method=method, **TRAIN, **opts)
    rob = {n: _robust_accuracy(m, test) for n, m in (("st", standard), ("mmr", mm))}
    assert rob["mmr"] >= rob["st"] + 0.1, rob


# ------------------------------------------------------------------------------- options
def test_schedules_follow_the_published_ones():
    m = make_method("mmr-at", [ThreatModel("inf", 0.1)])
    assert m.options["lam"] == 2.0 and m.options["gamma_b"] == 0.15
    assert m.options["ae_frac"] == 0.5
    # ramp: 0.1 in the first epoch, 1 from the tenth on
    assert m.ramp(Schedule(epoch=0.5, epochs=100)) == pytest.approx(0.1)
    assert m.ramp(Schedule(epoch=9.0, epochs=100)) == 1.0
    # k_B: 10% of the units in epoch 1 moving to 2% in the last (4904 units of cnn-small)
    assert m.k_b(Schedule(epoch=0.0, epochs=100), 4904) == int(490 + (98 - 490) / 100)
    assert m.k_b(Schedule(epoch=99.5, epochs=100), 4904) == 98
    u = make_method("mmr-universal", [ThreatModel("inf", 0.1)])
    assert (u.options["gamma_l1"], u.options["gamma_linf"]) == (1.0, 0.15)
    assert (u.options["lambda_l1"], u.options["lambda_linf"]) == (3.0, 40.0)
    assert (u.options["kb_start"], u.options["kb_end"], u.options["ae_frac"]) == (0.2, 0.05, 0)
    k = make_method("kw", [ThreatModel("inf", 0.3)])
    assert k.eps_now(Schedule(eps_scale=0.0)) == pytest.approx(0.01)
    assert k.eps_now(Schedule(eps_scale=0.5)) == pytest.approx(0.155)
    assert make_method("mmr-at", [ThreatModel("l2", 0.3)]).options["gamma_d"] == 0.45


@pytest.mark.parametrize("method,threat,opts,match", [
    ("kw", "linf:0.1", {"eps_start": 0.5}, "eps_start must lie in"),
    ("kw", "linf:0.1", {"intermediate": "crown"}, "intermediate must be one of"),
    ("kw", "linf:0.1,l2:1", {}, "exactly one threat model"),
    ("mmr-at", "l1:5", {}, "mmr-at trains against l_inf or l2"),
    ("mmr-at", "linf:0.1", {"gamma_b": -1.0}, "gamma_b must be a number > 0"),
    ("mmr-at", "linf:0.1", {"ae_frac": 1.5}, r"ae_frac must lie in \[0, 1\]"),
    ("mmr-at", "linf:0.1", {"k_d": 0}, "k_d must be an integer >= 1"),
    ("mmr-universal", "linf:0.1", {"lam": 2.0}, "not lam"),
    ("mmr-universal", "linf:0.1", {"ae_frac": 0.5}, "no adversarial examples"),
    ("mmr-universal", "linf:0.1", {"kb_end": 2}, r"kb_end must lie in \[0, 1\]"),
    ("mmr-at", "linf:0.1", {"beta": 1.0}, "bad options"),
])
def test_bad_options_are_refused_before_any_work(method, threat, opts, match):
    from robcurves.train.methods import parse_threats

    with pytest.raises(ValueError, match=match):
        make_method(method, parse_threats(threat), **opts)


def test_fit_refuses_bad_options_before_training(digits):
    train, _ = digits
    with pytest.raises(ValueError, match="eps_start must lie in"):
        fit(train.subset(slice(0, 20)), arch="mlp", method="kw", eps=0.1, eps_start=0.2,
            progress=False)


# ----------------------------------------------------------------------------------- CLI
def test_cli_passes_the_method_options_and_records_them(tmp_path, capsys):
    from robcurves.cli import main
    from robcurves.train import read_meta

    out = tmp_path / "m.rcm"
    assert main(["train", "--data", "digits", "--arch", "mlp", "--arch-opt", "width=16",
                 "--method", "mmr-at", "--gamma-b", "0.2", "--mmr-lambda", "0.5",
                 "--ramp-epochs", "1", "--steps", "2", "--epochs", "1", "--batch-size", "256",
                 "--eval-points", "20",
                 "--out", str(out), "--no-progress"]) == 0
    meta = read_meta(out)
    assert meta["method"] == "mmr-at"
    assert meta["method_options"] == {"gamma_b": 0.2, "lam": 0.5, "ramp_epochs": 1.0}
    out_kw = tmp_path / "kw.rcm"
    assert main(["train", "--data", "digits", "--arch", "mlp", "--arch-opt", "width=16",
                 "--method", "kw", "--eps", "0.05", "--epochs", "1", "--batch-size", "256",
                 "--eval-points", "20",
                 "--out", str(out_kw), "--no-progress"]) == 0
    assert "KW-certified accuracy linf@0.05" in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--method", "kw", "--eps-start", "0.5"], "eps_start must lie in [0, eps=0.1]"),
    (["--method", "mmr-universal", "--gamma-b", "0.1"], "not gamma_b"),
    (["--method", "standard", "--ramp-epochs", "3"], "bad options ['ramp_epochs']"),
])
def test_cli_refuses_bad_method_options_with_one_clear_line(tmp_path, capsys, extra, message):
    from robcurves.cli import main

    out = tmp_path / "m.rcm"
    assert main(["train", "--data", "digits", "--arch", "mlp", *extra, "--out", str(out),
                 "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()

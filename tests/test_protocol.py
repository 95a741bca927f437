"""The Square attack and the fixed-eps AutoAttack protocol: closed forms on linear models (an
adversarial just above the minimal distance, none below it), forward-only pass counts, the
protocol never above any single attack or the clean accuracy, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import robcurves
from robcurves._norms import dual_norm, lp_norm
from robcurves.attacks import apgd, square
from robcurves.attacks._square import p_schedule
from robcurves.evaluate import verify_adversarials
from robcurves.model import wrap


class _Affine(nn.Module):
    """Two classes with logits ``(-s/2, s/2)``, ``s = w . x + b``."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w.flatten(), b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s / 2, s / 2], 1)


def _affine_problem(weights: str, n: int = 24, side: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if weights == "random":
        w = torch.randn(1, side, side, generator=g)
    else:  # spatially smooth, as input gradients of image models tend to be
        i = torch.arange(side, dtype=torch.float32)
        w = (torch.sin(i / 3)[:, None] + torch.cos(i / 4)[None, :] + 0.3)[None]
    net = _Affine(w, 0.3)
    x = torch.randn(n, 1, side, side, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x, y


def _minimal(net: _Affine, x: torch.Tensor, p: float) -> torch.Tensor:
    """The closed-form minimal l_p distance of an affine two-class model without a box."""
    s = x.flatten(1).double() @ net.w.double() + net.b
    return (s.abs() / torch.linalg.vector_norm(net.w.double(), ord=dual_norm(p))).float()


# l_inf: random weights, just above the minimum. l2: the published l2 steps only ever add
# zero-mean two-halves perturbations, so a linear model needs a wider margin (measured: at
# 1000 queries on smooth 8x8 weights 0% broken at 1.3x, 40% at 1.6x, 100% at 2x).
CASES = [(math.inf, "random", None, 1.05, 600), (math.inf, "smooth", (-30.0, 30.0), 1.05, 600),
         (2.0, "smooth", None, 2.5, 600)]


@pytest.mark.parametrize("p, weights, bounds, factor, queries", CASES)
def test_square_on_affine_model_finds_closed_form_adversarial(p, weights, bounds, factor,
                                                              queries) -> None:
    net, x, y = _affine_problem(weights, side=6 if p == math.inf else 8)
    clf = wrap(net, bounds=bounds)
    d = _minimal(net, x, p)
    adv = square(clf, x, y, p, eps=d * factor, n_queries=queries, seed=1)
    dist, _, rejected = verify_adversarials(clf, x, y, adv, p)
    assert rejected == 0
    assert np.isfinite(dist).mean() >= 0.95, np.isfinite(dist).mean()
    found = np.isfinite(dist)
    # inside the eps ball (up to float32 rounding), never closer than the minimum
    assert (dist[found] <= d.numpy()[found] * factor * (1 + 1e-5)).all()
    assert (dist[found] >= d.numpy()[found] * (1 - 1e-4)).all()


@pytest.mark.parametrize("p", [math.inf, 2.0])
def test_square_below_minimal_distance_returns_clean_inputs(p: float) -> None:
    net, x, y = _affine_problem("smooth", n=12)
    clf = wrap(net, bounds=None)
    d = _minimal(net, x, p)
    adv = square(clf, x, y, p, eps=d * 0.98, n_queries=150)
    assert torch.equal(adv, x)  # nothing broken: every point comes back clean
    assert (clf.predict(adv) == y).all()


def test_square_counts_forward_passes_only() -> None:
    net, x, y = _affine_problem("smooth", n=10)
    clf = wrap(net, bounds=None)
    d = _minimal(net, x, math.inf)
    eps = d * 0.9
    eps[:4] = d[:4] * 3.0  # four points break early, six never
    adv = square(clf, x, y, math.inf, eps=eps, n_queries=120)
    assert clf.n_backward == 0
    assert (clf.predict(adv)[:4] != y[:4]).all()
    before = clf.n_forward - 10  # minus the predict above
    # each unbroken point costs exactly the clean pass plus n_queries; broken ones fewer
    assert 6 * 121 + 4 * 2 <= before < 6 * 121 + 4 * 121


def test_p_schedule_is_the_published_halving() -> None:
    got = [p_schedule(0.8, t, 10000) for t in (0, 10, 11, 50, 51, 200, 201, 8000, 8001, 9999)]
    assert got == [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 256, 0.8 / 512, 0.8 / 512]
    assert p_schedule(0.8, 50, 1000) == 0.1  # position 500 of 10000: rescaled
    assert p_schedule(0.8, 51, 1000) == 0.8 / 16


def _linf_step_whole_images(img, best, rows, eps, side, box, gen):
    """The l_inf Square step written plainly on whole images: a random window per point,
    set to ``clip(x + eps * sign)`` with one random sign per channel, all signs redrawn (up
    to 10 draws) while some point's candidate equals its best iterate."""
    k, (c, h, w) = rows.numel(), img.shape[1:]
    sh, sw = side
    vh = torch.randint(0, h - sh + 1, (k,), generator=gen)
    vw = torch.randint(0, w - sw + 1, (k,), generator=gen)
    mask = torch.zeros(k, 1, h, w, dtype=torch.bool)
    for i in range(k):
        mask[i, :, vh[i]:vh[i] + sh, vw[i]:vw[i] + sw] = True
    xa, xb, e = img[rows], best[rows], eps[rows][:, None, None, None]
    cand, todo = xb.clone(), torch.ones(k, dtype=torch.bool)
    for _ in range(10):
        signs = (2 * torch.randint(0, 2, (k, c, 1, 1), generator=gen) - 1).to(img.dtype)
        new = torch.clamp(torch.where(mask, xa + e * signs, xb), *box)
        cand[todo] = new[todo]
        todo = (cand == xb).flatten(1).all(1)
        if not todo.any():
            break
    return cand


@pytest.mark.parametrize("shape, side", [((3, 7, 9), (1, 1)), ((3, 7, 9), (3, 3)),
                                         ((1, 6, 6), (5, 5)), ((2, 1, 20), (1, 4))])
def test_square_linf_step_matches_the_whole_image_step(shape, side) -> None:
    # the window-only step draws the same random numbers and builds the same candidates as
    # the plain whole-image step; inputs on the box faces and best iterates that already hold
    # +-eps make "this sign changes nothing" (and so redraws) frequent
    from robcurves.attacks._square import _linf_step

    g = torch.Generator().manual_seed(5)
    n = 40
    img = torch.rand((n,) + shape, generator=g)
    img[img < 0.3] = 0.0
    img[img > 0.8] = 1.0
    eps = 0.05 + 0.1 * torch.rand(n, generator=g)
    stripes = 2.0 * torch.randint(0, 2, (n,) + shape, generator=g) - 1
    best = torch.clamp(img + eps[:, None, None, None] * stripes, 0.0, 1.0)
    rows = torch.arange(0, n, 2)
    for seed in range(6):
        ours = _linf_step(img, best, rows, eps, side, (0.0, 1.0),
                          torch.Generator().manual_seed(seed))
        ref_gen = torch.Generator().manual_seed(seed)
        ref = _linf_step_whole_images(img, best, rows, eps, side, (0.0, 1.0), ref_gen)
        assert torch.equal(ours, ref)
        # and it left the generator where the whole-image step did
        check = torch.Generator().manual_seed(seed)
        _linf_step(img, best, rows, eps, side, (0.0, 1.0), check)
        assert torch.equal(torch.rand(5, generator=check), torch.rand(5, generator=ref_gen))


def _mlp(classes: int = 4, dim: int = 6, n: int = 30, seed: int = 0):
    """A small ReLU network trained on Gaussian blobs, points it classifies correctly."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(classes, dim, generator=g)
    yt = torch.randint(0, classes, (400,), generator=g)
    xt = (centers[yt] + 0.12 * torch.randn(400, dim, generator=g)).clamp(0, 1)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, classes))
    opt = torch.optim.Adam(net.parameters(), 0.02)
    for _ in range(200):
        loss = nn.functional.cross_entropy(net(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net, xt[:n], yt[:n]


@pytest.mark.parametrize("p", [math.inf, 2.0])
def test_protocol_never_above_any_single_attack(p: float) -> None:
    net, x, y = _mlp()
    clf = wrap(net)
    eps = float(np.median(robcurves.distances(clf, x, y, p, attack="deepfool").distances))
    full = robcurves.robust_accuracy(clf, x, y, p, eps, n_queries=300)
    assert full.accuracy <= full.clean_accuracy
    assert 0 < full.accuracy < full.clean_accuracy  # the eps is neither trivial nor hopeless
    assert sum(full.counts.values()) == x.shape[0]
    assert full.counts["robust"] == int(full.robust.sum())
    assert full.clean_accuracy == float((clf.predict(x) == y).float().mean())
    for name in ("apgd-ce", "apgd-t", "fab-t", "square"):
        alone = robcurves.robust_accuracy(clf, x, y, p, eps, attacks=[name], n_queries=300)
        assert full.accuracy <= alone.accuracy, name
    # the attacks called directly, checked independently of the protocol's bookkeeping
    for adv in (apgd(clf, x, y, p, eps=eps, steps=100, loss="ce"),
                square(clf, x, y, p, eps=eps, n_queries=300)):
        d, _, _ = verify_adversarials(clf, x, y, adv, p)
        alone = float((~(d <= eps * (1 + 1e-5))).mean())
        assert full.accuracy <= alone


def test_protocol_on_affine_model_matches_closed_form() -> None:
    net, x, y = _affine_problem("random", n=30, side=4)
    d = _minimal(net, x, math.inf).numpy()
    eps = float(np.median(d))
    r = robcurves.robust_accuracy(wrap(net, bounds=None), x, y, "linf", eps, n_queries=50)
    # two classes: APGD-T is skipped; the robust points are exactly those beyond eps
    assert "apgd-t" in r.skipped
    margin = np.abs(d - eps) > 1e-4 * eps
    assert np.array_equal(r.robust[margin], (d > eps)[margin])
    assert r.backward_passes > 0 and r.forward_passes > 0


def test_protocol_bad_input() -> None:
    net, x, y = _mlp(n=4)
    with pytest.raises(ValueError, match="eps must be a finite number > 0; got 0"):
        robcurves.robust_accuracy(net, x, y, "linf", 0.0)
    with pytest.raises(ValueError, match="eps must be a finite number > 0; got -0.1"):
        robcurves.robust_accuracy(net, x, y, "linf", -0.1)
    with pytest.raises(ValueError, match="unknown protocol 'autoatack'; expected one of"):
        robcurves.robust_accuracy(net, x, y, "linf", 0.1, protocol="autoatack")
    with pytest.raises(ValueError, match="supports norms linf and l2; got l1"):
        robcurves.robust_accuracy(net, x, y, "l1", 0.1)
    with pytest.raises(ValueError, match="attacks must be a non-empty subset"):
        robcurves.robust_accuracy(net, x, y, "linf", 0.1, attacks=["pgd"])
    clf = wrap(net)
    with pytest.raises(ValueError, match="square supports only the linf and l2 norms; got 'l1'"):
        square(clf, x, y, "l1", eps=0.1)
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        square(clf, x, y, "linf", eps=0.0)
    with pytest.raises(ValueError, match="p_init must lie in"):
        square(clf, x, y, "linf", eps=0.1, p_init=1.5)
    assert clf.n_forward == 0  # refused before any pass


def test_apgd_targeted_dlr_moves_towards_the_target() -> None:
    net, x, y = _mlp()
    clf = wrap(net)
    z = clf.predict_logits(x)
    t = (y + 1) % z.shape[1]
    adv = apgd(clf, x, y, math.inf, eps=0.3, steps=50, loss="dlr-targeted", targets=t,
               early_stop=False)
    gap = lambda zz: zz.gather(1, t[:, None]) - zz.gather(1, y[:, None])  # noqa: E731
    assert float(gap(clf.predict_logits(adv)).mean()) > float(gap(z).mean())
    assert float(lp_norm(adv - x, math.inf).max()) <= 0.3 + 1e-6
    with pytest.raises(ValueError, match="targets go with loss='dlr-targeted'"):
        apgd(clf, x, y, math.inf, eps=0.1, loss="dlr-targeted")


# -- robcurves eval --------------------------------------------------------------------------


def test_eval_prints_protocol_and_flags_a_curve_above_it(digits_mlp_file, tmp_path, capsys):
    from robcurves.cli import main

    base = ["eval", "--model", str(digits_mlp_file), "--data", "digits", "--norm", "linf",
            "--eps", "0.3", "--n", "20", "--n-queries", "100"]
    assert main(base + ["--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "robust accuracy" in out and "apgd-ce:" in out and "square:" in out
    res = json.loads((tmp_path / "r.json").read_text())
    ds = robcurves.data.load("digits")
    net = robcurves.load_model(digits_mlp_file)
    lib = robcurves.robust_accuracy(net, ds.x[:20], ds.y[:20], "linf", 0.3, n_queries=100)
    assert res["accuracy"] == lib.accuracy and res["counts"] == lib.counts
    assert res["model"] == "mlp" and res["metadata"]["model"]["spec"] == str(digits_mlp_file)
    # a curve that places every correctly classified point beyond eps must be flagged
    clean = lib.broken_by == "clean"
    meta = {"data": {"name": res["metadata"]["data"]["name"], "n": 20}}
    far = robcurves.RobustnessCurve(np.where(clean, 0.0, 1.0), math.inf, metadata=meta)
    far.save(tmp_path / "far.json")
    assert main(base + ["--curve", str(tmp_path / "far.json")]) == 0
    out = capsys.readouterr().out
    flagged = lib.accuracy < 1 - clean.mean()
    assert ("HIGHER than the protocol's" in out) == flagged
    # one that breaks every point at tiny distances is not
    near = robcurves.RobustnessCurve(np.where(clean, 0.0, 1e-4), math.inf, metadata=meta)
    near.save(tmp_path / "near.json")
    assert main(base + ["--curve", str(tmp_path / "near.json")]) == 0
    assert "HIGHER" not in capsys.readouterr().out
    # a curve of other labels is refused before any attack
    other = robcurves.RobustnessCurve(near.distances, math.inf, metadata=meta,
                                      labels=(ds.y[:20] + 1) % 10)
    other.save(tmp_path / "other.json")
    assert main(base + ["--curve", str(tmp_path / "other.json")]) == 2
    captured = capsys.readouterr()
    assert "is not of these points and this model: the labels differ on 20 of 20" in captured.err
    assert "robust accuracy" not in captured.out


@pytest.mark.parametrize("extra, message", [
    (["--eps", "0"], "--eps must be a finite number > 0; got '0'"),
    (["--eps", "-1"], "--eps must be a finite number > 0; got '-1'"),
    (["--eps", "nan"], "--eps must be a finite number > 0; got 'nan'"),
    (["--eps", "8/255", "--norm", "l1"], "--norm must be linf or l2"),
    (["--eps", "8/255", "--protocol", "nope"], "unknown --protocol 'nope'"),
    (["--eps", "8/255", "--curve", "missing.json"], "missing.json"),
])
def test_eval_bad_arguments_fail_before_work(capsys, extra, message):
    from robcurves.cli import main

    argv = ["eval", "--model", "no_such_mod:make", "--data", "digits", "--norm", "linf"]
    argv = argv + extra if "--norm" not in extra else argv[:-2] + extra
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_best_adversarial_counts_only_misclassified_candidates() -> None:
    # APGD and Square show their own tracker only the candidates with a negative margin:
    # that skips nothing as long as the tracker never takes a candidate that is classified
    # correctly or sits on a tie
    from robcurves.attacks._core import BestAdversarial
    from robcurves.model import margin

    g = torch.Generator().manual_seed(0)
    n, k = 400, 5
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g)
    top = z.clone().scatter_(1, y[:, None], -torch.inf).amax(1)
    z[:100].scatter_(1, y[:100, None], top[:100, None])  # ties with the runner-up
    z[100:200].scatter_(1, y[100:200, None], (top[100:200] - 1e-7)[:, None])  # just below
    x = torch.rand(n, 3, generator=g)
    for p in (math.inf, 2.0):
        tracker = BestAdversarial(x, y, p)
        adv = tracker.update(x + 0.01, z)
        assert not (adv & (margin(z, y) >= 0)).any()
        assert adv.any() and (~adv & (margin(z, y) < 0)).any()  # both kinds are present
        assert torch.equal(tracker.found, adv)

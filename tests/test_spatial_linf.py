"""l_inf + rotation-translation (issue 15 item 3, the paper's combination): the union with the
spatial threat as a curve, the combined attack at fixed sizes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robcurves import Distances, RobustnessCurve, compare, spatial_distances, union
from robcurves._norms import parse_threat
from robcurves.attacks import pgd
from robcurves.unions import spatial_linf


def _d(values, norm):
    n = len(values)
    return Distances(distances=np.asarray(values, dtype=float), labels=np.zeros(n, int),
                     predictions=np.zeros(n, int), indices=np.arange(n), norm=norm,
                     method="m")


def test_union_with_spatial_threat_closed_form_label_and_pairing(tmp_path):
    sd = _d([0.2, 1.0, np.inf, 0.0, 0.6], "spatial(deg:30,px:3)")
    dl = _d([0.05, 0.01, 0.3, 0.0, np.inf], "linf")
    u = union({"linf": dl, "spatial": sd}, scale={"linf": 0.1, "spatial": 2})
    # u = min(d_inf / 0.1, r / 2); the label carries the spatial unit at t = 1
    np.testing.assert_allclose(u.distances, [0.1, 0.1, 3.0, 0.0, 0.3])
    assert u.norm == "union(linf:0.1,deg:60,px:6)"
    same = union({"linf": dl, "spatial(deg:30,px:3)": sd},
                 scale={"linf": 0.1, "spatial(px:3, deg:30)": 1})
    np.testing.assert_allclose(same.distances, [0.2, 0.1, 3.0, 0.0, 0.6])
    assert same.norm == "union(linf:0.1,deg:30,px:3)" == parse_threat("union(px:3,deg:30,inf:.1)")
    back = RobustnessCurve.load(same.save(tmp_path / "u.json"))
    assert back.norm == same.norm and np.array_equal(back.distances, same.distances)
    plain = union({"linf": dl}, scale={"linf": 0.1})
    with pytest.raises(ValueError, match="different norms"):
        compare([RobustnessCurve(distances=same.distances, norm=same.norm, name="a",
                                 indices=same.indices), plain], n_boot=10)
    # an entry whose spatial unit differs from the key's is refused
    with pytest.raises(ValueError, match="holds spatial"):
        union({"spatial(deg:10,px:3)": sd}, scale={"spatial": 1})


@pytest.mark.parametrize("per, scale, match", [
    ({"linf": _d([1.0], "linf"), "spatial": _d([1.0], "spatial(deg:30,px:3)")},
     {"linf": 0.1, "spatial": 0}, "scale of spatial must be positive and finite; got 0"),
    ({"linf": _d([1.0], "linf"), "spatial": _d([1.0], "spatial(deg:30,px:3)")},
     {"linf": 0.1, "spatial": -2.0}, "scale of spatial must be positive and finite; got -2.0"),
    ({"linf": _d([1.0], "linf")}, {"linf": 0.1, "l5": 1.0}, "unknown norm 'l5'"),
    ({"linf": _d([1.0], "linf")}, {"linf": 0.1, "spatial": 1.0},
     r"no distances for \['spatial'\]"),
    ({"spatial": _d([1.0], "linf")}, {"spatial": 1.0}, "holds linf distances; expected spatial"),
    ({"linf": _d([1.0], "linf")}, {"affine(linf:1,l2:1)": 1.0},
     "a union takes l_p norms and the spatial threat"),
])
def test_union_spatial_bad_input(per, scale, match):
    with pytest.raises(ValueError, match=match):
        union(per, scale=scale)


@pytest.fixture(scope="module")
def digits_cnn():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    xs, ys = load_digits(return_X_y=True)
    x = torch.tensor(xs / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(ys)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 64, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(4):
        for i in torch.randperm(1400).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
            opt.step()
    net.eval()
    return net, x[1400:1440], y[1400:1440]


def test_identity_only_grid_is_plain_linf_pgd(digits_cnn):
    net, x, y = digits_cnn
    res = spatial_linf(net, x, y, eps=0.08, rotations=1, translations=1, steps=10)
    with torch.no_grad():
        clean = net(x).argmax(1).numpy() != y.numpy()
        adv = pgd(net, x, y, "linf", eps=0.08, steps=10, loss="margin", early_stop=True)
        plain = net(adv).argmax(1).numpy() != y.numpy()
    assert 0 < plain.sum() < len(y)  # the test needs broken and robust points
    np.testing.assert_array_equal(res.linf, plain | clean)
    np.testing.assert_array_equal(res.combined, res.linf)
    np.testing.assert_array_equal(res.spatial, clean)  # the identity breaks no correct point
    assert res.cost["missed_by_combined"] == 0
    assert np.all(res.transforms[res.combined & ~clean] == 0)


def test_combined_attack_breaks_at_least_the_union_and_more(digits_cnn):
    net, x, y = digits_cnn
    kw = {"max_degrees": 8.0, "max_pixels": 0.3, "rotations": 5, "translations": 3}
    res = spatial_linf(net, x, y, eps=0.03, steps=10, **kw)
    acc = res.robust_accuracy
    # the combined threat contains both single threats and their union; here it found every
    # union break on its own (through the identity and the zero-noise first PGD iterate)
    assert res.cost["missed_by_combined"] == 0
    assert acc["combined"] <= acc["union"] <= min(acc["linf"], acc["spatial"])
    assert acc["combined"] < acc["union"], acc  # composing finds points neither breaks alone
    sd = spatial_distances(net, x, y, **kw)
    np.testing.assert_array_equal(res.spatial, sd.distances <= 1.0)
    # the union curve over sizes at t = 1 agrees with the per-point union at those sizes when
    # the l_inf component is the fixed-eps result (0 where broken, inf elsewhere)
    d_inf = _d(np.where(res.linf, 0.0, np.inf), "linf")
    sdr = Distances(distances=sd.distances, labels=np.zeros(len(y), int),
                    predictions=np.zeros(len(y), int), indices=np.arange(len(y)),
                    norm=sd.norm, method="m")
    u = union({"linf": d_inf, "spatial": sdr}, scale={"linf": 0.03, "spatial": 1})
    np.testing.assert_array_equal(u.distances <= 1.0, res.union)
    # each combined adversarial's transformation is on the grid tried
    t = res.transforms[res.combined & (res.predictions == res.labels)]
    assert np.all(np.abs(t[:, 0]) <= 8 + 1e-9) and np.all(np.abs(t[:, 1:]) <= 0.3 + 1e-9)


def test_spatial_on_non_images_and_bad_eps_refused_before_work():
    class Counting(torch.nn.Module):
        calls = 0

        def forward(self, z):
            Counting.calls += 1
            return torch.zeros(z.shape[0], 2)

    flat = torch.full((3, 16), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"images of shape \(N, C, H, W\).*\(3, 16\)"):
        spatial_linf(Counting(), flat, y, eps=0.1)
    with pytest.raises(ValueError, match=r"images of shape \(N, C, H, W\).*\(3, 16\)"):
        spatial_distances(Counting(), flat, y)
    img = torch.full((3, 1, 4, 4), 0.5)
    with pytest.raises(ValueError, match="eps must be a finite number > 0; got 0"):
        spatial_linf(Counting(), img, y, eps=0)
    with pytest.raises(ValueError, match="max_degrees must be a positive finite number; got -5"):
        spatial_linf(Counting(), img, y, eps=0.1, max_degrees=-5)
    assert Counting.calls == 0

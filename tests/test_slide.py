"""SLIDE, the sparse l1 descent attack (Tramèr & Boneh), fixed-eps and as a minimal-l1 search."""

from __future__ import annotations

import pytest
import torch
from conftest import exact_linear_distances, linear_problem
from torch import nn

import robcurves
from robcurves.attacks import ATTACKS, slide, slide_direction, slide_search


def test_direction_moves_the_top_percentile_by_sign_with_unit_l1() -> None:
    g = torch.tensor([[0.0, -5.0, 1.0, 4.0, -0.5, 3.0, 0.0, 2.0, -1.0, 0.1]])
    e = slide_direction(g, percentile=70.0)  # the 70th percentile of |g| is 2.3: 3 coordinates
    assert torch.equal(e[0] != 0, torch.tensor([0, 1, 0, 1, 0, 1, 0, 0, 0, 0], dtype=torch.bool))
    assert torch.allclose(e[0][[1, 3, 5]], torch.tensor([-1.0, 1.0, 1.0]) / 3)
    assert float(e.abs().sum()) == pytest.approx(1.0)
    assert torch.equal(slide_direction(torch.zeros(2, 5)), torch.zeros(2, 5))


def test_slide_above_the_closed_form_breaks_points_inside_ball_and_box() -> None:
    lin, x, y = linear_problem(dim=20, classes=3, n=24, seed=3)
    exact = exact_linear_distances(lin, x, y, 1.0)
    clf = robcurves.wrap(lin)
    eps = torch.as_tensor(exact * 1.5, dtype=torch.float32)
    adv = slide(clf, x, y, "l1", eps=eps, steps=40, percentile=90)
    l1 = (adv - x).abs().reshape(len(x), -1).sum(1)
    assert (l1 <= eps * (1 + 1e-5) + 1e-7).all()
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert (clf.predict(adv) != y).float().mean() >= 0.9
    # below the exact distance nothing can be broken, whatever the attack does
    below = slide(clf, x, y, "l1", eps=torch.as_tensor(exact * 0.98, dtype=torch.float32), steps=40)
    assert (clf.predict(below) == y).all()


def test_slide_respects_the_box_when_it_binds() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 4))
    x = (torch.rand(10, 30) > 0.5).float()  # every coordinate on a face of the box
    y = robcurves.wrap(net).predict(x)
    adv = slide(robcurves.wrap(net), x, y, "l1", eps=3.0, steps=15)
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert ((adv - x).abs().sum(1) <= 3.0 + 1e-5).all()


def test_slide_search_is_registered_and_near_the_closed_form() -> None:
    assert ATTACKS["slide"] == (slide_search, (1.0,))
    lin, x, y = linear_problem(dim=16, classes=3, n=20, seed=2)
    exact = exact_linear_distances(lin, x, y, 1.0)
    d = robcurves.distances(lin, x, y, "l1", attack="slide")
    assert d.n_unbroken == 0
    ratio = d.distances / exact
    assert ratio.min() >= 1 - 1e-4  # an upper bound
    assert ratio.max() <= 1.01, ratio  # measured: at most 1.0015


def test_slide_refuses_bad_input() -> None:
    lin, x, y = linear_problem(dim=6, classes=3, n=4)
    clf = robcurves.wrap(lin)
    with pytest.raises(ValueError, match="slide supports only the l1 norm; got 'l2'"):
        slide(clf, x, y, "l2", eps=1.0)
    with pytest.raises(ValueError, match=r"percentile must be a number in \[0, 100\)"):
        slide(clf, x, y, "l1", eps=1.0, percentile=100)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        slide(clf, x, y, "l1", eps=-1.0)
    with pytest.raises(ValueError, match="does not support norm linf"):
        robcurves.distances(lin, x, y, "inf", attack="slide")

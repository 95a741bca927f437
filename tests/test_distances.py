import math

import numpy as np
import pytest
import torch
from conftest import exact_linear_distances, linear_problem, recorder

import robcurves
from robcurves._norms import lp_norm_np
from robcurves.attacks import ATTACKS

NORMS = [math.inf, 2.0, 1.0]


@pytest.mark.parametrize("p", NORMS)
@pytest.mark.parametrize("classes", [2, 5])
def test_linear_models_within_one_percent_of_the_exact_minimum(p, classes):
    lin, x, y = linear_problem(dim=24, classes=classes, n=50, seed=classes)
    exact = exact_linear_distances(lin, x, y, p)
    d = robcurves.distances(lin, x, y, p)
    assert d.n_unbroken == 0
    # an upper bound (up to float32 rounding of the logits) and within 1% of the minimum
    assert np.all(d.distances >= exact * (1 - 1e-3))
    assert np.all(d.distances <= exact * 1.01)


def test_binary_closed_form_matches_w_dot_x_over_dual_norm():
    lin, x, y = linear_problem(dim=16, classes=2, n=40, seed=3)
    W = lin.weight.detach().double().numpy()
    bias = lin.bias.detach().double().numpy()
    w, b = W[1] - W[0], bias[1] - bias[0]
    f = x.double().numpy() @ w + b
    for p, q in [(math.inf, 1), (2.0, 2), (1.0, math.inf)]:
        closed = np.abs(f) / np.linalg.norm(w, ord=q)
        np.testing.assert_allclose(exact_linear_distances(lin, x, y, p), closed, rtol=1e-12)


@pytest.mark.parametrize("p", NORMS)
def test_every_adversarial_is_verified_and_its_norm_is_the_distance(p):
    lin, x, y = linear_problem(dim=12, classes=3, n=30, seed=7)
    d = robcurves.distances(lin, x, y, p, return_adversarials=True)
    adv = d.adversarials
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    with torch.no_grad():
        pred = lin(torch.from_numpy(adv)).argmax(1).numpy()
    assert np.all(pred != d.labels)
    np.testing.assert_array_equal(d.distances, lp_norm_np(adv - x.numpy(), p))


def test_misclassified_points_get_zero_and_unbreakable_points_get_inf():
    lin, x, y = linear_problem(dim=10, classes=3, n=20, seed=1)
    y_wrong = y.clone()
    y_wrong[:5] = (y[:5] + 1) % 3
    d = robcurves.distances(lin, x, y_wrong, "l2")
    assert np.all(d.distances[:5] == 0)
    assert np.all(d.distances[5:] > 0)
    assert d.n_misclassified == 5

    class Constant(torch.nn.Module):  # ignores its input: no perturbation changes the label
        def forward(self, x):
            return torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2) + 0 * x.sum()

    xc = torch.rand(6, 4) * 0.5 + 0.25
    dc = robcurves.distances(Constant(), xc, torch.zeros(6, dtype=torch.long), "inf")
    assert np.all(np.isinf(dc.distances)) and dc.n_unbroken == 6
    curve = robcurves.RobustnessCurve.from_distances(dc)
    assert curve.robust_error(1e6) == 0.0  # never the largest distance seen


def test_rejected_adversarials_count_as_unbroken():
    """An attack that returns inputs outside the bounds or still correctly classified gets no
    distance for them: the driver's re-check refuses them."""
    lin, x, y = linear_problem(dim=8, classes=2, n=10, seed=2)

    def bad_attack(model, x, y, p):
        out = x.clone()
        out[:3] = 2.0        # outside the box
        out[3:6] += 1e-4     # barely moved: still correctly classified
        return out

    ATTACKS["bad-for-test"] = (bad_attack, (math.inf, 2.0, 1.0))
    try:
        with pytest.warns(UserWarning, match="failed the re-check"):
            d = robcurves.distances(lin, x, y, "inf", attack="bad-for-test")
    finally:
        del ATTACKS["bad-for-test"]
    assert np.all(np.isinf(d.distances))
    assert d.cost["rejected"] == 6


def test_bad_inputs_fail_with_clear_messages():
    lin, x, y = linear_problem(dim=6, classes=3, n=8)
    with pytest.raises(ValueError, match=r"bounds \(0.0, 1.0\); found min -0.2"):
        robcurves.distances(lin, torch.full((2, 6), -0.2), y[:2], "inf")
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        robcurves.distances(lin, x, torch.full((8,), 7), "inf")
    with pytest.raises(ValueError, match="same length"):
        robcurves.distances(lin, x, y[:5], "inf")
    with pytest.raises(ValueError, match="unknown norm 'l7'"):
        robcurves.distances(lin, x, y, "l7")
    with pytest.raises(ValueError, match=r"differ from the wrapped model's bounds \(0.0, 1.0\)"):
        robcurves.distances(robcurves.wrap(lin), x, y, "inf", bounds=(-1.0, 1.0))
    with pytest.raises(ValueError, match="unknown attack"):
        robcurves.distances(lin, x, y, "inf", attack="nope")
    with pytest.raises(ValueError, match="dtype uint8"):
        robcurves.distances(lin, (x * 255).numpy().astype(np.uint8), y, "inf")

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.sum(1)  # (N,) instead of (N, K)

    with pytest.raises(ValueError, match=r"shape \(N, num_classes\)"):
        robcurves.distances(Flat(), x, y, "inf")


def test_preprocessing_is_inside_and_distances_stay_in_raw_space():
    """A model with mean/std normalisation inside gives the same distances as the equivalent
    affine model on raw inputs."""
    lin, x, y = linear_problem(dim=10, classes=3, n=25, seed=4)
    mean, std = 0.3, 0.5
    inner = torch.nn.Linear(10, 3)
    with torch.no_grad():  # inner((x - m) / s) == lin(x)
        inner.weight.copy_(lin.weight * std)
        inner.bias.copy_(lin.bias + lin.weight.sum(1) * mean)
    wrapped = robcurves.wrap(inner, preprocessing={"mean": mean, "std": std})
    d_pre = robcurves.distances(wrapped, x, y, "l2")
    exact = exact_linear_distances(lin, x, y, 2.0)
    np.testing.assert_allclose(d_pre.distances, exact, rtol=0.01)


class _NaNOn(torch.nn.Module):
    """A linear model whose logits are NaN on the points whose first feature is above 0.6."""

    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x):
        z = self.lin(x)
        bad = (x[:, :1] > 0.6).expand_as(z)
        return torch.where(bad, torch.full_like(z, float("nan")), z)


def test_nan_logits_are_an_error_naming_the_points_before_any_attack(monkeypatch):
    lin, x, y = linear_problem(dim=8, classes=3, n=40, seed=1)
    x[[3, 17], 0] = 0.65
    x[:, 0] = torch.where(torch.isin(torch.arange(40), torch.tensor([3, 17])), x[:, 0],
                          x[:, 0].clamp(max=0.55))
    calls = []
    fn, norms = ATTACKS["fmn"]
    monkeypatch.setitem(ATTACKS, "fmn", (lambda *a, **k: calls.append(1) or fn(*a, **k), norms))
    with pytest.raises(ValueError, match=r"NaN or infinite on 2 of 40 points \(indices 103, 117\)"):
        robcurves.distances(_NaNOn(lin), x, y, "inf", attack="fmn", indices=np.arange(100, 140))
    assert calls == []  # refused before the attack ran


def test_an_option_the_attack_does_not_take_is_refused_naming_those_that_do():
    lin, x, y = linear_problem(dim=8, classes=3, n=4)
    with pytest.raises(ValueError, match=r"attack 'fmn' takes no option 'budget' "
                                         r"\(attacks that take it: .*auto"):
        robcurves.distances(lin, x, y, "inf", attack="fmn", budget=100)


def test_an_option_of_the_wrong_value_is_refused_before_the_model_is_queried():
    lin, x, y = linear_problem(dim=8, classes=3, n=4)
    model = recorder(lin)
    with pytest.raises(ValueError, match=r"auto: sweep must be true or false \(or None\); "
                                         r"got 'maybe'"):
        robcurves.distances(model, x, y, "l1", sweep="maybe")
    with pytest.raises(ValueError, match=r"auto: restarts must be an integer >= 0; got -1"):
        robcurves.distances(model, x, y, "l1", restarts=-1)
    assert model.log == []
    assert np.isfinite(robcurves.distances(model, x, y, "l1", restarts=1).distances).all()


def test_threads_are_set_for_the_call_recorded_and_a_resume_with_others_refused(tmp_path):
    lin, x, y = linear_problem(dim=8, classes=3, n=6)
    before = torch.get_num_threads()
    d = robcurves.distances(lin, x, y, "inf", threads=2, store=tmp_path / "s")
    assert d.settings["threads"] == 2
    assert torch.get_num_threads() == before  # restored
    again = robcurves.distances(lin, x, y, "inf", threads=2, store=tmp_path / "s")
    np.testing.assert_array_equal(again.distances, d.distances)
    with pytest.raises(ValueError, match="differing: threads"):
        robcurves.distances(lin, x, y, "inf", threads=1, store=tmp_path / "s")
    with pytest.raises(ValueError, match="threads must be a whole number >= 1; got 0"):
        robcurves.distances(lin, x, y, "inf", threads=0)


@pytest.mark.parametrize("method", ["crown", "ibp", "exact-linear"])
def test_certify_refuses_a_model_with_non_finite_logits_naming_the_points(method):
    lin, x, y = linear_problem(dim=8, classes=3, n=20, seed=2)
    with torch.no_grad():
        lin.weight[1, 0] = float("inf")  # logit 1 is +-inf wherever x[:, 0] > 0: everywhere
    net = torch.nn.Sequential(lin)
    with pytest.raises(ValueError, match=r"NaN or infinite on 20 of 20 points \(indices 0, 1"):
        robcurves.certify(net, x, y, "inf", method)

"""The gradient-masking check (issue 15): gradient attack against decision-based attacks."""

from __future__ import annotations

import pytest
import torch
from conftest import linear_problem
from torch import nn

from robcurves.diagnostics import gradient_masking


class _ZeroGradQuantize(torch.autograd.Function):
    """Rounds inputs to 1/255 steps; its backward returns zeros: gradients are masked."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return torch.round(x * 255) / 255

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        return torch.zeros_like(g)


class _Quantized(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(_ZeroGradQuantize.apply(x))


OPTIONS = {"hsja": {"budget": 1500},
           "boundary": {"steps": 200, "budget": 2000, "init_queries": 500}}


@pytest.fixture(scope="module")
def problem():
    lin, x, y = linear_problem(dim=10, classes=3, n=24, seed=5)
    return lin, x, y


def test_flags_a_model_with_zero_gradients(problem) -> None:
    lin, x, y = problem
    masked = _Quantized(lin).eval()
    with torch.no_grad():
        assert (masked(x).argmax(1) == y).float().mean() > 0.9  # the same classifier
    res = gradient_masking(masked, x, y, "l2", options=OPTIONS, n_boot=200)
    assert res.decision_attacks == ("hsja", "boundary")
    assert res.flagged and res.fraction_smaller > 0.5, res
    assert res.reasons


def test_does_not_flag_the_same_model_without_masking(problem) -> None:
    lin, x, y = problem
    res = gradient_masking(lin, x, y, "l2", options=OPTIONS, n_boot=200)
    assert not res.flagged, res.reasons
    assert res.fraction_smaller <= 0.05 and res.median_ratio >= 0.99


def test_refuses_bad_input(problem) -> None:
    lin, x, y = problem
    with pytest.raises(ValueError, match="no decision-based attack supports l1"):
        gradient_masking(lin, x, y, "l1")
    with pytest.raises(ValueError, match="ratio must lie in"):
        gradient_masking(lin, x, y, "l2", ratio=1.5)
    with pytest.raises(ValueError, match=r"options for attacks that are not run: \['boundary'\]"):
        gradient_masking(lin, x, y, "inf", options={"boundary": {}})


@pytest.mark.parametrize("name, norm", [("hsja", "l2"), ("hsja", "inf"), ("boundary", "l2")])
def test_min_budget_is_the_budget_the_attack_starts_with(problem, name, norm) -> None:
    """The rule callers use to refuse a budget before any work agrees with the attacks: one
    query less and the attack itself refuses to start, the minimum and it runs."""
    from robcurves import wrap
    from robcurves.attacks import ATTACKS
    from robcurves.attacks._hsja import min_budget

    lin, x, y = problem
    need = min_budget(name, x[0].numel())
    clf = wrap(lin)
    run = ATTACKS[name][0]
    with pytest.raises(ValueError, match="cannot even cover the start"):
        run(clf, x[:2], y[:2], norm, budget=need - 1)
    run(clf, x[:2], y[:2], norm, budget=need, steps=1)


def test_a_budget_too_small_is_refused_before_any_model_pass(problem) -> None:
    from robcurves import wrap

    lin, x, y = problem
    clf = wrap(lin)
    with pytest.raises(ValueError, match=r"a budget of 200 queries per point is too small for "
                                         r"boundary in l2 on inputs of 10 values"):
        gradient_masking(clf, x, y, "l2", options={"boundary": {"budget": 200}})
    assert clf.n_forward == 0

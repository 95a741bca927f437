from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# The test models are tiny: one thread is faster than several contending for small ops, and
# keeps the suite's time steady on a shared 2-core machine.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "datasets"
#: set to 1 (as .ci/run does) to make a missing data file fail instead of skipping its test
REQUIRE_DATA = "ROBCURVES_REQUIRE_DATA"


def shared_data(relative: str) -> Path:
    """A file or folder under ../shared/datasets for a test on real data.

    Missing, the test is skipped (users without the data), or fails when the environment
    variable ``ROBCURVES_REQUIRE_DATA=1`` says the data must be there (CI).
    """
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"{path} not present"
        if os.environ.get(REQUIRE_DATA, "") not in ("", "0"):
            pytest.fail(f"{message}, and {REQUIRE_DATA}={os.environ[REQUIRE_DATA]} requires it")
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


def linear_problem(dim: int = 20, classes: int = 4, n: int = 60, seed: int = 0,
                   spread: float = 0.05):
    """A random affine classifier and points near its decision boundaries but far inside
    [0, 1] (so the box does not bind), labelled with the model's own predictions."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(dim, classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(classes, dim, generator=g))
        lin.bias.copy_(-lin.weight.sum(1) * 0.5 + 0.1 * torch.randn(classes, generator=g))
    x = (0.5 + spread * torch.randn(n, dim, generator=g)).clamp(0.3, 0.7)
    with torch.no_grad():
        y = lin(x).argmax(1)
    return lin, x, y


def exact_linear_distances(lin: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor,
                           p: float) -> np.ndarray:
    """min over k != y of (f_y - f_k) / ||w_y - w_k||_q, q dual to p (box not binding)."""
    from robcurves._norms import dual_norm

    q = dual_norm(p)
    W = lin.weight.detach().double().numpy()
    b = lin.bias.detach().double().numpy()
    xv = x.detach().double().numpy().reshape(x.shape[0], -1)
    yv = y.numpy()
    f = xv @ W.T + b
    best = np.full(xv.shape[0], np.inf)
    for k in range(W.shape[0]):
        wd = W[yv] - W[k]
        fd = f[np.arange(len(yv)), yv] - f[:, k]
        dn = np.linalg.norm(wd, ord=q, axis=1)
        val = np.where(yv == k, np.inf, fd / np.where(dn == 0, 1, dn))
        best = np.minimum(best, val)
    return best

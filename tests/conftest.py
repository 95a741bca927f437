from __future__ import annotations

import copy
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


# -- shared by the attack tests (test_attacks*.py) ----------------------------------------------

def linear_points(dim: int = 20, classes: int = 4, n: int = 24, seed: int = 0):
    """A multi-class linear model and points in [0.3, 0.7]^dim that it classifies correctly,
    with margins small enough that the closed-form perturbation never reaches the box."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(dim, classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(classes, dim, generator=g))
        lin.bias.zero_()
    x = 0.3 + 0.4 * torch.rand(50 * n, dim, generator=g)
    with torch.no_grad():
        y = lin(x).argmax(1)
    # keep points whose l1 (hence also l2 and l_inf) closed-form distance is below 0.25
    keep = torch.from_numpy(exact_linear_distances(lin, x, y, 1.0) < 0.25)
    x, y = x[keep][:n], y[keep][:n]
    assert x.shape[0] == n
    return lin, x, y


def binaryish(n: int = 16, dim: int = 64, seed: int = 1):
    """A random 5-class ReLU network and binary inputs: every coordinate on a bound."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(dim, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    torch.manual_seed(seed)
    for m in net:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.5)
    x = (torch.rand(n, dim, generator=g) > 0.5).float()
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x, y


@pytest.fixture(scope="module")
def toy(_toy_trained):
    """A 2-D, 3-class ReLU network trained on blobs in [0, 1]^2, and 40 points it labels.

    Each module gets its own copy of the network and points; the training runs once per
    session (the same seeds give the same network every time)."""
    net, x, y = _toy_trained
    return copy.deepcopy(net), x.clone(), y.clone()


@pytest.fixture(scope="session")
def _toy_trained():
    """The training behind :func:`toy` (session-wide; use :func:`toy`, which copies it)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.25, 0.3], [0.75, 0.35], [0.5, 0.75]])
    yt = torch.randint(0, 3, (600,), generator=g)
    xt = (centers[yt] + 0.12 * torch.randn(600, 2, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 24), torch.nn.ReLU(), torch.nn.Linear(24, 24),
                              torch.nn.ReLU(), torch.nn.Linear(24, 3))
    opt = torch.optim.Adam(net.parameters(), 0.02)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x = torch.rand(40, 2, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x, y


def recorder(lin: torch.nn.Linear):
    """A :class:`robcurves.model.Classifier` around ``lin`` whose ``log`` holds every queried
    input with its prediction."""
    from robcurves.model import Classifier

    class _Recorder(Classifier):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin
            self.log: list[tuple[torch.Tensor, torch.Tensor]] = []

        def _forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.lin(x)
            self.log.append((x.detach().clone(), z.detach().argmax(1)))
            return z

    return _Recorder()


@pytest.fixture(scope="session")
def digits_mlp_file(tmp_path_factory) -> Path:
    """A small MLP trained on digits points 800-1399 (not the first points, which the tests
    evaluate), saved as a robcurves model file; trained once per session."""
    import robcurves

    ds = robcurves.data.load("digits").subset(slice(800, 1400))
    torch.manual_seed(0)
    net = robcurves.train.fit(ds, arch="mlp", epochs=3, batch_size=32, eval_points=8,
                              eval_steps=1, progress=False)
    path = tmp_path_factory.mktemp("m") / "mlp.rcm"
    robcurves.train.io.save_model(net, path, getattr(net, "robcurves_meta", None))
    return path

"""The rotation-translation attack and spatial distances (issue 15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import robcurves
from robcurves.attacks import spatial, spatial_grid, spatial_transform


def _images(n: int = 12, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    x[:, :, 2:6, 2:6] = torch.rand(n, 1, 4, 4, generator=g)  # content away from the border
    return x


def _tiny_model(size: int = 8, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(size * size, 3)).eval()


def test_zero_rotation_and_translation_are_the_identity() -> None:
    x = torch.rand(3, 2, 7, 9)
    z = torch.zeros(3)
    torch.testing.assert_close(spatial_transform(x, z, z, z), x, atol=1e-6, rtol=0)


def test_transform_matches_rot90_and_integer_shifts() -> None:
    x = torch.rand(2, 1, 6, 6)
    z = torch.zeros(2)
    ninety = spatial_transform(x, torch.full((2,), 90.0), z, z)
    torch.testing.assert_close(ninety, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    right = spatial_transform(x, z, torch.full((2,), 2.0), z)
    want = torch.zeros_like(x)
    want[..., 2:] = x[..., :-2]  # two pixels right, zeros enter on the left
    torch.testing.assert_close(right, want, atol=1e-6, rtol=0)
    down = spatial_transform(x, z, z, torch.ones(2))
    want = torch.zeros_like(x)
    want[..., 1:, :] = x[..., :-1, :]
    torch.testing.assert_close(down, want, atol=1e-6, rtol=0)


def test_grid_has_the_papers_775_transformations() -> None:
    g = spatial_grid()
    assert g.shape == (775, 3)
    assert float(g[:, 0].abs().max()) == 30.0 and float(g[:, 1:].abs().max()) == 3.0


def _blobs(n: int = 16, size: int = 8, seed: int = 0) -> torch.Tensor:
    """A bright 2x2 blob at a random place per image; the last image is blank."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    pos = torch.randint(1, size - 2, (n - 1, 2), generator=g)
    for i, (a, b) in enumerate(pos.tolist()):
        x[i, 0, a:a + 2, b:b + 2] = 0.5 + 0.5 * torch.rand(2, 2, generator=g)
    return x


def _column_model(size: int = 8) -> nn.Module:
    """Class 0 when the image's horizontal centre of mass is right of column 3.3: shifts and
    rotations move it, so points break at different spatial sizes; a blank image never."""
    lin = nn.Linear(size * size, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = torch.arange(size).float().repeat(size, 1).reshape(-1) - 3.3
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin).eval()


def test_grid_attack_equals_brute_force_loop() -> None:
    x = _blobs()
    module = _column_model()
    clf = robcurves.wrap(module)
    with torch.no_grad():
        y = module(x).argmax(1)
    y[0] = 1 - y[0]  # one misclassified point: distance 0
    adv, r = spatial(clf, x, y, max_degrees=30.0, max_pixels=2.0, rotations=7, translations=5)
    grid = spatial_grid(30.0, 2.0, 7, 5)
    want = np.full(x.shape[0], math.inf)
    for i in range(x.shape[0]):
        with torch.no_grad():
            if module(x[i:i + 1]).argmax(1).item() != y[i].item():
                want[i] = 0.0
                continue
            for th, dx, dy in grid.tolist():
                t = lambda v: torch.tensor([v])  # noqa: E731
                xt = spatial_transform(x[i:i + 1], t(th), t(dx), t(dy)).clamp(0, 1)
                if module(xt).argmax(1).item() != y[i].item():
                    want[i] = min(want[i], max(abs(th) / 30.0, abs(dx) / 2.0, abs(dy) / 2.0))
    np.testing.assert_allclose(r.numpy(), want)
    # the test covers several sizes (rotation and shift levels), unbroken and misclassified
    assert len(set(want[np.isfinite(want)].tolist())) >= 3 and np.isinf(want).any()
    with torch.no_grad():
        broken = np.isfinite(want) & (want > 0)
        assert (module(adv[broken]).argmax(1) != y[broken]).all()
    assert torch.equal(adv[np.isinf(want)], x[np.isinf(want)])


def test_random_mode_is_an_upper_bound_of_the_grid_on_its_samples() -> None:
    x = _images()
    clf = robcurves.wrap(_tiny_model())
    y = clf.predict(x)
    _, r1 = spatial(clf, x, y, mode="random", samples=20, seed=1)
    _, r2 = spatial(clf, x, y, mode="random", samples=20, seed=1)
    assert torch.equal(r1, r2)  # seeded
    assert ((r1 > 0) | torch.isinf(r1)).all() and (r1[torch.isfinite(r1)] <= 1).all()


def test_spatial_distances_and_curve() -> None:
    x = _images()
    module = _tiny_model()
    y = robcurves.wrap(module).predict(x)
    d = robcurves.spatial_distances(module, x, y, rotations=7, translations=3,
                                    return_adversarials=True)
    assert d.norm == "spatial(deg:30,px:3)" and d.kind == "upper"
    _, r = spatial(robcurves.wrap(module), x, y, rotations=7, translations=3)
    np.testing.assert_array_equal(d.distances, r.numpy())
    c = robcurves.RobustnessCurve.from_distances(d, name="tiny")
    other = robcurves.spatial_distances(module, x, y, max_pixels=2.0, rotations=7,
                                        translations=3)
    with pytest.raises(ValueError, match="different norms"):
        robcurves.compare([c, robcurves.RobustnessCurve.from_distances(other, name="b")])


def test_spatial_refuses_bad_input() -> None:
    clf = robcurves.wrap(_tiny_model())
    x = _images(4)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"images of shape \(N, C, H, W\).*\(4, 64\)"):
        spatial(clf, x.reshape(4, -1), y)
    with pytest.raises(ValueError, match="max_degrees must be a positive"):
        spatial(clf, x, y, max_degrees=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        spatial(clf, x, y, mode="exhaustive")
    with pytest.raises(ValueError, match="rotations must be an integer"):
        spatial(clf, x, y, rotations=0)
    with pytest.raises(ValueError, match="must lie in bounds"):
        spatial(clf, x + 2, y)
    with pytest.raises(ValueError, match="max_pixels must be a positive"):
        robcurves.spatial_distances(clf, x, y, max_pixels=-1)

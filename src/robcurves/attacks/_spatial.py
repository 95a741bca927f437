"""The rotation-translation attack of Engstrom et al., as Tramèr & Boneh (NeurIPS 2019) use it.

An image is rotated by ``theta`` degrees about its centre and shifted by ``(dx, dy)`` pixels,
with bilinear interpolation and zero padding (torch's ``affine_grid``/``grid_sample``). Its
*spatial size* is ``r = max(|theta| / max_degrees, |dx| / max_pixels, |dy| / max_pixels)``, so
the paper's threat (+-30 degrees, +-3 pixels) is ``r <= 1``. The attack tries transformations in
increasing ``r`` and returns, per point, the first that changes the prediction and its ``r``:
on the exhaustive grid (31 angles x 5 x 5 shifts = 775 transformations by default) that is the
exact smallest ``r`` *on the grid*, an upper bound on the smallest ``r`` over all rotations and
translations.

There is no l_p norm here, so :func:`spatial` takes no ``norm`` argument and is not in
``ATTACKS`` (whose members are minimal-l_p attacks run by :func:`robcurves.distances`);
:func:`robcurves.spatial_distances` turns its result into :class:`~robcurves.Distances` whose
``norm`` is the threat label ``"spatial(deg:30,px:3)"``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..model import Classifier
from ._core import generator_for

__all__ = ["spatial", "spatial_transform", "spatial_grid", "spatial_candidates", "check_images"]

_MODES = ("grid", "random")


def spatial_transform(x: torch.Tensor, degrees: torch.Tensor, dx: torch.Tensor,
                      dy: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` ``(N, C, H, W)`` by ``degrees[i]`` (counter-clockwise on the
    screen) about its centre, then shift it by ``dx[i]`` pixels right and ``dy[i]`` down;
    bilinear interpolation, zeros outside the image. Angles and shifts are ``(N,)`` tensors."""
    n, _, h, w = x.shape
    t = math.pi / 180.0
    a = degrees.to(x.dtype) * t
    cos, sin = torch.cos(a), torch.sin(a)
    # affine_grid maps output coordinates to the input coordinates sampled, in units where the
    # image spans [-1, 1] on each axis. In pixel units (p = S n, S = diag(w/2, h/2)) the output
    # pixel p samples the input at R(-a) (p - shift); conjugating by S keeps the rotation a true
    # rotation on non-square images.
    sx, sy = w / 2.0, h / 2.0
    m = x.new_zeros(n, 2, 3)
    # R(-a) on screen coordinates (y pointing down) = [[cos, -sin], [sin, cos]] for a rotation
    # that turns content counter-clockwise as seen on screen.
    m[:, 0, 0] = cos
    m[:, 0, 1] = -sin * sy / sx
    m[:, 1, 0] = sin * sx / sy
    m[:, 1, 1] = cos
    tx, ty = dx.to(x.dtype), dy.to(x.dtype)
    m[:, 0, 2] = -(cos * tx - sin * ty) / sx
    m[:, 1, 2] = -(sin * tx + cos * ty) / sy
    grid = F.affine_grid(m, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def spatial_grid(max_degrees: float = 30.0, max_pixels: float = 3.0, rotations: int = 31,
                 translations: int = 5) -> torch.Tensor:
    """All ``rotations * translations**2`` transformations ``(theta, dx, dy)`` of the grid
    (evenly spaced on ``[-max, max]``), as a float64 tensor ``(M, 3)``."""
    th = torch.linspace(-max_degrees, max_degrees, rotations, dtype=torch.float64)
    tr = torch.linspace(-max_pixels, max_pixels, translations, dtype=torch.float64)
    if rotations == 1:
        th = torch.zeros(1, dtype=torch.float64)
    if translations == 1:
        tr = torch.zeros(1, dtype=torch.float64)
    a, b, c = torch.meshgrid(th, tr, tr, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1), c.reshape(-1)], dim=1)


def spatial_candidates(max_degrees: float, max_pixels: float, mode: str, rotations: int,
                       translations: int, samples: int, seed: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The transformations :func:`spatial` tries, ``(M, 3)`` rows ``(theta, dx, dy)`` in
    increasing size, and their sizes ``r`` (float64): the grid, or ``samples`` draws seeded by
    ``seed`` (options as :func:`spatial` takes them, checked there)."""
    if mode == "grid":
        params = spatial_grid(max_degrees, max_pixels, rotations, translations)
    else:
        g = generator_for(seed, torch.device("cpu"))
        u = torch.rand(samples, 3, generator=g, dtype=torch.float64) * 2 - 1
        params = u * torch.tensor([max_degrees, max_pixels, max_pixels], dtype=torch.float64)
    size = _size(params, max_degrees, max_pixels)
    order = torch.argsort(size, stable=True)
    return params[order], size[order]


def check_images(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of images ``(N, C, H, W)``, H, W >= 2."""
    if x.ndim != 4 or min(x.shape[2:]) < 2:
        raise ValueError(f"the spatial attack needs images of shape (N, C, H, W) with H, W >= 2; "
                         f"got inputs of shape {tuple(x.shape)}")


def _size(params: torch.Tensor, max_degrees: float, max_pixels: float) -> torch.Tensor:
    return torch.maximum(params[:, 0].abs() / max_degrees,
                         params[:, 1:].abs().amax(dim=1) / max_pixels)


def _positive(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive finite number; got {v!r}")
    return float(v)


def _count(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    return v


def spatial(model: Classifier, x: torch.Tensor, y: torch.Tensor, *, max_degrees: float = 30.0,
            max_pixels: float = 3.0, mode: str = "grid", rotations: int = 31,
            translations: int = 5, samples: int = 10, seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest rotation-translation (on a grid or among random samples) that fools ``model``.

    Args:
        model: a :class:`~robcurves.Classifier` (see :func:`robcurves.wrap`).
        x: images ``(N, C, H, W)`` inside the model's bounds; y: labels ``(N,)``.
        max_degrees, max_pixels: the threat's unit: ``r = 1`` is a rotation of
            ``max_degrees`` or a shift of ``max_pixels`` (the paper: 30 and 3).
        mode: ``"grid"``: every transformation of the ``rotations x translations x
            translations`` grid on ``[-max, max]`` (the paper's exhaustive 775), tried in
            increasing ``r``; ``"random"``: ``samples`` transformations drawn uniformly from
            the box (the same for every point, seeded by ``seed``).

    Returns:
        ``(x_adv, r)``: per point the transformed image that changes the prediction with the
        smallest ``r`` among those tried (clamped into the model's bounds: zero padding may
        leave them), and that ``r`` (float64, CPU); ``r = 0`` and the clean image for
        misclassified points, ``r = inf`` and the clean image where nothing tried breaks it.

    Raises:
        ValueError: inputs that are not ``(N, C, H, W)`` images, labels of the wrong shape, or
            a bad option, before any model pass.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be a robcurves Classifier (see robcurves.wrap); got "
                        f"{type(model).__name__}")
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.float()
    y = torch.as_tensor(y)
    check_images(x)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},); got {tuple(y.shape)}")
    max_degrees = _positive("max_degrees", max_degrees)
    max_pixels = _positive("max_pixels", max_pixels)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}; got {mode!r}")
    _count("rotations", rotations)
    _count("translations", translations)
    _count("samples", samples)
    model.check_inputs(x)
    x = x.detach().to(model.device)
    y = y.to(model.device)
    params, size = spatial_candidates(max_degrees, max_pixels, mode, rotations, translations,
                                      samples, seed)
    n = x.shape[0]
    r = torch.full((n,), math.inf, dtype=torch.float64)
    x_adv = x.clone()
    with torch.no_grad():
        wrong = (model.predict(x).to(model.device) != y).cpu()
    r[wrong] = 0.0
    for level in torch.unique_consecutive(size):
        cand = params[size == level]
        m = cand.shape[0]
        todo = torch.nonzero(torch.isinf(r)).flatten()
        if todo.numel() == 0:
            break
        for active in todo.split(max(1, _CHUNK // m)):  # at most about _CHUNK images at once
            _try(model, x, y, active, cand, float(level), r, x_adv)
    return x_adv, r


_CHUNK = 4096


def _try(model: Classifier, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor,
         cand: torch.Tensor, level: float, r: torch.Tensor, x_adv: torch.Tensor) -> None:
    """Apply every transformation of ``cand`` to the points ``active``; where one breaks a
    point, record ``level`` in ``r`` and the first breaking image in ``x_adv`` (in place)."""
    lo, hi = model.bounds
    m = cand.shape[0]
    xa = x[active.to(x.device)].repeat_interleave(m, dim=0)
    pa = cand.repeat(active.numel(), 1).to(device=x.device)
    xt = spatial_transform(xa, pa[:, 0], pa[:, 1], pa[:, 2]).clamp(lo, hi)
    pred = model.predict(xt).to(model.device)
    broken = (pred != y[active.to(x.device)].repeat_interleave(m)).reshape(-1, m).cpu()
    hit = broken.any(dim=1)
    if hit.any():
        first = broken.to(torch.int8).argmax(dim=1)  # first candidate that breaks each point
        rows = torch.nonzero(hit).flatten()
        pts = active[rows]
        r[pts] = level
        x_adv[pts.to(x.device)] = xt.reshape(active.numel(), m, *x.shape[1:])[
            rows.to(x.device), first[rows].to(x.device)]

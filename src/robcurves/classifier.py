"""The classifier interface the attacks call: logits and input gradients in torch.

:class:`Classifier` is that interface, :class:`TorchClassifier` its torch implementation, and
:class:`Preprocess` the mean/std preprocessing every implementation applies inside the model.
Every bridge (:mod:`robcurves.bridges`) builds on this module and :func:`robcurves.wrap`
(:mod:`robcurves.model`) picks the implementation; this module imports neither.

Inputs are always *raw* inputs inside ``bounds``; preprocessing is applied inside, so every
distance robcurves reports is measured in the raw input space. ``bounds`` may be infinite on
either side (tabular features, Gaussian data): the box then simply never binds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ._device import resolve_device

__all__ = ["Bounds", "Classifier", "Preprocess", "TorchClassifier", "as_bounds", "margin"]

#: ``(low, high)`` of valid raw inputs; ``None`` (or a ``None`` side) means no bound there.
Bounds = tuple[float | None, float | None] | None


def as_bounds(bounds: Bounds | Sequence[float | None]) -> tuple[float, float]:
    """``(low, high)`` as floats: ``None`` means ``(-inf, inf)`` and a ``None`` side is
    infinite; raises ``ValueError`` naming the value unless ``low < high`` (NaN refused)."""
    if bounds is None:
        return (-math.inf, math.inf)
    try:
        if isinstance(bounds, (str, bytes)):
            raise TypeError
        lo, hi = bounds
        lo = -math.inf if lo is None else float(lo)
        hi = math.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be None or a pair (low, high) of numbers or None; got "
                         f"{bounds!r}") from None
    if not lo < hi or lo == math.inf or hi == -math.inf:  # NaN fails lo < hi
        raise ValueError(f"bounds must be (low, high) with low < high (either side may be "
                         f"infinite or None); got {bounds!r}")
    return (lo, hi)


class Preprocess:
    """``(x - mean) / std`` in torch, applied inside the model so that gradients flow through
    it and distances stay in raw input space.

    ``preprocessing`` is ``None`` or a dict with keys ``mean``, ``std`` (a number or one value
    per channel/feature) and optionally ``axis``, the input axis the values run along. By
    default that is the channel axis of ``(N, C, H, W)`` images (``-3``, also for higher ranks)
    and axis 1 of ``(N, D)`` features or ``(N, C, L)`` sequences. A single value applies to
    every element; otherwise the number of values must equal the length of that axis, and
    inputs of any other shape are refused with a message naming both shapes.

    Attributes:
        mean, std: float32 tensors of the values as given (``None`` without preprocessing).
        axis: the axis given, or ``None`` for the default.
    """

    def __init__(self, preprocessing: dict | None, device: torch.device | str = "cpu") -> None:
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.axis: int | None = None
        if preprocessing is None:
            return
        if not isinstance(preprocessing, dict):
            raise TypeError(f"preprocessing must be a dict with keys mean, std (and axis) or "
                            f"None; got {type(preprocessing).__name__}")
        unknown = set(preprocessing) - {"mean", "std", "axis"}
        if unknown:
            raise ValueError(f"preprocessing accepts keys mean, std, axis; got unknown "
                             f"{sorted(unknown)}")
        mean = torch.as_tensor(preprocessing.get("mean", 0.0), dtype=torch.float32, device=device)
        std = torch.as_tensor(preprocessing.get("std", 1.0), dtype=torch.float32, device=device)
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError(f"preprocessing mean and std must be finite; got mean "
                             f"{mean.tolist()}, std {std.tolist()}")
        if (std <= 0).any():
            raise ValueError(f"preprocessing std must be > 0; got {std.tolist()}")
        axis = preprocessing.get("axis")
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise ValueError(f"preprocessing axis must be an integer; got {axis!r}")
        self.mean, self.std, self.axis = mean, std, axis

    def stats(self, sample_shape: Sequence[int]) -> tuple[torch.Tensor | None,
                                                         torch.Tensor | None]:
        """``(mean, std)`` shaped to broadcast against inputs ``(N, *sample_shape)``.

        Raises ``ValueError`` naming the shapes when the values do not fit such inputs.
        """
        if self.mean is None:
            return None, None
        shape = (-1, *(int(s) for s in sample_shape))  # -1: any batch size
        return self._shaped(self.mean, "mean", shape), self._shaped(self.std, "std", shape)

    def _shaped(self, t: torch.Tensor, what: str, shape: tuple[int, ...]) -> torch.Tensor:
        if t.numel() == 1:
            return t.reshape(())
        ndim = len(shape)
        axis = self.axis if self.axis is not None else (-3 if ndim >= 4 else 1)
        where = "N" + "".join(f", {s}" for s in shape[1:])
        if not -ndim <= axis < ndim or axis % ndim == 0:
            raise ValueError(f"preprocessing {what} has {t.numel()} values along axis {axis}, "
                             f"which inputs of shape ({where}) do not have (axis 0 is the batch)")
        a = axis % ndim
        if t.numel() != shape[a]:
            kind = "feature" if ndim == 2 else "channel"
            raise ValueError(f"preprocessing {what} has {t.numel()} values (shape "
                             f"{tuple(t.shape)}); inputs of shape ({where}) need 1 or "
                             f"{shape[a]}, one per {kind} along axis {a}")
        return t.reshape((-1,) + (1,) * (ndim - 1 - a))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        mean, std = self.stats(x.shape[1:])
        return (x - mean) / std


class Classifier:
    """A batched classifier on raw inputs in ``bounds``.

    Subclasses implement :meth:`_forward` (raw inputs on ``self.device`` -> logits, differentiable
    in torch). The base class validates shapes, counts model passes and batches predictions.

    Attributes:
        bounds: ``(low, high)`` of valid inputs as floats; ``-inf``/``inf`` where unbounded.
        device: where inputs are sent.
        batch_size: largest batch sent to the model at once by :meth:`predict`.
        n_forward, n_backward: samples passed forward / backward so far (cost accounting).
    """

    def __init__(self, bounds: Bounds = (0.0, 1.0), device: str | None = None,
                 batch_size: int = 256, num_classes: int | None = None) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.bounds = as_bounds(bounds)
        self.device = resolve_device(device)  # None: CPU (TorchClassifier: the module's)
        self.batch_size = int(batch_size)
        self.num_classes = num_classes
        self.n_forward = 0
        self.n_backward = 0

    # -- subclasses implement this -----------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- the interface -----------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` for raw inputs ``x`` (differentiable; one forward pass per sample)."""
        x = x.to(self.device)
        out = self._forward(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model must return logits of shape (N, num_classes) = "
                             f"({x.shape[0]}, K); got {shape}")
        if out.shape[1] < 2:
            raise ValueError(f"the model must return at least 2 logits per input; got "
                             f"{out.shape[1]}")
        if self.num_classes is None:
            self.num_classes = int(out.shape[1])
        elif out.shape[1] != self.num_classes:
            raise ValueError(f"the model returned {out.shape[1]} logits per input; expected "
                             f"{self.num_classes} classes")
        self.n_forward += int(x.shape[0])
        return out

    __call__ = logits

    def value_and_grad(self, x: torch.Tensor, y: torch.Tensor,
                       loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, per-sample ``loss(logits, y)`` and its gradient with respect to ``x``.

        Each sample's gradient is that of its own loss (the losses are summed before backward).
        """
        x = x.detach().to(self.device).requires_grad_(True)
        with torch.enable_grad():
            z = self.logits(x)
            values = loss(z, y)
            (g,) = torch.autograd.grad(values.sum(), x)
        self.n_backward += int(x.shape[0])
        return z.detach(), values.detach(), g.detach()

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits for any number of inputs, in batches of ``batch_size``; returned on CPU."""
        x = torch.as_tensor(x)
        outs = [self.logits(x[i:i + self.batch_size]).detach().cpu()
                for i in range(0, x.shape[0], self.batch_size)]
        if not outs:
            return torch.zeros((0, self.num_classes or 0))
        return torch.cat(outs)

    def predict(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Predicted labels (int64, CPU) for any number of inputs."""
        return self.predict_logits(x).argmax(dim=1)

    def check_inputs(self, x: torch.Tensor | np.ndarray, what: str = "inputs") -> None:
        """Raise ``ValueError`` if ``x`` has non-finite values or leaves ``bounds``."""
        t = torch.as_tensor(x)
        if t.numel() == 0:
            return
        if not torch.isfinite(t).all():
            raise ValueError(f"{what} contain {int((~torch.isfinite(t)).sum())} non-finite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < self.bounds[0] or hi > self.bounds[1]:
            raise ValueError(f"{what} must lie in bounds {self.bounds}; found min {lo}, max {hi}")


class TorchClassifier(Classifier):
    """A ``torch.nn.Module`` (put in eval mode) with optional mean/std preprocessing inside.

    Attributes:
        module: the wrapped module.
        pre: its :class:`Preprocess`; ``mean`` and ``std`` are those of ``pre``.
    """

    def __init__(self, module: nn.Module, bounds: Bounds = (0.0, 1.0),
                 preprocessing: dict | None = None, device: str | None = None,
                 batch_size: int = 256, num_classes: int | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected a torch.nn.Module; got {type(module).__name__}")
        super().__init__(bounds=bounds, device=resolve_device(device, module),
                         batch_size=batch_size, num_classes=num_classes)
        try:
            module = module.eval()
        except NotImplementedError:  # torch.export modules keep the mode they were exported in
            pass
        self.module = module.to(self.device)
        self.pre = Preprocess(preprocessing, self.device)

    @property
    def mean(self) -> torch.Tensor | None:
        return self.pre.mean

    @property
    def std(self) -> torch.Tensor | None:
        return self.pre.std

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(self.pre(x))


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample margin ``z_y - max_{k != y} z_k``: negative exactly when misclassified."""
    zy = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], -torch.inf)
    return zy - other.amax(dim=1)


def check_finite_logits(z: torch.Tensor, indices: np.ndarray | None = None) -> None:
    """``ValueError`` naming the points (their ``indices``, default positions) where any of
    the logits ``z`` (one row per point) is NaN or infinite: distances of such a model mean
    nothing."""
    bad = ~torch.isfinite(z).reshape(z.shape[0], -1).all(1)
    if bool(bad.any()):
        pos = bad.nonzero().squeeze(1).numpy()
        idx = pos if indices is None else np.asarray(indices)[pos]
        shown = ", ".join(str(int(i)) for i in idx[:10]) + (", ..." if idx.size > 10 else "")
        raise ValueError(f"the model's logits are NaN or infinite on {idx.size} of {z.shape[0]} "
                         f"points (indices {shown}); expected finite logits everywhere")

"""Wrap a classifier as the one interface the attacks call: logits and input gradients in torch.

:class:`Classifier` is that interface. :func:`wrap` builds one from a ``torch.nn.Module``.
Inputs are always *raw* inputs inside ``bounds``; preprocessing (mean/std) is applied inside,
so every distance robcurves reports is measured in the raw input space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Classifier", "TorchClassifier", "wrap", "margin"]


class Classifier:
    """A batched classifier on raw inputs in ``bounds``.

    Subclasses implement :meth:`_forward` (raw inputs on ``self.device`` -> logits, differentiable
    in torch). The base class validates shapes, counts model passes and batches predictions.

    Attributes:
        bounds: ``(low, high)`` of valid inputs.
        device: where inputs are sent.
        batch_size: largest batch sent to the model at once by :meth:`predict`.
        n_forward, n_backward: samples passed forward / backward so far (cost accounting).
    """

    def __init__(self, bounds: tuple[float, float] = (0.0, 1.0), device: str | None = None,
                 batch_size: int = 256, num_classes: int | None = None) -> None:
        lo, hi = (float(b) for b in bounds)
        if not lo < hi:  # also refuses NaN; either bound may be infinite (an unbounded input)
            raise ValueError(f"bounds must be two numbers with low < high (either may be "
                             f"infinite); got {bounds!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.bounds = (lo, hi)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
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
    """A ``torch.nn.Module`` (put in eval mode) with optional mean/std preprocessing inside."""

    def __init__(self, module: nn.Module, bounds: tuple[float, float] = (0.0, 1.0),
                 preprocessing: dict | None = None, device: str | None = None,
                 batch_size: int = 256, num_classes: int | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected a torch.nn.Module; got {type(module).__name__}")
        super().__init__(bounds=bounds, device=device, batch_size=batch_size,
                         num_classes=num_classes)
        try:
            module = module.eval()
        except NotImplementedError:  # torch.export modules keep the mode they were exported in
            pass
        self.module = module.to(self.device)
        self.mean, self.std = _preprocessing_tensors(preprocessing, self.device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.module(x)


def _preprocessing_tensors(pre: dict | None, device: torch.device
                           ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if pre is None:
        return None, None
    unknown = set(pre) - {"mean", "std", "axis"}
    if unknown:
        raise ValueError(f"preprocessing accepts keys mean, std, axis; got unknown "
                         f"{sorted(unknown)}")
    mean = torch.as_tensor(pre.get("mean", 0.0), dtype=torch.float32, device=device)
    std = torch.as_tensor(pre.get("std", 1.0), dtype=torch.float32, device=device)
    if (std <= 0).any():
        raise ValueError(f"preprocessing std must be > 0; got {std.tolist()}")
    axis = int(pre.get("axis", -3))  # channels axis of (N, C, H, W) counted from the end
    def shape(t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            return t
        return t.reshape((-1,) + (1,) * (-axis - 1))
    return shape(mean), shape(std)


def wrap(model: nn.Module | Classifier | Any, bounds: tuple[float, float] = (0.0, 1.0),
         preprocessing: dict | None = None, device: str | None = None,
         batch_size: int = 256, framework: str | None = None, **options: Any) -> Classifier:
    """Turn a classifier into the :class:`Classifier` interface the attacks use.

    Args:
        model: a ``torch.nn.Module`` returning logits ``(N, K)`` (put in eval mode), an
            existing :class:`Classifier` (returned unchanged), or a model of another framework
            (see ``framework``).
        bounds: valid range of raw inputs; adversarials never leave it.
        preprocessing: ``{"mean": m, "std": s}`` (scalars or per-channel sequences, channel
            axis ``axis=-3`` by default) applied inside the model as ``(x - m) / s``; distances
            stay in raw input space.
        device: ``"cpu"``, ``"cuda"``... (default CPU).
        batch_size: largest batch sent to the model at once.
        framework: ``None`` detects torch modules, Keras/TensorFlow models, ONNX models
            (``ModelProto`` or ``.onnx`` path) and scikit-learn estimators by type; a plain
            callable needs ``"jax"`` (``fn(params, x)`` with ``params=``, or ``fn(x)``),
            ``"tf"`` or ``"label"`` (a ``predict`` returning labels, with ``num_classes=``).
            See :mod:`robcurves.bridges`.
        **options: passed to the bridge of a non-torch framework (e.g. ``params=`` for JAX,
            ``channels_last=True`` for NHWC Keras models).
    """
    if isinstance(model, Classifier):
        return model
    if isinstance(model, nn.Module) and framework in (None, "torch") and not options:
        return TorchClassifier(model, bounds=bounds, preprocessing=preprocessing, device=device,
                               batch_size=batch_size)
    from .bridges import wrap_bridge  # imports the optional frameworks lazily

    return wrap_bridge(model, framework, bounds=bounds, preprocessing=preprocessing,
                       device=device, batch_size=batch_size, **options)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample margin ``z_y - max_{k != y} z_k``: negative exactly when misclassified."""
    zy = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], -torch.inf)
    return zy - other.amax(dim=1)



"""JAX models as robcurves classifiers: forward in JAX, input gradients by ``jax.vjp``.

Inputs and outputs cross between torch and JAX through DLPack, which shares the buffer
instead of copying when both sides live on the same device (CPU here; a CUDA torch tensor and a
CUDA JAX array likewise). When DLPack cannot hand a buffer over (another device, an unsupported
layout) the bridge falls back to one copy through numpy.

The JAX call sits inside a ``torch.autograd.Function``: when torch needs a gradient, the forward
runs a jitted ``jax.vjp`` that keeps JAX's residuals, and torch's backward calls the stored
pullback (it may be called several times, as DeepFool does for several classes), so one attack
step costs one JAX forward and one JAX backward, exactly as a native torch model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..classifier import Bounds, Classifier, Preprocess
from ._common import from_torch, require, to_torch

__all__ = ["JaxClassifier"]


def _to_jax(t: torch.Tensor, jax: Any) -> Any:
    return from_torch(t, jax.dlpack.from_dlpack, jax.numpy.asarray)


class _JaxFunction(torch.autograd.Function):
    """torch autograd node around a JAX function of the input (parameters closed over)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bridge: JaxClassifier) -> torch.Tensor:
        xj = _to_jax(x, bridge._jax)
        if ctx.needs_input_grad[0]:
            z, pullback = bridge._value_and_pullback(bridge.params, xj)
            ctx.pullback = pullback
            ctx.bridge = bridge
        else:
            z = bridge._apply(bridge.params, xj)
        return to_torch(z, x.device)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        bridge = ctx.bridge
        (gx,) = bridge._pull(ctx.pullback, _to_jax(g, bridge._jax))
        return to_torch(gx, g.device), None


class JaxClassifier(Classifier):
    """A JAX function returning logits, as a :class:`~robcurves.classifier.Classifier`.

    Args:
        fn: ``fn(params, x) -> logits`` (or ``fn(x) -> logits`` when ``params`` is None) taking
            a float32 batch ``(N, ...)`` in robcurves' layout (NCHW for images) after
            preprocessing and returning ``(N, K)``.
        params: any pytree of parameters passed as the first argument of ``fn``.
        jit: compile ``fn`` (and its vjp) with ``jax.jit`` (default True).
        pad_batches: with ``jit``, pad each batch (repeating its first row) to the next power
            of two, so that attacks working on shrinking subsets of a batch compile ``fn`` for
            a few batch sizes instead of every one (the padded rows are dropped again and get
            no gradient).
        bounds, preprocessing, device, batch_size: as for :func:`robcurves.wrap`.
    """

    def __init__(self, fn: Callable, params: Any = None, *, jit: bool = True,
                 pad_batches: bool = True,
                 bounds: Bounds = (0.0, 1.0), preprocessing: dict | None = None,
                 device: str | None = None, batch_size: int = 256,
                 num_classes: int | None = None) -> None:
        jax = require("jax")
        require("jax.dlpack")
        if not callable(fn):
            raise TypeError(f"a JAX model must be a callable fn(params, x) or fn(x); got "
                            f"{type(fn).__name__}")
        super().__init__(bounds=bounds, device=device, batch_size=batch_size,
                         num_classes=num_classes)
        self._jax = jax
        self.fn = fn
        self.params = params
        self.pad_batches = bool(pad_batches and jit)
        self.pre = Preprocess(preprocessing, self.device)

        def apply(p: Any, x: Any) -> Any:
            return fn(x) if p is None else fn(p, x)

        def value_and_pullback(p: Any, x: Any) -> tuple[Any, Any]:
            return jax.vjp(lambda xx: apply(p, xx), x)

        def pull(pullback: Any, g: Any) -> Any:
            return pullback(g)

        wrap_ = jax.jit if jit else (lambda f: f)
        self._apply = wrap_(apply)
        # jax.vjp's pullback is a pytree (jax.tree_util.Partial), so it can leave a jit
        self._value_and_pullback = wrap_(value_and_pullback)
        self._pull = wrap_(pull)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x).to(torch.float32)
        n = x.shape[0]
        size = 1 << max(n - 1, 0).bit_length()
        if self.pad_batches and size > n:
            x = torch.cat([x, x[:1].expand(size - n, *x.shape[1:])])
        return _JaxFunction.apply(x, self)[:n]

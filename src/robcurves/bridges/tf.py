"""TensorFlow / Keras models as robcurves classifiers: forward in TensorFlow, input gradients
with ``tf.GradientTape``.

Tensors cross between torch and TensorFlow through DLPack (no copy on the same device); where
DLPack refuses, one copy through numpy is made instead.

**Layout.** robcurves data is NCHW (channels first), the torch convention; Keras image models are
usually NHWC (channels last). With ``channels_last=True`` the bridge transposes NCHW -> NHWC
before calling the model (in torch, so the gradient comes back in NCHW); distances and
adversarials stay in robcurves' NCHW layout. Inputs of other ranks are passed unchanged.

The forward and the gradient run as compiled ``tf.function`` graphs (one trace per input
shape with a free batch size). The gradient graph recomputes the forward under a tape, so an
attack step costs two forwards and one backward in TensorFlow, which stays cheaper than eager
execution for all but the largest models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..classifier import Bounds, Classifier, Preprocess
from ._common import from_torch, require, to_torch

__all__ = ["TFClassifier"]


def _to_tf(t: torch.Tensor, tf: Any) -> Any:
    return from_torch(t, tf.experimental.dlpack.from_dlpack, tf.convert_to_tensor, capsule=True)


class _TFFunction(torch.autograd.Function):
    """torch autograd node around a TensorFlow model of its input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bridge: TFClassifier) -> torch.Tensor:
        tf = bridge._tf
        xt = _to_tf(x, tf)
        if ctx.needs_input_grad[0]:
            ctx.x_tf = xt
            ctx.bridge = bridge
        return to_torch(bridge._call(xt), x.device, tf.experimental.dlpack.to_dlpack)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        bridge = ctx.bridge
        gx = bridge._vjp(ctx.x_tf, _to_tf(g, bridge._tf))
        return to_torch(gx, g.device, bridge._tf.experimental.dlpack.to_dlpack), None


class TFClassifier(Classifier):
    """A Keras model or any TensorFlow callable returning logits.

    Args:
        model: a ``keras.Model`` (Keras 3 with the TensorFlow backend, or ``tf.keras``) or a
            callable ``model(x: tf.Tensor) -> logits (N, K)``.
        channels_last: transpose 4-d NCHW inputs to NHWC before the model (see module docs).
        compile: run forward and gradient as ``tf.function`` graphs (default True).
        bounds, preprocessing, device, batch_size: as for :func:`robcurves.wrap`;
            ``preprocessing`` applies in NCHW layout (channel axis -3) before the transpose.
    """

    def __init__(self, model: Callable, *, channels_last: bool = False, compile: bool = True,
                 bounds: Bounds = (0.0, 1.0), preprocessing: dict | None = None,
                 device: str | None = None, batch_size: int = 256,
                 num_classes: int | None = None) -> None:
        tf = require("tensorflow")
        if not callable(model):
            raise TypeError(f"a TensorFlow model must be callable; got {type(model).__name__}")
        super().__init__(bounds=bounds, device=device, batch_size=batch_size,
                         num_classes=num_classes)
        self._tf = tf
        self.model = model
        self.channels_last = bool(channels_last)
        self.pre = Preprocess(preprocessing, self.device)
        is_keras = any(c.__module__.split(".")[0] in ("keras", "tf_keras")
                       or c.__module__.startswith("tensorflow.python.keras")
                       for c in type(model).__mro__)

        def call(x: Any) -> Any:
            z = model(x, training=False) if is_keras else model(x)
            if isinstance(z, dict) and len(z) == 1:  # SavedModel signatures name their output
                z = next(iter(z.values()))
            return z

        def vjp(x: Any, g: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                z = call(x)
            return tape.gradient(z, x, output_gradients=g)

        if compile:
            self._call = tf.function(call, reduce_retracing=True)
            self._vjp = tf.function(vjp, reduce_retracing=True)
        else:
            self._call, self._vjp = call, vjp

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x).to(torch.float32)
        if self.channels_last and x.ndim == 4:
            x = x.permute(0, 2, 3, 1)
        return _TFFunction.apply(x, self)

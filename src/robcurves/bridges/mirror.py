"""Copies of a small torch ``nn.Sequential`` in JAX and Keras with the same weights.

Used to check the bridges (same logits, gradients and distances in every framework) and to
time them. Supported layers: ``Linear``, ``Conv2d`` (no groups or dilation), ``ReLU`` and
``Flatten``. The Keras copy works in NHWC (wrap it with ``channels_last=True``); its dense layer
after a ``Flatten`` gets its rows permuted so that it reads the NHWC flattening exactly as the
torch layer reads the NCHW one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import require

__all__ = ["jax_mirror", "keras_mirror"]

_SUPPORTED = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten)


def _layers(seq: nn.Sequential) -> list[nn.Module]:
    layers = list(seq.children()) if isinstance(seq, nn.Sequential) else [seq]
    for m in layers:
        if not isinstance(m, _SUPPORTED):
            raise TypeError(f"cannot mirror layer {type(m).__name__}; supported: "
                            f"{', '.join(t.__name__ for t in _SUPPORTED)}")
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.dilation != (1, 1)
                                         or not isinstance(m.padding, tuple)):
            raise TypeError("cannot mirror a Conv2d with groups, dilation or string padding")
    return layers


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float32)


def jax_mirror(seq: nn.Sequential) -> tuple[Callable, list[dict]]:
    """``(fn, params)`` with ``fn(params, x)`` computing ``seq(x)`` in JAX on NCHW inputs."""
    jax = require("jax")
    jnp = jax.numpy
    layers = _layers(seq)
    params: list[dict] = []
    for m in layers:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            b = _np(m.bias)
            params.append({"w": jnp.asarray(_np(m.weight)),
                           "b": None if b is None else jnp.asarray(b)})
        else:
            params.append({})

    def fn(p: list[dict], x: Any) -> Any:
        for m, q in zip(layers, p, strict=True):
            if isinstance(m, nn.Linear):
                x = x @ q["w"].T
                if q["b"] is not None:
                    x = x + q["b"]
            elif isinstance(m, nn.Conv2d):
                pad = [(int(m.padding[0]),) * 2, (int(m.padding[1]),) * 2]
                x = jax.lax.conv_general_dilated(x, q["w"], window_strides=m.stride,
                                                 padding=pad,
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                if q["b"] is not None:
                    x = x + q["b"][None, :, None, None]
            elif isinstance(m, nn.ReLU):
                x = jax.nn.relu(x)
            else:
                x = x.reshape(x.shape[0], -1)
        return x

    return fn, params


def keras_mirror(seq: nn.Sequential, input_shape: tuple[int, ...]) -> Any:
    """A Keras model computing ``seq`` on NHWC inputs (for 3-d ``input_shape`` ``(C, H, W)``)
    or on the same flat inputs (1-d ``input_shape``)."""
    keras = require("keras")
    layers = _layers(seq)
    image = len(input_shape) == 3
    shape: tuple[int, ...] = tuple(input_shape)  # torch-layout shape flowing through
    inp = keras.Input(shape=(shape[1], shape[2], shape[0]) if image else shape)
    h = inp
    pending: list[tuple[Any, list[np.ndarray]]] = []
    flat_from: tuple[int, ...] | None = None
    probe = torch.zeros((1, *input_shape))
    for m in layers:
        with torch.no_grad():
            out_shape = tuple(m(probe).shape[1:])
        if isinstance(m, nn.Conv2d):
            ph, pw = (int(v) for v in m.padding)
            if ph or pw:
                h = keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)))(h)
            layer = keras.layers.Conv2D(m.out_channels, m.kernel_size, strides=m.stride,
                                        padding="valid", use_bias=m.bias is not None)
            h = layer(h)
            w = [_np(m.weight).transpose(2, 3, 1, 0)]
            pending.append((layer, w + ([_np(m.bias)] if m.bias is not None else [])))
        elif isinstance(m, nn.Linear):
            layer = keras.layers.Dense(m.out_features, use_bias=m.bias is not None)
            h = layer(h)
            w = _np(m.weight).T  # (in, out), rows in torch's flattening order
            if flat_from is not None and len(flat_from) == 3:
                c, hh, ww = flat_from  # torch flattens (C, H, W); Keras NHWC flattens (H, W, C)
                w = w.reshape(c, hh, ww, -1).transpose(1, 2, 0, 3).reshape(c * hh * ww, -1)
            flat_from = None
            pending.append((layer, [w] + ([_np(m.bias)] if m.bias is not None else [])))
        elif isinstance(m, nn.ReLU):
            h = keras.layers.ReLU()(h)
        else:
            flat_from = shape
            h = keras.layers.Flatten()(h)
        shape = out_shape
        probe = torch.zeros((1, *shape))
    model = keras.Model(inp, h)
    for layer, weights in pending:
        layer.set_weights(weights)
    return model
